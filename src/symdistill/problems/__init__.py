"""Problems: what is specific to one kind of data (features, target, loss, truth, judgement).

    from symdistill.problems import NBodyForces, get_problem
    problem = get_problem("nbody-forces", dim=2)     # the paper's particle systems

See :mod:`symdistill.problems.base` for the contract and docs/architecture.md for adding one.
"""

from symdistill.errors import unknown_name
from symdistill.problems.base import LOSSES, Problem, Target, prediction_loss
from symdistill.problems.energy import NBodyEnergy
from symdistill.problems.nbody import EDGE_INPUTS, NBodyForces, edge_geometry

#: Problems by name (a run's config names one).
PROBLEMS: dict[str, type[Problem]] = {NBodyForces.name: NBodyForces, NBodyEnergy.name: NBodyEnergy}


def get_problem(name: str, **options) -> Problem:
    """The problem ``name`` with its options (e.g. ``dim=2, edge_inputs="relative"``)."""
    if name not in PROBLEMS:
        raise unknown_name("problem", name, PROBLEMS)
    return PROBLEMS[name](**options)


__all__ = ["EDGE_INPUTS", "LOSSES", "PROBLEMS", "NBodyEnergy", "NBodyForces", "Problem", "Target", "get_problem",
           "edge_geometry", "prediction_loss"]
