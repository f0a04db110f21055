"""Non-neural baselines that share the graph network's prior (a sum of pair forces)."""

from symdistill.baselines.sparse import FACTORS, LIBRARY, RADIAL, VELOCITY_TERMS, SparsePairRegression, fit_law

__all__ = ["FACTORS", "LIBRARY", "RADIAL", "VELOCITY_TERMS", "SparsePairRegression", "fit_law"]
