"""Simulate: the paper's N-body systems and user-defined laws, and dataset files."""

from symdistill.simulate.dataset import NBodyDataset, open_dataset, simulate_to_file, split_indices
from symdistill.simulate.potentials import EDGE_VARIABLES, EPS, SYSTEMS, Law, get_law
from symdistill.simulate.simulate import SimulationConfig, Trajectory, initial_conditions, simulate

__all__ = [
    "EDGE_VARIABLES", "EPS", "SYSTEMS", "Law", "NBodyDataset", "SimulationConfig", "Trajectory",
    "get_law", "initial_conditions", "open_dataset", "simulate", "simulate_to_file", "split_indices",
]
