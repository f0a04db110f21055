"""Halo graphs: minimum-image radius edges against brute force, streaming == materialised, chunk limits."""

import numpy as np
import pytest
import torch

from symdistill.cosmology.catalogue import HaloCatalogue
from symdistill.cosmology.graph import HaloGraph, StreamingGraph, receiver_chunks, toy_catalogue
from symdistill.errors import SymdistillError

BOX, RADIUS = 200.0, 50.0


def catalogue(n=300, seed=0):
    rng = np.random.default_rng(seed)
    mass = 10 ** np.clip(rng.normal(13.7, 0.4, n), 13, 15)
    return HaloCatalogue(rng.uniform(0, BOX, (n, 3)), rng.normal(0, 300, (n, 3)), mass, BOX,
                         delta=rng.normal(0.4, 0.1, n))


def brute_edges(pos, radius, box):
    """{(sender j, receiver i): distance} of all pairs j != i at minimum-image distance < radius (float64)."""
    d = pos[:, None, :] - pos[None, :, :]
    d -= box * np.round(d / box)
    dist = np.linalg.norm(d, axis=-1)
    np.fill_diagonal(dist, np.inf)
    return {(j, i): dist[i, j] for i, j in zip(*np.nonzero(dist < radius))}


def edge_dict(batch):
    recv = batch.receivers[batch.edge_receiver].numpy()
    return {(int(j), int(i)): float(r) for j, i, r in zip(batch.senders.numpy(), recv, batch.distance.numpy())}


@pytest.mark.parametrize("make", [lambda c: HaloGraph.build(c, RADIUS), lambda c: StreamingGraph(c, RADIUS)],
                         ids=["materialised", "streaming"])
def test_edges_are_the_minimum_image_pairs_within_radius(make):
    cat = catalogue()
    want = brute_edges(cat.pos, RADIUS, BOX)
    got = edge_dict(make(cat).batch(np.arange(len(cat))))
    assert set(got) == set(want)
    assert all(j != i for j, i in got)
    assert np.allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-6)
    # a good share of the pairs wrap around the box: the test exercises the minimum image
    plain = {(j, i) for (j, i) in want if np.linalg.norm(cat.pos[i] - cat.pos[j]) < RADIUS}
    assert len(want) - len(plain) > 0.1 * len(want)  # ~20% here


@pytest.mark.parametrize("cls", ["materialised", "streaming"])
def test_pairs_across_the_boundary_and_at_exactly_the_radius(cls):
    pos = np.array([[1.0, 100, 100], [199.0, 100, 100],     # 2 apart across x = 0
                    [10.0, 10, 10], [60.0, 10, 10],          # exactly 50 apart: not an edge
                    [30.0, 150, 150], [180.0, 150, 150],     # exactly 50 apart across the boundary: not an edge
                    [30.0, 60, 190], [180.5, 60, 190]])      # 49.5 apart across the boundary: an edge
    cat = HaloCatalogue(pos, np.zeros_like(pos), np.full(len(pos), 1e13), BOX)
    graph = HaloGraph.build(cat, RADIUS) if cls == "materialised" else StreamingGraph(cat, RADIUS)
    got = edge_dict(graph.batch(np.arange(len(pos))))
    assert set(got) == {(0, 1), (1, 0), (6, 7), (7, 6)}
    assert got[(0, 1)] == pytest.approx(2.0) and got[(6, 7)] == pytest.approx(49.5)


def test_streaming_batches_equal_materialised_ones_exactly():
    cat = catalogue(seed=1)
    full, stream = HaloGraph.build(cat, RADIUS), StreamingGraph(cat, RADIUS)
    recv = np.random.default_rng(0).permutation(len(cat))[:77]
    a, b = full.batch(recv), stream.batch(recv)
    for name, value in vars(a).items():
        assert torch.equal(value, getattr(b, name)), name
    assert torch.equal(a.receivers, torch.from_numpy(recv))


@pytest.mark.parametrize("chunk_edges, chunk_receivers", [(500, None), (10_000, 16), (1, None)])
def test_chunks_keep_order_limits_and_match_between_sources(chunk_edges, chunk_receivers):
    cat = catalogue(seed=2)
    recv = np.random.default_rng(1).permutation(len(cat))[:150]
    kw = dict(chunk_edges=chunk_edges, chunk_receivers=chunk_receivers)
    full = list(HaloGraph.build(cat, RADIUS).chunks(recv, **kw))
    stream = list(receiver_chunks(cat, RADIUS, recv, **kw))
    assert len(full) == len(stream) > 1
    for a, b in zip(full, stream):
        assert all(torch.equal(v, getattr(b, k)) for k, v in vars(a).items())
        assert a.n_edges <= chunk_edges or len(a) == 1
        assert chunk_receivers is None or len(a) <= chunk_receivers
    assert torch.equal(torch.cat([c.receivers for c in full]), torch.from_numpy(recv))
    whole = HaloGraph.build(cat, RADIUS).batch(recv)
    assert torch.equal(torch.cat([c.senders for c in full]), whole.senders)


def test_csr_layout_and_bytes_per_edge():
    g = HaloGraph.build(catalogue(), RADIUS)
    assert g.senders.dtype == np.int32 and g.distance.dtype == np.float32 and g.indptr.dtype == np.int64
    assert g.indptr[-1] == g.n_edges and (np.diff(g.indptr) >= 0).all()
    assert g.nbytes == 8 * g.n_edges + 8 * (len(g.catalogue) + 1)
    for i in (0, 5, 100):
        s = g.senders[g.indptr[i]: g.indptr[i + 1]]
        assert (np.diff(s) > 0).all() and i not in s


def test_radius_of_half_the_box_is_refused_with_the_fix():
    with pytest.raises(SymdistillError, match=r"radius.*< box_size / 2 = 100.*larger box"):
        StreamingGraph(catalogue(), 100.0)
    with pytest.raises(SymdistillError, match=r"receiver ids must be in \[0, 300\)"):
        HaloGraph.build(catalogue(), RADIUS).batch([0, 300])


def test_toy_target_is_the_stated_function_of_the_neighbours():
    cat = toy_catalogue(200, 150.0, RADIUS, seed=3)
    edges = brute_edges(cat.pos, RADIUS, cat.box_size)
    s = np.zeros(len(cat))
    for (j, i), r in edges.items():
        s[i] += cat.mass[j] / 1e14 / (1 + r / 10) ** 2
    assert np.allclose(cat.delta, 0.1 + 0.3 * s / np.median(s), rtol=1e-5)
    assert np.median(cat.delta) == pytest.approx(0.4)
