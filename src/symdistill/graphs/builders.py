"""Edge builders as components: fully connected, radius (optionally periodic) and k-nearest-neighbour graphs.

Convention (PyG, see :mod:`symdistill.graphs.edges`): ``edge_index`` is int64 [2, E], row 0 the sender j,
row 1 the receiver i. Every builder returns its edges receiver-major (by receiver, then by sender), without
self-loops. A builder is a frozen dataclass whose fields are its parameters: ``to_dict()`` names it in a
config and :func:`get_builder` / :meth:`EdgeBuilder.from_dict` make it back.

A batch (PyG's ``batch`` vector) costs no Python loop over graphs: the tree search runs once, on the positions
plus one coordinate equal to the node's graph rank times a separation larger than any distance searched, so
no pair across graphs is found (two nodes of one graph differ by exactly 0 in that coordinate).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from typing import ClassVar

import numpy as np
import torch
from scipy.spatial import cKDTree

from symdistill.errors import SymdistillError, check_positive, unknown_name
from symdistill.graphs.edges import batch_edge_index, fully_connected

_CHUNK = 1 << 18  # edges per chunk of displacement arithmetic: bounds its temporaries to a few MB


@dataclass
class Edges:
    """The edges of a graph or of a batch of graphs.

    Shapes:
        edge_index: [2, E] int64; row 0 sender j, row 1 receiver i; receiver-major, no self-loops
        displacement: [E, D] pos[i] - pos[j] (the minimum image in a periodic box), the positions' dtype
        distance: [E] the norm of ``displacement``
    """

    edge_index: torch.Tensor
    displacement: torch.Tensor
    distance: torch.Tensor


@dataclass(frozen=True)
class EdgeBuilder:
    """Base class: ``builder(pos, batch=None) -> Edges``. Subclasses set ``name`` and implement ``_build``.

    Displacements are computed without autograd (numpy); to differentiate, recompute them from ``edge_index``.

    Shapes:
        pos: [V, D] float32 or float64, torch tensor or numpy array (D >= 1)
        batch: [V] integer graph ids, non-decreasing (nodes of a graph contiguous), or None for one graph
    """

    name: ClassVar[str] = ""

    def __call__(self, pos, batch=None) -> Edges:
        x, device = _positions(pos)
        edges = self._build(x, _graph_sizes(batch, len(x)))
        if device is not None and device.type != "cpu":
            edges = Edges(edges.edge_index.to(device), edges.displacement.to(device), edges.distance.to(device))
        return edges

    def _build(self, x: np.ndarray, sizes: np.ndarray) -> Edges:
        raise NotImplementedError

    def to_dict(self) -> dict:
        """``{"name": ..., **parameters}``, JSON-able (a per-axis box is a list)."""
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @staticmethod
    def from_dict(d: dict) -> EdgeBuilder:
        """The builder that ``to_dict`` described."""
        if not isinstance(d, dict) or "name" not in d:
            raise SymdistillError(f"Expected an edge builder config with a 'name', e.g. {{'name': 'knn', 'k': 8}} "
                                  f"(got {d!r:.60})")
        return get_builder(**d)


@dataclass(frozen=True)
class FullyConnected(EdgeBuilder):
    """Every ordered pair (j -> i), j != i, within each graph; every graph needs at least 2 nodes.
    For G graphs of n nodes this is ``batch_edge_index(fully_connected(n), n, G)``."""

    name: ClassVar[str] = "full"

    def _build(self, x, sizes):
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sizes)) + 1, [len(sizes)]])
        parts, offset = [], 0
        for s, t in zip(starts[:-1], starts[1:]):  # one block per run of consecutive graphs of equal size
            n, count = int(sizes[s]), int(t - s)
            parts.append(batch_edge_index(fully_connected(n), n, count) + offset)
            offset += n * count
        return _edges(torch.cat(parts, dim=1), x, None)


@dataclass(frozen=True)
class RadiusGraph(EdgeBuilder):
    """Edges j -> i between nodes of one graph at distance strictly less than ``radius`` (a pair at exactly
    ``radius`` is not an edge).

    ``box_size`` (one number, or one per axis) makes space periodic: positions are wrapped into [0, box) and
    distances are those of the minimum image, unique only for radius < box_size / 2. The distance compared
    is the returned ``distance`` (positions' dtype): the float64 tree search is padded by the rounding error
    and what it finds at >= radius is dropped. Peak memory: the int64 pair keys and edge_index
    (24 bytes per directed edge), then the output (16 + (D + 1) * itemsize bytes per edge).
    """

    radius: float
    box_size: float | tuple[float, ...] | None = None
    name: ClassVar[str] = "radius"

    def __post_init__(self):
        check_positive("radius", self.radius)
        object.__setattr__(self, "radius", float(self.radius))
        object.__setattr__(self, "box_size", _check_box(self.box_size))
        half = None if self.box_size is None else float(np.min(self.box_size)) / 2
        if half is not None and self.radius >= half:
            raise SymdistillError(f"`radius` must be < box_size / 2 = {half:g} for a unique minimum image "
                                  f"(got {self.radius:g}); use a smaller radius or a larger box")

    def _build(self, x, sizes):
        box = _box_array(self.box_size, x.shape[1])
        scale = float(np.abs(x).max() if box is None else box.max())
        search = self.radius + 4 * np.finfo(x.dtype).eps * (math.sqrt(x.shape[1]) * scale + self.radius)
        x, points, tree_box = _tree_points(x, box, sizes, 2 * search)
        pairs = cKDTree(points, boxsize=tree_box).query_pairs(search, output_type="ndarray")
        del points
        dist = np.empty(len(pairs), x.dtype)
        minimum_image(x, box, pairs[:, 0], pairs[:, 1], None, dist)
        keep = np.less(dist, np.float64(self.radius))  # compared exactly, in float64
        pairs = np.ascontiguousarray(pairs if keep.all() else pairs[keep], dtype=np.int64)
        del dist, keep
        return _edges(_receiver_major(pairs, len(x)), x, box)


@dataclass(frozen=True)
class KNNGraph(EdgeBuilder):
    """For every receiver i, edges from its ``k`` nearest other nodes of the same graph (minimum-image distance
    when ``box_size`` is given). Every graph needs more than k nodes. In-degree is exactly k; out-degrees vary.

    Ties: among nodes equally far at the k-th distance the tree picks which (deterministic for a given input,
    not by index). Coincident nodes are neighbours at distance 0.
    """

    k: int
    box_size: float | tuple[float, ...] | None = None
    name: ClassVar[str] = "knn"

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise SymdistillError(f"`k` must be an integer >= 1 (got {self.k!r})")
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "box_size", _check_box(self.box_size))

    def _build(self, x, sizes):
        k, n, smallest = self.k, len(x), int(sizes.min())
        if smallest <= k:
            fix = f"use k <= {smallest - 1}" if smallest > 1 else "drop the single-node graphs"
            raise SymdistillError(f"`k` must be < the node count of every graph (got k={k}, smallest graph has "
                                  f"{smallest}); {fix}")
        box = _box_array(self.box_size, x.shape[1])
        reach = np.linalg.norm(box) / 2 if box is not None else np.linalg.norm(np.ptp(x, axis=0))
        x, points, tree_box = _tree_points(x, box, sizes, 2 * float(reach) + 1.0)
        _, idx = cKDTree(points, boxsize=tree_box).query(points, k=k + 1)
        other = idx != np.arange(n)[:, None]
        other[other.all(axis=1), -1] = False  # self not listed (> k coincident copies): drop the farthest
        send = np.sort(idx[other].reshape(n, k), axis=1)
        edge_index = torch.stack([torch.from_numpy(send.ravel()), torch.arange(n).repeat_interleave(k)])
        return _edges(edge_index, x, box)


BUILDERS: dict[str, type[EdgeBuilder]] = {b.name: b for b in (FullyConnected, RadiusGraph, KNNGraph)}


def get_builder(name: str | EdgeBuilder, **params) -> EdgeBuilder:
    """``get_builder("radius", radius=0.1, box_size=1.0)``; unknown names and parameters get a suggestion."""
    if isinstance(name, EdgeBuilder):
        return name
    if name not in BUILDERS:
        raise unknown_name("edge builder", name, BUILDERS)
    known = {f.name: f for f in fields(BUILDERS[name])}
    for key in (k for k in params if k not in known):
        if not known:
            raise SymdistillError(f"Edge builder {name!r} takes no parameters (got {key!r}); remove it")
        raise unknown_name(f"{name!r} edge builder parameter", key, known)
    missing = [f.name for f in known.values() if f.default is MISSING and f.name not in params]
    if missing:
        raise SymdistillError(f"Edge builder {name!r} needs `{missing[0]}`; e.g. get_builder({name!r}, "
                              f"{missing[0]}=...)")
    return BUILDERS[name](**params)


def _positions(pos) -> tuple[np.ndarray, torch.device | None]:
    """Checked positions as a numpy array (a view where possible) and the torch device they came from."""
    device = pos.device if isinstance(pos, torch.Tensor) else None
    if device is not None:
        if pos.dtype not in (torch.float32, torch.float64):
            raise SymdistillError(f"Expected float32 or float64 positions (got {pos.dtype}); convert with .double()")
        pos = pos.detach().cpu().numpy()
    x = np.asarray(pos)
    if x.dtype not in (np.float32, np.float64):
        raise SymdistillError(f"Expected float32 or float64 positions (got {x.dtype}); convert with .astype(float)")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise SymdistillError(f"Expected pos of shape [V, D] with V, D >= 1 (got {list(x.shape)})")
    if not np.isfinite(x).all():
        bad = x.size - int(np.isfinite(x).sum())
        raise SymdistillError(f"pos has {bad} non-finite value(s) (NaN or inf); fix or drop those nodes")
    return np.ascontiguousarray(x), device


def _graph_sizes(batch, n_nodes: int) -> np.ndarray:
    """Node counts of the consecutive graphs in ``batch`` ([n_nodes] for None)."""
    if batch is None:
        return np.array([n_nodes])
    b = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    if b.ndim != 1 or len(b) != n_nodes:
        raise SymdistillError(f"Expected batch of shape [V] = [{n_nodes}] (got {list(b.shape)})")
    if b.dtype.kind not in "iu":
        raise SymdistillError(f"Expected integer graph ids in batch (got {b.dtype}); convert with .long()")
    steps = np.diff(b.astype(np.int64))
    if (steps < 0).any():
        i = int(np.argmax(steps < 0))
        raise SymdistillError(f"batch must be non-decreasing (got {b[i]} then {b[i + 1]} at node {i + 1}); "
                              f"sort the nodes by graph")
    return np.diff(np.concatenate([[0], np.flatnonzero(steps) + 1, [n_nodes]]))


def _check_box(box_size):
    """None, a float, or a tuple of floats, each finite and > 0."""
    if box_size is None:
        return None
    scalar = np.ndim(box_size) == 0
    values = [box_size] if scalar else list(box_size)
    for v in values or [box_size]:
        check_positive("box_size", v.item() if isinstance(v, np.generic) else v)
    return float(values[0]) if scalar else tuple(float(v) for v in values)


def _box_array(box_size, dim: int) -> np.ndarray | None:
    if isinstance(box_size, tuple) and len(box_size) != dim:
        raise SymdistillError(f"`box_size` has {len(box_size)} entries but the positions have D={dim}; "
                              f"give one per axis or a single number")
    return None if box_size is None else np.broadcast_to(np.asarray(box_size, dtype=np.float64), (dim,)).copy()


def _tree_points(x: np.ndarray, box, sizes: np.ndarray, separation: float):
    """(x wrapped into [0, box) when periodic, float64 points for the tree, the tree's boxsize).

    With several graphs the points get one more coordinate, graph rank * separation, so no search of reach
    < separation crosses graphs; when periodic that axis is too (cKDTree wants every axis so)."""
    points = x.astype(np.float64, copy=False)
    if box is not None:
        points = np.mod(x, box)  # float64, as box is
        points[points >= box] = 0.0  # np.mod rounds a tiny negative up to box itself
        x = points.astype(x.dtype, copy=False)
    if len(sizes) > 1:
        rank = np.repeat(np.arange(len(sizes), dtype=np.float64) * separation, sizes)
        points = np.column_stack([points, rank])
        box = None if box is None else np.append(box, len(sizes) * separation)
    return x, points, box


def _receiver_major(pairs: np.ndarray, n: int) -> torch.Tensor:
    """Pairs (a, b) -> edge_index of both directions, receiver-major. Overwrites ``pairs`` (C-contiguous [P, 2]
    int64) with the keys receiver * n + sender and sorts them in place: no argsort, no gathers."""
    assert n < 3_000_000_000 and pairs.flags.c_contiguous, "keys receiver * n + sender must fit in int64"
    a = pairs[:, 0].copy()
    pairs[:, 0] *= n
    pairs[:, 0] += pairs[:, 1]  # a * n + b: the edge b -> a
    pairs[:, 1] *= n
    pairs[:, 1] += a  # b * n + a: the edge a -> b
    key = pairs.reshape(-1)
    key.sort()
    edge_index = torch.empty((2, len(key)), dtype=torch.int64)
    send, recv = edge_index.numpy()
    np.floor_divide(key, n, out=recv)
    np.multiply(recv, n, out=send)
    np.subtract(key, send, out=send)
    return edge_index


def minimum_image(x, box, send, recv, disp, dist) -> None:
    """Fill ``dist`` (and ``disp`` unless None) with x[recv] - x[send], minimum image when periodic, chunk by
    chunk. The same arithmetic for (j, i) and (i, j) gives exactly opposite vectors and equal norms."""
    b = None if box is None else box.astype(x.dtype)
    for s in range(0, len(send), _CHUNK):
        e = slice(s, s + _CHUNK)
        d = np.take(x, recv[e], axis=0)  # np.take: a few times faster than x[idx] for rows
        d -= np.take(x, send[e], axis=0)
        if b is not None:  # d -= b * round(d / b), in place
            shift = np.divide(d, b)
            d -= np.multiply(np.rint(shift, out=shift), b, out=shift)
        if disp is not None:
            disp[e] = d
        sq = d[:, 0] * d[:, 0]
        for a in range(1, d.shape[1]):
            sq += d[:, a] * d[:, a]
        dist[e] = np.sqrt(sq)


def _edges(edge_index: torch.Tensor, x: np.ndarray, box) -> Edges:
    disp, dist = np.empty((edge_index.shape[1], x.shape[1]), x.dtype), np.empty(edge_index.shape[1], x.dtype)
    minimum_image(x, box, *edge_index.numpy(), disp, dist)
    return Edges(edge_index, torch.from_numpy(disp), torch.from_numpy(dist))
