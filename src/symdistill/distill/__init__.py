"""Distillation: symbolic regression on recorded messages, and verification against ground truth.

- :class:`SymbolicRegression`: one estimator over the SR back-ends (operon, pysr, gplearn), giving
  a PySR-like Pareto table with the paper's selection rule.
- :func:`structured_search`: (linear map) x (scalar SR on r, m, q) x (direction), with a Piecewise
  split for discontinuous laws; :func:`plain_search`: one search per message component.
- :func:`verify`: does a set of formulas recover a law up to what the method cannot identify?

The search names are imported when first used (PEP 562), so that the CLI, which imports
``symdistill.distill.commands`` to build its parser, does not load scikit-learn and pandas. The
verifier is imported at once: its function has its module's name, which a lazy import would shadow.
"""

import importlib

from symdistill.distill.synthetic import edge_samples, edge_variables, force_dataset, true_force
from symdistill.distill.verify import VerificationResult, VerifyOptions, verify

_LAZY = {
    "backends": ("BACKENDS", "OPERATORS", "SearchOptions", "available_backends", "get_backend"),
    "pareto": ("Equation", "ParetoTable", "build_table", "complexity", "select_best"),
    "sr": ("SymbolicRegression", "evaluate"),
    "structured": ("StructuredResult", "plain_search", "structured_search"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "BACKENDS", "OPERATORS", "Equation", "ParetoTable", "SearchOptions", "StructuredResult",
    "SymbolicRegression", "VerificationResult", "VerifyOptions", "available_backends", "build_table",
    "complexity", "edge_samples", "edge_variables", "evaluate", "force_dataset", "get_backend",
    "plain_search", "select_best", "structured_search", "true_force", "verify",
]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'symdistill.distill' has no attribute {name!r}")
    return getattr(importlib.import_module(f"symdistill.distill.{_WHERE[name]}"), name)


def __dir__():
    return __all__
