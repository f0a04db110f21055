"""Halo graphs: edges j -> i between halos closer than ``radius`` (minimum image in the periodic box).

One message step and no global block make the graph a union of independent star graphs, so a set of
receivers with *all* their incoming edges is an exact mini-batch. Two sources give such batches:

- :class:`HaloGraph` (materialised): every edge, stored as CSR sorted by receiver. 8 bytes per edge
  (int32 sender + float32 distance; int64 senders from 2**31 halos, 12 bytes) plus 8 bytes per halo
  (int64 ``indptr``). Built by :class:`symdistill.graphs.builders.RadiusGraph`, whose peak is ~72
  bytes per edge while it sorts: meant for catalogues of ~1e4-1e5 halos.
- :class:`StreamingGraph` / :func:`receiver_chunks`: one ``cKDTree(pos, boxsize=box)``, and the edges
  of each chunk of receivers found on the fly (``query_ball_point``): memory O(chunk), for 2e5 halos /
  3e7 edges.

Both give the same edges for the same receivers, bit for bit: the minimum-image distances come from
one helper (``minimum_image`` of the edge builders) and the test ``d < radius`` is made on the float64
distance in both, before it is stored as float32. Features stay in physical units (M in Msun/h,
|r_ij| in Mpc/h); the network normalises them itself (:class:`symdistill.cosmology.model.HaloGN`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from symdistill.cosmology.catalogue import HaloCatalogue
from symdistill.errors import SymdistillError, check_positive
from symdistill.graphs.builders import RadiusGraph, minimum_image  # one distance helper for every builder

#: Edges per chunk when none is given: ~100 MB of float32 activations per 100-wide layer.
CHUNK_EDGES = 1 << 18


@dataclass
class HaloBatch:
    """Receivers with all their incoming edges (an exact mini-batch of star graphs), physical units.

    Shapes:
        receivers: [B] int64 halo ids; mass_receiver: [B] float32 Msun/h; velocity: [B, 3] float32 km/s;
        delta: [B] float32 (the target, NaN where unknown)
        edge_receiver: [E] int64 local receiver 0..B-1, non-decreasing; senders: [E] int64 halo ids
        (ascending within a receiver); mass_sender: [E] float32 Msun/h; distance: [E] float32 Mpc/h
    """

    receivers: torch.Tensor
    edge_receiver: torch.Tensor
    senders: torch.Tensor
    distance: torch.Tensor
    mass_sender: torch.Tensor
    mass_receiver: torch.Tensor
    velocity: torch.Tensor
    delta: torch.Tensor

    def __len__(self) -> int:
        return len(self.receivers)

    @property
    def n_edges(self) -> int:
        return len(self.senders)

    def to(self, device) -> "HaloBatch":
        return HaloBatch(**{k: v.to(device) for k, v in vars(self).items()})


def make_batch(cat: HaloCatalogue, receivers, counts, senders, distance) -> HaloBatch:
    """The batch of ``receivers`` (ids) with ``counts`` edges each, from ``senders`` and float32 ``distance``
    listed receiver by receiver."""
    receivers, counts = np.asarray(receivers, np.int64), np.asarray(counts, np.int64)
    senders = np.asarray(senders, np.int64)
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return HaloBatch(
        receivers=torch.from_numpy(receivers.copy()),
        edge_receiver=torch.from_numpy(np.repeat(np.arange(len(receivers), dtype=np.int64), counts)),
        senders=torch.from_numpy(senders), distance=f32(distance), mass_sender=f32(cat.mass[senders]),
        mass_receiver=f32(cat.mass[receivers]), velocity=f32(cat.vel[receivers]), delta=f32(cat.delta[receivers]))


class _Source:
    """What the trainer and the recorder read: ``batch(receivers)`` and ``chunks(receivers, ...)``."""

    catalogue: HaloCatalogue
    radius: float

    def batch(self, receivers) -> HaloBatch:
        """One batch holding every edge of ``receivers`` (ids, in the given order)."""
        recv = self._receivers(receivers)
        r, counts, send, dist = self._edges(recv)
        return make_batch(self.catalogue, r, counts, send, dist)

    def chunks(self, receivers=None, *, chunk_edges: int = CHUNK_EDGES,
               chunk_receivers: int | None = None) -> Iterator[HaloBatch]:
        """Consecutive groups of ``receivers`` (default: every halo) with all their edges. A chunk takes
        receivers in order while it holds <= ``chunk_edges`` edges and <= ``chunk_receivers`` receivers
        (a receiver with more edges than ``chunk_edges`` is a chunk alone)."""
        check_positive("chunk_edges", chunk_edges)
        check_positive("chunk_receivers", chunk_receivers, optional=True)
        recv = self._receivers(receivers)
        max_recv = int(chunk_receivers or len(recv) or 1)
        block = max(1, min(max_recv, 4 * int(chunk_edges / max(1.0, self.mean_degree_estimate())) + 1))
        parts = (self._edges(recv[s: s + block]) for s in range(0, len(recv), block))
        for r, counts, send, dist in _rechunk(parts, int(chunk_edges), max_recv):
            yield make_batch(self.catalogue, r, counts, send, dist)

    def mean_degree_estimate(self) -> float:
        """Expected neighbours per halo for a uniform catalogue (sizes the query blocks)."""
        c = self.catalogue
        return len(c) / c.box_size ** 3 * 4 / 3 * math.pi * self.radius ** 3

    def _receivers(self, receivers) -> np.ndarray:
        n = len(self.catalogue)
        if receivers is None:
            return np.arange(n, dtype=np.int64)
        r = np.asarray(receivers).reshape(-1)
        if r.dtype.kind not in "iu":
            raise SymdistillError(f"Expected integer receiver ids (got {r.dtype}); pass indices, not a mask")
        if len(r) and (r.min() < 0 or r.max() >= n):
            raise SymdistillError(f"receiver ids must be in [0, {n}) for a catalogue of {n} halos "
                                  f"(got {r.min()} to {r.max()})")
        return r.astype(np.int64, copy=False)

    def _edges(self, recv: np.ndarray):
        raise NotImplementedError


def _rechunk(parts, chunk_edges: int, max_recv: int):
    """Regroup blocks (receivers, counts, senders, distance) into chunks under both limits, in order."""
    buf = None
    for part in itertools.chain(parts, [None]):
        if part is not None:
            buf = part if buf is None else tuple(np.concatenate([a, b]) for a, b in zip(buf, part))
        while buf is not None and len(buf[0]):
            cum = np.cumsum(buf[1])
            k = min(max(1, int(np.searchsorted(cum, chunk_edges, side="right"))), max_recv)
            if part is not None and k == len(buf[0]) and k < max_recv and cum[-1] < chunk_edges:
                break  # room left: wait for the next block
            n_e = int(cum[k - 1])
            yield buf[0][:k], buf[1][:k], buf[2][:n_e], buf[3][:n_e]
            buf = (buf[0][k:], buf[1][k:], buf[2][n_e:], buf[3][n_e:])


def _check_radius(cat: HaloCatalogue, radius: float) -> RadiusGraph:
    if not isinstance(cat, HaloCatalogue):
        raise SymdistillError(f"Expected a HaloCatalogue (got {type(cat).__name__}); read one with "
                              "symdistill.cosmology first")
    return RadiusGraph(radius, cat.box_size)  # checks radius > 0 and radius < box / 2


@dataclass(eq=False)
class HaloGraph(_Source):
    """Every edge j -> i with |r_ij| < radius (minimum image, no self-loops), CSR sorted by receiver.

    Shapes:
        indptr: [N + 1] int64 (the edges of receiver i are indptr[i]:indptr[i + 1]);
        senders: [E] int32 (int64 from 2**31 halos), ascending per receiver; distance: [E] float32 Mpc/h
    """

    catalogue: HaloCatalogue
    radius: float
    indptr: np.ndarray
    senders: np.ndarray
    distance: np.ndarray

    @classmethod
    def build(cls, cat: HaloCatalogue, radius: float = 50.0) -> "HaloGraph":
        edges = _check_radius(cat, radius)(cat.pos)
        send, recv = edges.edge_index.numpy()
        counts = np.bincount(recv, minlength=len(cat))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        dtype = np.int32 if len(cat) < 2**31 else np.int64
        return cls(cat, float(radius), indptr, send.astype(dtype), edges.distance.numpy().astype(np.float32))

    @property
    def n_edges(self) -> int:
        return len(self.senders)

    @property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.senders.nbytes + self.distance.nbytes

    def mean_degree_estimate(self) -> float:
        return self.n_edges / max(1, len(self.catalogue))

    def _edges(self, recv):
        start = self.indptr[recv]
        counts = self.indptr[recv + 1] - start
        offsets = np.repeat(start - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
        return recv, counts, self.senders[offsets].astype(np.int64), self.distance[offsets]


class StreamingGraph(_Source):
    """The edges of any receivers, found when asked from one periodic ``cKDTree`` (memory O(chunk)).

    ``workers``: threads of each ``query_ball_point`` (-1: all cores); the result does not depend on it.
    """

    def __init__(self, cat: HaloCatalogue, radius: float = 50.0, *, workers: int = 1):
        builder = _check_radius(cat, radius)
        self.catalogue, self.radius, self.workers = cat, float(radius), int(workers)
        self.box = np.full(3, cat.box_size)
        # the tree's own distance rounds differently from ours: search a little further, then test d < radius
        self.search = builder.radius + 4 * np.finfo(np.float64).eps * (math.sqrt(3) * cat.box_size + builder.radius)
        self.tree = cKDTree(cat.pos, boxsize=cat.box_size)

    def _edges(self, recv):
        if len(recv) == 0:
            return recv, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        found = self.tree.query_ball_point(self.catalogue.pos[recv], self.search, return_sorted=True,
                                           workers=self.workers)
        counts = np.fromiter(map(len, found), np.int64, len(found))
        send = np.fromiter(itertools.chain.from_iterable(found), np.int64, int(counts.sum()))
        del found
        owner = np.repeat(np.arange(len(recv)), counts)
        rec = recv[owner]
        dist = np.empty(len(send), np.float64)
        minimum_image(self.catalogue.pos, self.box, send, rec, None, dist)
        keep = (send != rec) & np.less(dist, self.radius)
        return recv, np.bincount(owner[keep], minlength=len(recv)), send[keep], dist[keep].astype(np.float32)


def receiver_chunks(cat: HaloCatalogue, radius: float = 50.0, receivers=None, *, chunk_edges: int = CHUNK_EDGES,
                    chunk_receivers: int | None = None, workers: int = 1) -> Iterator[HaloBatch]:
    """Chunks of ``receivers`` (default: all) with all their edges, built on the fly from one tree
    (see :meth:`StreamingGraph.chunks`)."""
    yield from StreamingGraph(cat, radius, workers=workers).chunks(receivers, chunk_edges=chunk_edges,
                                                                     chunk_receivers=chunk_receivers)


def toy_catalogue(n: int = 300, box_size: float = 200.0, radius: float = 50.0, seed: int = 0,
                  velocities: bool = False) -> HaloCatalogue:
    """A synthetic catalogue whose ``delta`` is a known function of the neighbours (tests, benchmarks):

    delta_i = 0.1 + a * sum_{|r_ij| < radius} (M_j / 1e14) / (1 + |r_ij| / 10)^2, with ``a`` setting the
    median to 0.4; uniform positions, lognormal masses clipped to [1e13, 1e15] Msun/h. ``velocities``
    adds 1e-4 * |v_i| (km/s) to delta, so a model that reads |v_i| can do better.
    """
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, box_size, (n, 3))
    mass = 10 ** np.clip(rng.normal(13.7, 0.4, n), 13, 15)
    vel = rng.normal(0, 300.0, (n, 3))
    cat = HaloCatalogue(pos, vel, mass, box_size, meta={"source": f"toy_catalogue(seed={seed})"})
    g = StreamingGraph(cat, radius)
    s = np.zeros(n)
    for b in g.chunks():
        w = b.mass_sender.double().numpy() / 1e14 / (1 + b.distance.double().numpy() / 10) ** 2
        s[b.receivers.numpy()] = np.bincount(b.edge_receiver.numpy(), weights=w, minlength=len(b))
    cat.delta = 0.1 + 0.3 * s / max(np.median(s), 1e-12)
    if velocities:
        cat.delta = cat.delta + 1e-4 * np.linalg.norm(vel, axis=1)
    return cat
