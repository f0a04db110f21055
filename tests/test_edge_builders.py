"""Edge builders (full, radius, kNN; periodic or not) against a brute-force O(N^2) construction."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from symdistill.errors import SymdistillError
from symdistill.graphs.builders import (
    BUILDERS, EdgeBuilder, Edges, FullyConnected, KNNGraph, RadiusGraph, get_builder,
)
from symdistill.graphs.edges import batch_edge_index, fully_connected


def brute_displacements(pos, box=None):
    """d[i, j] = pos[i] - pos[j] (receiver i, sender j), minimum image when periodic; float64."""
    pos = np.asarray(pos, dtype=np.float64)
    d = pos[:, None, :] - pos[None, :, :]
    if box is not None:
        d = d - box * np.round(d / box)
    return d


def brute_radius(pos, radius, box=None):
    """{(sender, receiver): displacement} of all pairs at distance < radius."""
    d = brute_displacements(pos, box)
    dist = np.linalg.norm(d, axis=-1)
    np.fill_diagonal(dist, np.inf)
    return {(j, i): d[i, j] for i, j in zip(*np.nonzero(dist < radius))}


def brute_knn(pos, k, box=None):
    d = brute_displacements(pos, box)
    dist = np.linalg.norm(d, axis=-1)
    np.fill_diagonal(dist, np.inf)
    return {(j, i): d[i, j] for i in range(len(pos)) for j in np.argsort(dist[i], kind="stable")[:k]}


def as_dict(edges: Edges):
    send, recv = edges.edge_index.tolist()
    assert len(set(zip(send, recv))) == len(send), "an edge appears twice"
    return {(j, i): edges.displacement[e].double().numpy() for e, (j, i) in enumerate(zip(send, recv))}


def assert_same_edges(edges, expected, atol=1e-6):
    got = as_dict(edges)
    assert set(got) == set(expected)
    for key, d in expected.items():
        np.testing.assert_allclose(got[key], d, atol=atol)
    np.testing.assert_allclose(edges.distance.double().numpy(), np.linalg.norm(edges.displacement.double().numpy(),
                               axis=1), rtol=1e-6, atol=1e-7)


def assert_receiver_major(edges, n_nodes):
    send, recv = edges.edge_index.numpy()
    assert (send != recv).all()
    assert (np.diff(recv * n_nodes + send) > 0).all()


def points(n, dim, seed=0, low=0.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, size=(n, dim))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("box", [None, 1.0, (1.0, 1.5, 0.8)])
def test_radius_graph_matches_brute_force(dim, box):
    box = box if not isinstance(box, tuple) else box[:dim]
    pos = points(150, dim, seed=dim, low=-0.3, high=1.2)  # partly outside the box: wrapped
    radius = 0.3 if dim == 3 else 0.15
    edges = RadiusGraph(radius, box_size=box)(pos)
    expected = brute_radius(pos, radius, None if box is None else np.asarray(box))
    assert len(expected) > 100
    assert_same_edges(edges, expected)
    assert_receiver_major(edges, len(pos))
    assert (edges.distance < radius).all()


def test_pairs_connect_only_across_the_periodic_boundary_with_minimum_image_sign():
    pos = np.array([[0.01, 0.5], [0.99, 0.5], [0.5, 0.01], [0.5, 0.99], [-0.01, 0.2], [1.01, 0.2]])
    edges = RadiusGraph(0.05, box_size=1.0)(pos)
    expected = {(0, 1): [-0.02, 0], (1, 0): [0.02, 0], (2, 3): [0, -0.02], (3, 2): [0, 0.02],
                (4, 5): [0.02, 0], (5, 4): [-0.02, 0]}  # receiver - sender, through the boundary
    assert_same_edges(edges, {k: np.array(v) for k, v in expected.items()}, atol=1e-12)
    assert RadiusGraph(0.05)(pos).edge_index.shape == (2, 0)
    edges = RadiusGraph(0.05, box_size=1.0)(np.array([[-1e-20, 0.5], [0.02, 0.5]]))  # np.mod(-1e-20, 1) == 1.0
    assert_same_edges(edges, {(0, 1): np.array([0.02, 0]), (1, 0): np.array([-0.02, 0])}, atol=1e-12)


def test_corner_pair_connects_through_three_periodic_faces():
    pos = np.array([[0.01, 0.01, 0.01], [0.99, 0.99, 0.99], [0.5, 0.5, 0.5]])
    edges = RadiusGraph(0.05, box_size=1.0)(pos)
    assert_same_edges(edges, {(0, 1): np.full(3, -0.02), (1, 0): np.full(3, 0.02)}, atol=1e-12)


def test_radius_is_strict_and_per_axis_box_is_per_axis():
    pos = np.array([[0.0], [0.25], [0.5]])
    assert RadiusGraph(0.25)(pos).edge_index.shape == (2, 0)
    assert RadiusGraph(0.25 + 1e-12)(pos).edge_index.shape == (2, 4)
    assert RadiusGraph(0.25)(pos[:1]).edge_index.shape == (2, 0)  # a lone node: no edges
    pos2 = np.array([[0.05, 0.5], [1.95, 0.5], [0.95, 0.5], [1.5, 0.05], [1.5, 0.95]])
    edges = RadiusGraph(0.15, box_size=(2.0, 1.0))(pos2)  # x wraps at 2 (so 0 and 2 are 0.9 apart), y at 1
    assert set(as_dict(edges)) == {(0, 1), (1, 0), (3, 4), (4, 3)}


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("box", [None, 1.0])
def test_knn_matches_brute_force(dim, box):
    pos = points(120, dim, seed=10 + dim)
    edges = KNNGraph(5, box_size=box)(pos)
    assert_same_edges(edges, brute_knn(pos, 5, box))
    assert_receiver_major(edges, len(pos))
    assert (np.bincount(edges.edge_index[1].numpy()) == 5).all()


def test_knn_with_coincident_nodes_has_no_self_loops():
    pos = np.vstack([np.zeros((4, 2)), np.ones((2, 2))])
    edges = KNNGraph(2)(pos)
    assert_receiver_major(edges, len(pos))
    assert (np.bincount(edges.edge_index[1].numpy()) == 2).all()
    assert torch.all(edges.distance[:8] == 0)  # the four coincident nodes pick each other


@pytest.mark.parametrize("n,n_graphs", [(2, 1), (4, 3), (7, 5)])
def test_fully_connected_equals_the_existing_function(n, n_graphs):
    pos = points(n * n_graphs, 3)
    edges = FullyConnected()(pos, batch=np.repeat(np.arange(n_graphs), n))
    assert torch.equal(edges.edge_index, batch_edge_index(fully_connected(n), n, n_graphs))
    send, recv = edges.edge_index.numpy()
    np.testing.assert_allclose(edges.displacement.numpy(), pos[recv] - pos[send])


BATCHED = [FullyConnected(), RadiusGraph(0.35), RadiusGraph(0.2, box_size=1.0), KNNGraph(2), KNNGraph(3, box_size=1.0)]


@pytest.mark.parametrize("builder", BATCHED, ids=lambda b: str(b.to_dict()))
def test_batch_of_different_sizes_equals_each_graph_alone_with_offsets(builder):
    sizes = [5, 9, 4, 12, 4]
    pos = points(sum(sizes), 2, seed=3)  # all graphs overlap in space
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    edges = builder(torch.from_numpy(pos), batch)
    offsets = np.cumsum([0] + sizes[:-1])
    alone = [builder(pos[o:o + n]) for o, n in zip(offsets, sizes)]
    assert torch.equal(edges.edge_index, torch.cat([a.edge_index + o for a, o in zip(alone, offsets)], dim=1))
    assert torch.equal(edges.displacement, torch.cat([a.displacement for a in alone]))
    assert (batch[edges.edge_index[0]] == batch[edges.edge_index[1]]).all()
    assert edges.edge_index.shape[1] > 0


@pytest.mark.parametrize("builder", BATCHED, ids=lambda b: b.name)
@pytest.mark.parametrize("as_torch", [False, True])
def test_float32_in_float32_out(builder, as_torch):
    pos = points(40, 3, seed=4).astype(np.float32)
    edges = builder(torch.from_numpy(pos) if as_torch else pos)
    assert edges.edge_index.dtype == torch.int64
    assert edges.displacement.dtype == edges.distance.dtype == torch.float32
    ref = builder(pos.astype(np.float64))
    assert torch.equal(edges.edge_index, ref.edge_index)
    np.testing.assert_allclose(edges.displacement.numpy(), ref.displacement.numpy(), atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), shift=st.tuples(*[st.floats(-3, 3)] * 3))
def test_periodic_radius_graph_invariant_to_translation(seed, shift):
    pos = points(60, 3, seed=seed)
    builder = RadiusGraph(0.3, box_size=1.0)
    moved = builder(pos + np.array(shift))
    assert torch.equal(moved.edge_index, builder(pos).edge_index)
    np.testing.assert_allclose(moved.displacement.numpy(), builder(pos).displacement.numpy(), atol=1e-9)


def test_builders_round_trip_through_json():
    for builder in [FullyConnected(), RadiusGraph(0.1, box_size=(1, 2, 3)), KNNGraph(4, box_size=2.0)]:
        d = json.loads(json.dumps(builder.to_dict()))
        assert EdgeBuilder.from_dict(d) == builder
        assert get_builder(**d) == builder
    assert set(BUILDERS) == {"full", "radius", "knn"}


POS = points(10, 3)
ERRORS = [
    (lambda: get_builder("radus", radius=0.1), "Did you mean 'radius'"),
    (lambda: get_builder("knn", k=2, box=1.0), "Did you mean 'box_size'"),
    (lambda: get_builder("knn"), "needs `k`"),
    (lambda: get_builder("full", radius=1.0), "takes no parameters"),
    (lambda: EdgeBuilder.from_dict({"radius": 0.1}), "with a 'name'"),
    (lambda: RadiusGraph(-0.1), "`radius` must be > 0 (got -0.1)"),
    (lambda: RadiusGraph(0.5, box_size=1.0), "use a smaller radius or a larger box"),
    (lambda: RadiusGraph(0.3, box_size=(1.0, 0.5)), "box_size / 2 = 0.25"),
    (lambda: RadiusGraph(0.1, box_size=-1.0), "`box_size` must be > 0"),
    (lambda: RadiusGraph(0.1, box_size=(2.0, 2.0))(POS), "give one per axis"),
    (lambda: KNNGraph(-1), "`k` must be an integer >= 1 (got -1)"),
    (lambda: KNNGraph(10)(POS), "use k <= 9"),
    (lambda: KNNGraph(2)(POS, batch=[0] * 9 + [1]), "drop the single-node graphs"),
    (lambda: RadiusGraph(0.1)(POS[:, 0]), "Expected pos of shape [V, D]"),
    (lambda: RadiusGraph(0.1)(POS[:, :0]), "Expected pos of shape [V, D]"),
    (lambda: RadiusGraph(0.1)(np.where(np.eye(10, 3) > 0, np.nan, POS)), "3 non-finite"),
    (lambda: RadiusGraph(0.1)(np.array([[np.inf, 0.0]])), "non-finite"),
    (lambda: RadiusGraph(0.1)(POS.astype(int)), "Expected float32 or float64 positions"),
    (lambda: RadiusGraph(0.1)(torch.tensor(POS).half()), "Expected float32 or float64 positions"),
    (lambda: RadiusGraph(0.1)(POS, batch=[0] * 9), "Expected batch of shape [V] = [10]"),
    (lambda: RadiusGraph(0.1)(POS, batch=[0] * 5 + [1] * 3 + [0] * 2), "batch must be non-decreasing"),
    (lambda: RadiusGraph(0.1)(POS, batch=np.zeros(10)), "integer graph ids"),
    (lambda: FullyConnected()(POS[:1]), "at least 2 nodes"),
]


@pytest.mark.parametrize("make,message", ERRORS, ids=[m for _, m in ERRORS])
def test_bad_input_gives_one_line_error_naming_the_fix(make, message):
    with pytest.raises(SymdistillError) as info:
        make()
    assert message in str(info.value)
    assert "\n" not in str(info.value)
