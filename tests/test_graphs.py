"""Graphs: edge construction, batching by offsets, the container; the N-body problem's features."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from symdistill.errors import SymdistillError
from symdistill.graphs import GraphBatch, batch_edge_index, fully_connected
from symdistill.problems import NBodyForces
from symdistill.simulate import EPS


def _graph(pos, vel, mass, charge, edge_index):
    return GraphBatch(dict(pos=pos, vel=vel, mass=mass, charge=charge), edge_index, 1)


def edge_inputs(kind, pos, vel, mass, charge, edge_index):
    return NBodyForces(pos.shape[1], kind).edge_features(_graph(pos, vel, mass, charge, edge_index))


def node_inputs(kind, pos, vel, mass, charge):
    return NBodyForces(pos.shape[1], kind).node_features(_graph(pos, vel, mass, charge, fully_connected(len(pos))))


def edge_input_names(kind, dim):
    return NBodyForces(dim, kind).edge_names


def node_input_names(kind, dim):
    return NBodyForces(dim, kind).node_names


@pytest.mark.parametrize("n", [2, 3, 4, 7])
def test_fully_connected_has_every_ordered_pair_once(n):
    ei = fully_connected(n)
    pairs = {(int(j), int(i)) for j, i in ei.T}
    assert ei.shape == (2, n * (n - 1))
    assert pairs == {(j, i) for i in range(n) for j in range(n) if i != j}


def test_fully_connected_is_receiver_major():
    recv = fully_connected(5)[1]
    assert torch.equal(recv, torch.arange(5).repeat_interleave(4))


def test_batched_edge_index_never_links_two_graphs():
    n, b = 4, 6
    ei = batch_edge_index(fully_connected(n), n, b)
    assert ei.shape == (2, b * n * (n - 1))
    assert torch.equal(ei[0] // n, ei[1] // n)  # sender and receiver in the same graph
    assert torch.equal(torch.bincount(ei[1]), torch.full((b * n,), n - 1))


def test_relative_edge_inputs_follow_the_sign_convention():
    pos = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    vel = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    mass, charge = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 1.0])
    ei = torch.tensor([[0], [1]])  # sender 0 -> receiver 1
    f = dict(zip(edge_input_names("relative", 2), edge_inputs("relative", pos, vel, mass, charge, ei)[0].tolist()))
    assert (f["dx"], f["dy"]) == (3.0, 4.0)  # receiver minus sender
    assert f["r"] == pytest.approx(5.0 + EPS)
    assert (f["m1"], f["m2"], f["q1"], f["q2"]) == (2.0, 1.0, 1.0, -1.0)
    assert (f["dvx"], f["dvy"]) == (-1.0, 2.0)


@settings(max_examples=25, deadline=None)
@given(shift=st.lists(st.floats(-50, 50), min_size=3, max_size=3), seed=st.integers(0, 1000))
def test_relative_edge_inputs_invariant_to_translation(shift, seed):
    g = torch.Generator().manual_seed(seed)
    pos, vel = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64)
    mass, charge = torch.rand(4, generator=g, dtype=torch.float64) + 0.5, torch.zeros(4, dtype=torch.float64)
    ei = fully_connected(4)
    a = edge_inputs("relative", pos, vel, mass, charge, ei)
    b = edge_inputs("relative", pos + torch.tensor(shift, dtype=torch.float64), vel, mass, charge, ei)
    assert torch.allclose(a, b, atol=1e-9)
    n_a = node_inputs("relative", pos, vel, mass, charge)
    assert torch.equal(n_a, node_inputs("relative", pos + 1.0, vel, mass, charge))


def test_paper_edge_inputs_are_both_ends_raw_features():
    pos, vel = torch.randn(3, 2), torch.randn(3, 2)
    mass, charge = torch.rand(3) + 1, torch.randn(3)
    f = edge_inputs("paper", pos, vel, mass, charge, fully_connected(3))
    names = edge_input_names("paper", 2)
    assert f.shape == (6, len(names)) and names[:6] == ["x1", "y1", "vx1", "vy1", "q1", "m1"]
    x = torch.cat([pos, vel, charge[:, None], mass[:, None]], 1)
    ei = fully_connected(3)
    assert torch.equal(f, torch.cat([x[ei[1]], x[ei[0]]], 1))
    assert node_input_names("paper", 2)[-1] == "inv_m"


def test_graph_batch_from_arrays_flattens_graph_by_graph():
    rng = np.random.default_rng(0)
    pos, vel, acc = (rng.standard_normal((3, 4, 2)) for _ in range(3))
    mass, charge = rng.random((3, 4)) + 1, np.zeros((3, 4))
    b = GraphBatch.from_arrays(pos, vel, mass, charge, acc)
    assert (b.n_graphs, b.n_nodes, b.dim, b.in_degree) == (3, 12, 2, 3)
    assert torch.allclose(b.pos[4:8], torch.as_tensor(pos[1], dtype=torch.float32))
    assert torch.equal(b.graph, torch.arange(3).repeat_interleave(4))
    sub = b.select_graphs([2])
    assert torch.equal(sub.pos, b.pos[8:12]) and sub.edge_index.max() == 3


def test_bad_shapes_and_names_give_one_line_errors():
    with pytest.raises(SymdistillError, match=r"Expected pos of shape \[B, N, D\]"):
        GraphBatch.from_arrays(np.zeros((4, 2)), np.zeros((4, 2)), np.ones(4), np.zeros(4))
    with pytest.raises(SymdistillError, match=r"Expected mass of shape \[2, 3\]"):
        GraphBatch.from_arrays(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 4)), np.zeros((2, 3)))
    with pytest.raises(SymdistillError, match="Did you mean 'relative'"):
        edge_input_names("relativ", 2)
    with pytest.raises(SymdistillError, match="at least 2 nodes"):
        fully_connected(1)
