"""Distillation: symbolic regression on recorded messages, and verification against ground truth."""
