"""Graphs: the graph container, edge builders and conversion to and from PyTorch Geometric
(PyG's ``edge_index`` convention: row 0 the sender, row 1 the receiver).

The edge builders (scipy's cKDTree) are imported when first used (PEP 562): the CLI starts without them.
"""

import importlib

from symdistill.graphs.batch import GraphBatch
from symdistill.graphs.edges import batch_edge_index, fully_connected

_BUILDERS = ("BUILDERS", "EdgeBuilder", "Edges", "FullyConnected", "KNNGraph", "RadiusGraph", "get_builder")

__all__ = ["BUILDERS", "EdgeBuilder", "Edges", "FullyConnected", "GraphBatch", "KNNGraph", "RadiusGraph",
           "batch_edge_index", "fully_connected", "get_builder"]


def __getattr__(name: str):
    if name in _BUILDERS:
        return getattr(importlib.import_module("symdistill.graphs.builders"), name)
    raise AttributeError(f"module 'symdistill.graphs' has no attribute {name!r}")


def __dir__():
    return __all__
