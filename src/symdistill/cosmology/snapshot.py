"""The target of a real catalogue: delta at each halo centre from the snapshot's particles.

A Quijote FoF catalogue has no density field; its snapshot has the particles. Quijote snapshots are
Gadget HDF5 files ``snapdir_NNN/snap_NNN.K.hdf5`` (header attribute ``BoxSize`` in kpc/h, dark matter
positions ``PartType1/Coordinates`` in kpc/h). They are painted (CIC) file by file and in blocks of
:data:`BLOCK` particles, so memory is the mesh plus one block, then smoothed and calibrated as the
generator's target (:mod:`symdistill.cosmology.density`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from symdistill.cosmology.catalogue import HaloCatalogue
from symdistill.cosmology.density import SmoothedDensity
from symdistill.cosmology.pm import paint
from symdistill.errors import SymdistillError

BLOCK = 4_000_000
KPC = 1e-3  # Mpc per kpc


def snapshot_files(path) -> list[Path]:
    """The HDF5 files of one snapshot: ``path`` itself, or every ``*.hdf5`` of the folder ``path``, by K."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.hdf5"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
    if not files:
        raise SymdistillError(f"{path} holds no snapshot files (*.hdf5): give the snapdir_NNN folder of the catalogue")
    return files


def _positions(files: list[Path]):
    import h5py
    for f in files:
        try:
            with h5py.File(f, "r") as h:
                box = float(h["Header"].attrs["BoxSize"]) * KPC
                data = h["PartType1/Coordinates"]
                for start in range(0, data.shape[0], BLOCK):
                    yield box, np.asarray(data[start:start + BLOCK], dtype=np.float64) * KPC
        except (OSError, KeyError) as e:
            raise SymdistillError(f"{f} is not a Gadget HDF5 snapshot with Header/BoxSize and PartType1/Coordinates "
                                  f"({e.__class__.__name__}): give the snapdir_NNN folder") from None


def snapshot_density(path, n_mesh: int = 256) -> SmoothedDensity:
    """The CIC overdensity of every dark matter particle of the snapshot at ``path`` on an n_mesh^3 grid."""
    grid, total, box = np.zeros((n_mesh,) * 3), 0, None
    for b, pos in _positions(snapshot_files(path)):
        if box is not None and not np.isclose(b, box):
            raise SymdistillError(f"the snapshot files of {path} disagree on BoxSize ({box:g} and {b:g} Mpc/h)")
        box = b
        grid += (paint(np.mod(pos, box), n_mesh, box) + 1.0) * len(pos)
        total += len(pos)
    if not total:
        raise SymdistillError(f"{path} holds no particles")
    return SmoothedDensity(None, box, n_mesh, grid=grid / total - 1.0)


def with_snapshot_delta(cat: HaloCatalogue, snapshot, *, n_mesh: int = 256, smoothing: float | None = None) -> HaloCatalogue:
    """``cat`` with ``delta`` read from its snapshot, smoothed at ``smoothing`` Mpc/h (None: calibrated to
    the paper's median, as the generator's)."""
    density = snapshot_density(snapshot, n_mesh)
    if not np.isclose(density.box, cat.box_size):
        raise SymdistillError(f"the snapshot's box ({density.box:g} Mpc/h) is not the catalogue's ({cat.box_size:g}): "
                              "give the snapshot of this catalogue, or --box-size")
    radius = smoothing if smoothing is not None else density.calibrate(cat.pos)
    out = cat.subset(slice(None))
    out.delta = density.at(cat.pos, radius)
    out.meta = {**cat.meta, "snapshot": str(snapshot), "smoothing_radius": radius, "n_mesh": n_mesh}
    return out
