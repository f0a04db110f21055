"""Friends-of-friends halos: particles closer than b times the mean interparticle spacing are
friends, a halo is a connected group of friends with at least ``min_members`` particles.

scipy does the work: ``cKDTree(boxsize=...)`` finds the pairs (periodic), and
``csgraph.connected_components`` the groups. Halo positions are the centres of mass taken in the
minimum image around the group's first particle (correct across the box boundary), velocities the mean
particle velocity, masses the number of members times the particle mass.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from symdistill.errors import SymdistillError

#: Mean matter density per unit Omega_m: rho_crit = 2.775e11 (Msun/h) / (Mpc/h)^3.
RHO_CRIT = 2.77536627e11


def particle_mass(box: float, n_particles: int, omega_m: float) -> float:
    """Msun/h of each of ``n_particles`` equal particles holding the box's mean matter density."""
    return RHO_CRIT * omega_m * box ** 3 / n_particles


def friends_of_friends(pos: np.ndarray, box: float, *, linking_length: float = 0.2, min_members: int = 20,
                       chunk: int = 2_000_000) -> tuple[np.ndarray, np.ndarray]:
    """(group label of every particle, -1 outside halos, halos ordered by decreasing size; members per
    halo). ``linking_length`` in units of the mean interparticle spacing."""
    if not 0 < linking_length < 1:
        raise SymdistillError(f"`linking_length` must be in (0, 1) mean interparticle spacings (got {linking_length})")
    n = len(pos)
    ll = linking_length * box / n ** (1 / 3)
    tree = cKDTree(np.mod(pos, box), boxsize=box)
    pairs = tree.query_pairs(ll, output_type="ndarray")
    del tree
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    del pairs
    _, labels = connected_components(graph, directed=False)
    del graph
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes >= min_members)
    order = big[np.argsort(-sizes[big], kind="stable")]
    remap = np.full(len(sizes), -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[labels], sizes[order]


def group_properties(pos: np.ndarray, vel: np.ndarray, labels: np.ndarray, box: float):
    """(centre of mass [H, 3] in [0, box), mean velocity [H, 3]) of each group of ``labels`` >= 0."""
    member = labels >= 0
    lab = labels[member]
    p, v = pos[member], vel[member]
    h = int(lab.max()) + 1 if len(lab) else 0
    if h == 0:
        return np.zeros((0, 3)), np.zeros((0, 3))
    counts = np.bincount(lab, minlength=h).astype(np.float64)
    first = np.full(h, -1, dtype=np.int64)
    idx = np.arange(len(lab))
    first[lab[::-1]] = idx[::-1]  # the first member of each group
    ref = p[first]
    centre = np.empty((h, 3))
    mean_v = np.empty((h, 3))
    for d in range(3):
        off = p[:, d] - ref[lab, d]
        off -= box * np.round(off / box)  # minimum image around the reference particle
        centre[:, d] = ref[:, d] + np.bincount(lab, weights=off, minlength=h) / counts
        mean_v[:, d] = np.bincount(lab, weights=v[:, d], minlength=h) / counts
    return np.mod(centre, box), mean_v
