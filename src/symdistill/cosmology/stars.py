"""Halo star graphs for the formulas: edges j -> i as plain arrays, and the edges into a set of halos
with the variables every formula reads (M_j, r, M_i in units of :data:`MASS_UNIT`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from symdistill.errors import SymdistillError

#: Masses enter every formula in units of 1e13 Msun/h (M = mass / MASS_UNIT).
MASS_UNIT = 1e13
EDGE_VARIABLES = ("M_j", "r", "M_i")   # f(M_j, r_ij, M_i): sender mass, distance, receiver mass
NODE_VARIABLES = ("e", "M_i")          # g(e_i, M_i)
UNITS = "[M in 1e13 Msun/h, r in Mpc/h]"


@dataclass(frozen=True)
class Edges:
    """Directed halo pairs: ``receiver`` i, ``sender`` j, distance ``r`` (Mpc/h)."""

    receiver: np.ndarray
    sender: np.ndarray
    r: np.ndarray

    @classmethod
    def of(cls, edges) -> Edges:
        """An :class:`Edges`, a mapping with keys receiver/sender/r, or a tuple (receiver, sender, r)."""
        if isinstance(edges, Edges):
            return edges
        if isinstance(edges, Mapping):
            missing = [k for k in ("receiver", "sender", "r") if k not in edges]
            if missing:
                raise SymdistillError(f"`edges` lacks {missing}: pass a mapping with keys receiver, sender, r")
            edges = (edges["receiver"], edges["sender"], edges["r"])
        if not isinstance(edges, Sequence) or len(edges) != 3:
            raise SymdistillError(f"Expected `edges` as Edges(receiver, sender, r) (got {type(edges).__name__})")
        rec, snd, r = (np.asarray(a).reshape(-1) for a in edges)
        if not (len(rec) == len(snd) == len(r)):
            raise SymdistillError(f"`edges`: receiver, sender and r must have one entry per edge "
                                  f"(got {len(rec)}, {len(snd)}, {len(r)})")
        if not np.all(np.isfinite(r)) or (len(r) and r.min() < 0):
            raise SymdistillError("`edges.r` must be finite distances >= 0 Mpc/h (found NaN, inf or < 0)")
        return cls(rec.astype(np.int64, copy=False), snd.astype(np.int64, copy=False),
                   r.astype(np.float64, copy=False))


@dataclass(frozen=True)
class Star:
    """The edges into the halos of ``index`` (``edge``: their positions in the edge arrays; self-loops
    left out), receivers renumbered 0..n-1 in ``index`` order, with the masses (units of 1e13 Msun/h)
    that the formulas read: M_i [n], and M_j, r, M_i per edge [E']."""

    n: int
    edge: np.ndarray
    receiver: np.ndarray
    r: np.ndarray
    M_j: np.ndarray
    M_i_edge: np.ndarray
    M_i: np.ndarray

    def edge_sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.receiver, weights=values, minlength=self.n)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(getattr(self, k)) for k in ("receiver", "r", "M_j", "M_i_edge", "M_i")}


def halo_index(index, n: int) -> np.ndarray:
    """``index`` (ints, a boolean mask [n] or None: all) as unique int64 halo indices."""
    if index is None:
        return np.arange(n)
    index = np.asarray(index).reshape(-1)
    if index.dtype == bool:
        if len(index) != n:
            raise SymdistillError(f"A boolean `index` needs one entry per halo ({n}, got {len(index)})")
        return np.flatnonzero(index)
    if len(index) and (not np.issubdtype(index.dtype, np.integer) or index.min() < 0 or index.max() >= n):
        raise SymdistillError(f"`index` must hold halo numbers from 0 to {n - 1} (got {index[:5]}...)")
    if len(np.unique(index)) != len(index):
        raise SymdistillError("`index` lists a halo twice: pass each halo once (np.unique(index))")
    return index.astype(np.int64)


def star(edges, mass, index) -> Star:
    edges, mass = Edges.of(edges), np.asarray(mass, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(mass)) and np.all(mass > 0)):
        raise SymdistillError("`mass` must be finite and > 0 Msun/h for every halo")
    ends = (edges.receiver, edges.sender)
    if len(edges.r) and (max(a.max() for a in ends) >= len(mass) or min(a.min() for a in ends) < 0):
        raise SymdistillError(f"`edges` name halos outside 0..{len(mass) - 1}: build edges and `mass` "
                              "from the same catalogue")
    index = halo_index(index, len(mass))
    M = mass / MASS_UNIT
    local = np.full(len(mass), -1, dtype=np.int64)
    local[index] = np.arange(len(index))
    rec = local[edges.receiver]
    keep = np.flatnonzero((rec >= 0) & (edges.receiver != edges.sender))  # e_i sums over j != i
    return Star(len(index), keep, rec[keep], edges.r[keep], M[edges.sender[keep]], M[edges.receiver[keep]], M[index])


def targets(delta, index, n: int) -> np.ndarray:
    delta = np.asarray(delta, dtype=np.float64).reshape(-1)
    if len(delta) != n:
        raise SymdistillError(f"`delta` needs one value per halo ({n}, got {len(delta)})")
    y = delta[halo_index(index, n)]
    if not np.all(np.isfinite(y)):
        raise SymdistillError("`delta` is NaN or inf for some halos of `index`: leave those halos out")
    return y
