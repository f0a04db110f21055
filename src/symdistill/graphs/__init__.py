"""Graphs: edge construction and vectorised batching of particle systems (PyG's edge_index convention)."""

from symdistill.graphs.batch import GraphBatch
from symdistill.graphs.edges import batch_edge_index, fully_connected
from symdistill.graphs.features import EDGE_INPUTS, edge_input_names, edge_inputs, node_input_names, node_inputs

__all__ = [
    "EDGE_INPUTS", "GraphBatch", "batch_edge_index", "edge_input_names", "edge_inputs",
    "fully_connected", "node_input_names", "node_inputs",
]
