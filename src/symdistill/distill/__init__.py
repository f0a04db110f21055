"""Distillation: symbolic regression on recorded messages, and verification against ground truth.

- :class:`SymbolicRegression`: one estimator over the SR back-ends (operon, pysr, gplearn), giving
  a PySR-like Pareto table with the paper's selection rule.
- :func:`structured_search`: (linear map) x (scalar SR on r, m, q) x (direction), with a Piecewise
  split for discontinuous laws; :func:`plain_search`: one search per message component.
- :func:`verify`: does a set of formulas recover a law up to what the method cannot identify?
"""

from symdistill.distill.backends import BACKENDS, OPERATORS, SearchOptions, available_backends, get_backend
from symdistill.distill.pareto import Equation, ParetoTable, build_table, complexity, select_best
from symdistill.distill.sr import SymbolicRegression, evaluate
from symdistill.distill.structured import StructuredResult, plain_search, structured_search
from symdistill.distill.synthetic import edge_samples, edge_variables, force_dataset, true_force
from symdistill.distill.verify import VerificationResult, VerifyOptions, verify

__all__ = [
    "BACKENDS", "OPERATORS", "Equation", "ParetoTable", "SearchOptions", "StructuredResult",
    "SymbolicRegression", "VerificationResult", "VerifyOptions", "available_backends", "build_table",
    "complexity", "edge_samples", "edge_variables", "evaluate", "force_dataset", "get_backend",
    "plain_search", "select_best", "structured_search", "true_force", "verify",
]
