"""Simulate: the paper's N-body systems and user-defined laws, and dataset files."""

from symdistill.simulate.dataset import NBodyDataset, open_dataset, simulate_to_file, split_indices
from symdistill.simulate.observe import Estimator, derive_file, estimate_derivatives, observe
from symdistill.simulate.potentials import EDGE_VARIABLES, EPS, SYSTEMS, Law, get_law
from symdistill.simulate.simulate import SimulationConfig, Trajectory, initial_conditions, simulate

__all__ = [
    "EDGE_VARIABLES", "EPS", "SYSTEMS", "Estimator", "Law", "NBodyDataset", "SimulationConfig", "Trajectory",
    "derive_file", "estimate_derivatives", "get_law", "initial_conditions", "observe", "open_dataset",
    "simulate", "simulate_to_file", "split_indices",
]
