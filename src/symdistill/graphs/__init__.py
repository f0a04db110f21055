"""Graphs: the graph container, edge builders and conversion to and from PyTorch Geometric
(PyG's ``edge_index`` convention: row 0 the sender, row 1 the receiver)."""

from symdistill.graphs.batch import GraphBatch
from symdistill.graphs.builders import BUILDERS, EdgeBuilder, Edges, FullyConnected, KNNGraph, RadiusGraph, get_builder
from symdistill.graphs.edges import batch_edge_index, fully_connected

__all__ = ["BUILDERS", "EdgeBuilder", "Edges", "FullyConnected", "GraphBatch", "KNNGraph", "RadiusGraph",
           "batch_edge_index", "fully_connected", "get_builder"]
