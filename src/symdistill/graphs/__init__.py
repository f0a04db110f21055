"""Graphs: the graph container, edge construction and conversion to and from PyTorch Geometric
(PyG's ``edge_index`` convention: row 0 the sender, row 1 the receiver)."""

from symdistill.graphs.batch import GraphBatch
from symdistill.graphs.edges import batch_edge_index, fully_connected

__all__ = ["GraphBatch", "batch_edge_index", "fully_connected"]
