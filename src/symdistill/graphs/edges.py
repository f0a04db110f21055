"""Edge construction.

Convention (PyG, and everywhere in symdistill): ``edge_index`` has shape [2, E]; row 0 is the
sender j, row 1 the receiver i. Fully connected graphs are built *receiver-major*: the edges into
node 0 come first, then those into node 1, ... Every node has the same in-degree n - 1, so a sum
over incoming edges is a reshape and a sum (see :class:`symdistill.graphs.GraphBatch`).
"""

from __future__ import annotations

import torch

from symdistill.errors import SymdistillError


def fully_connected(n_nodes: int, *, device=None) -> torch.Tensor:
    """All ordered pairs (j -> i), i != j, receiver-major.

    Shapes:
        output: [2, n_nodes * (n_nodes - 1)], int64
    """
    if n_nodes < 2:
        raise SymdistillError(f"Expected a graph of at least 2 nodes (got {n_nodes})")
    recv = torch.arange(n_nodes, device=device).repeat_interleave(n_nodes - 1)
    # For receiver i the senders are 0..n-1 without i: k -> k + (k >= i).
    k = torch.arange(n_nodes - 1, device=device).repeat(n_nodes)
    send = k + (k >= recv).long()
    return torch.stack([send, recv])


def batch_edge_index(edge_index: torch.Tensor, n_nodes: int, n_graphs: int) -> torch.Tensor:
    """Stack ``n_graphs`` copies of one graph's ``edge_index``, offsetting node indices (no Python loop).

    Shapes:
        edge_index: [2, E]  ->  output: [2, n_graphs * E], graph g's edges at [g*E, (g+1)*E)
    """
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise SymdistillError(f"Expected edge_index of shape [2, E] (got {list(edge_index.shape)})")
    offsets = torch.arange(n_graphs, device=edge_index.device) * n_nodes
    return (edge_index[:, None, :] + offsets[None, :, None]).reshape(2, -1)
