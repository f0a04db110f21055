"""Halo catalogue files (HDF5), and one loader for them and for Quijote FoF catalogues.

Layout (``format = "symdistill-halos"``, ``format_version = 1``):

- datasets ``pos`` [N, 3] Mpc/h, ``vel`` [N, 3] km/s (peculiar), ``mass`` [N] Msun/h, ``delta`` [N]
  (the smoothed overdensity at each halo; NaN where unknown), all float64;
- attributes ``box_size`` (Mpc/h), ``redshift``, ``cosmology`` (a JSON object, colossus parameter
  names), ``meta`` (a JSON object: provenance), ``format``, ``format_version``, ``version`` (of
  symdistill), and each scalar cosmology parameter again as ``cosmology.<name>`` (e.g.
  ``cosmology.Om0``) so that h5dump and other tools can see them without parsing JSON.

Reading needs ``pos``, ``vel``, ``mass`` and ``box_size``; a file written by hand (no ``format``)
may leave out ``delta`` (unknown), ``redshift`` (0), ``cosmology`` (the ``cosmology.<name>``
attributes if any, else Quijote's fiducial one) and ``meta`` (empty). When both are present, the JSON
``cosmology`` is the one read. A file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from symdistill import __version__
from symdistill.cosmology.catalogue import QUIJOTE_FIDUCIAL, HaloCatalogue
from symdistill.cosmology.quijote import is_group_tab, read_quijote
from symdistill.errors import SymdistillError, check_positive
from symdistill.io import H5_ERRORS, SpaceGuard, atomic_path, check_output_file, hdf5_writing, is_hdf5

FORMAT = "symdistill-halos"
FORMAT_VERSION = 1
#: What h5py raises on a damaged file (besides a clean OSError on opening).
_COSMO_PREFIX = "cosmology."
_FIX = "write it with symdistill.cosmology.halos.write_halos, or in the layout its docstring gives"


# ---- writing ------------------------------------------------------------------------------------

def write_halos(path, cat: HaloCatalogue) -> Path:
    """Write ``cat`` to the HDF5 file ``path`` (complete or absent: a failure leaves an earlier file intact).

    ``path`` may replace an existing HDF5 file, never anything else (:func:`symdistill.io.check_output_file`)."""
    if not isinstance(cat, HaloCatalogue):
        raise SymdistillError(f"Expected a HaloCatalogue to write (got {type(cat).__name__})")
    path = check_output_file(path, what="the halo catalogue")
    cosmology = _json("cosmology", cat.cosmology)
    meta = _json("meta", cat.meta)  # both before any file is touched
    with atomic_path(path) as tmp:
        SpaceGuard(tmp, 8.0 * 8 * len(cat) + len(cosmology) + len(meta), path).check()
        with hdf5_writing(path), h5py.File(tmp, "w") as f:
            _write_contents(f, cat, cosmology, meta)
    return path


def _write_contents(f: h5py.File, cat: HaloCatalogue, cosmology: str, meta: str) -> None:
    for name in ("pos", "vel", "mass", "delta"):
        f.create_dataset(name, data=np.asarray(getattr(cat, name), dtype=np.float64))
    f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "version": __version__,
                    "box_size": cat.box_size, "redshift": cat.redshift, "cosmology": cosmology, "meta": meta})
    for key, value in cat.cosmology.items():
        if isinstance(value, (bool, int, float, str, np.generic)):
            f.attrs[_COSMO_PREFIX + str(key)] = value


def _json(what: str, obj: dict) -> str:
    def plain(v):
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, Path):
            return str(v)
        raise TypeError(type(v).__name__)
    if not isinstance(obj, dict):
        raise SymdistillError(f"The catalogue's `{what}` must be a dict (got {type(obj).__name__})")
    try:
        return json.dumps(obj, sort_keys=True, default=plain)
    except (TypeError, ValueError) as e:
        raise SymdistillError(f"The catalogue's `{what}` cannot be saved as JSON ({e}): keep it to numbers, "
                              "strings, lists and dicts") from None


# ---- reading ------------------------------------------------------------------------------------

def read_halos(path) -> HaloCatalogue:
    """Read a halo catalogue file (the layout above); a missing, foreign or damaged file is a one-line error."""
    path = Path(path)
    if not path.exists():
        raise SymdistillError(f"File not found: {path} (write one with write_halos, or give a Quijote catalogue)")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise SymdistillError(f"{path} is {kind}: give a halo catalogue file (.h5)")
    if not is_hdf5(path):
        raise SymdistillError(f"{path} is not an HDF5 file: expected a halo catalogue ({FORMAT}); {_FIX}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SymdistillError(f"{path} is not a readable HDF5 file ({e.__class__.__name__}: "
                              f"{str(e).split(';')[0][:80]}; a damaged file?): {_FIX}") from None
    with f:
        try:
            return _read(f, path)
        except SymdistillError:
            raise
        except H5_ERRORS as e:  # h5py on a damaged file
            raise _fail(path, f"it cannot be read ({e.__class__.__name__}: {str(e)[:80]}; a damaged file?)") from None


def _fail(path: Path, what: str) -> SymdistillError:
    return SymdistillError(f"{path} is not a valid halo catalogue: {what} ({_FIX})")


def _read(f: h5py.File, path: Path) -> HaloCatalogue:
    fmt = _text(f.attrs.get("format"))
    if fmt is not None and fmt != FORMAT:
        raise _fail(path, f"its format is {fmt[:40]!r}, not {FORMAT!r}")
    version = f.attrs.get("format_version")
    if fmt is not None and version is not None and _number(version, path, "format_version") > FORMAT_VERSION:
        raise SymdistillError(f"{path} is a halo catalogue of format version {version}, newer than this symdistill "
                              f"reads ({FORMAT_VERSION}): upgrade symdistill")
    pos = _dataset(f, path, "pos")
    n = pos.shape[0] if pos.ndim == 2 else -1
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise _fail(path, f"'pos' has shape {pos.shape}, expected [N, 3]")
    shapes = {"vel": (n, 3), "mass": (n,), "delta": (n,)}
    arrays = {"pos": pos[...]}
    for name, shape in shapes.items():
        d = _dataset(f, path, name, required=name != "delta")
        if d is None:
            continue
        if d.shape != shape:
            raise _fail(path, f"{name!r} has shape {d.shape}, expected {list(shape)} (N = {n} halos in 'pos')")
        arrays[name] = d[...]
    if "box_size" not in f.attrs:
        raise _fail(path, "missing attribute 'box_size' (Mpc/h)")
    box = _number(f.attrs["box_size"], path, "box_size")
    z = _number(f.attrs["redshift"], path, "redshift") if "redshift" in f.attrs else 0.0
    try:
        return HaloCatalogue(arrays["pos"], arrays["vel"], arrays["mass"], box, delta=arrays.get("delta"),
                             redshift=z, cosmology=_cosmology(f, path), meta=_json_attr(f, path, "meta") or {})
    except SymdistillError as e:
        raise _fail(path, str(e).removeprefix("halo catalogue: ")) from None


def _dataset(f: h5py.File, path: Path, name: str, *, required: bool = True):
    try:
        d = f.get(name)
    except (KeyError, OSError, RuntimeError):  # a broken link or a damaged object
        raise _fail(path, f"{name!r} cannot be read (a damaged file?)") from None
    if d is None:
        if required:
            raise _fail(path, f"missing dataset {name!r}")
        return None
    if not isinstance(d, h5py.Dataset) or d.dtype.kind not in "fiu":
        raise _fail(path, f"{name!r} is not a dataset of numbers")
    return d


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def _number(value, path: Path, name: str) -> float:
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "fiu":
        raise _fail(path, f"attribute {name!r} is {str(value)[:40]!r}, expected one number")
    return float(a.item())


def _json_attr(f: h5py.File, path: Path, name: str) -> dict | None:
    text = _text(f.attrs.get(name))
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"attribute {name!r} is not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise _fail(path, f"attribute {name!r} is not a JSON object")
    return value


def _cosmology(f: h5py.File, path: Path) -> dict:
    """The JSON ``cosmology``; else the ``cosmology.<name>`` attributes; else Quijote's fiducial one."""
    cosmo = _json_attr(f, path, "cosmology")
    if cosmo is not None:
        return cosmo
    keys = {k[len(_COSMO_PREFIX):]: f.attrs[k] for k in f.attrs if k.startswith(_COSMO_PREFIX)}
    if not keys:
        return dict(QUIJOTE_FIDUCIAL)
    return {k: (v.item() if isinstance(v, np.generic) else _text(v) if isinstance(v, bytes) else v)
            for k, v in keys.items()}


# ---- either kind ---------------------------------------------------------------------------------

def load_catalogue(path, *, snapnum: int | None = None, box_size: float | None = None) -> HaloCatalogue:
    """A halo catalogue from ``path``, recognised by its content: an HDF5 halo file (:func:`read_halos`),
    or a Quijote FoF catalogue, folder or file (:func:`~symdistill.cosmology.quijote.read_quijote`).

    ``snapnum`` and ``box_size`` are for Quijote catalogues; a ``box_size`` given for an HDF5 file must
    agree with the one it records."""
    check_positive("box_size", box_size, optional=True)
    path = Path(path)
    if not path.exists():
        raise SymdistillError(f"{path} not found: give a halo catalogue (.h5) or a Quijote groups_NNN folder")
    if path.is_file() and is_hdf5(path):
        if snapnum is not None:
            raise SymdistillError(f"{path} is an HDF5 halo file, which holds one snapshot: drop `snapnum` "
                                  "(it chooses a snapshot of a Quijote catalogue)")
        cat = read_halos(path)
        if box_size is not None and not np.isclose(float(box_size), cat.box_size, rtol=1e-9):
            raise SymdistillError(f"{path} records a box of {cat.box_size:g} Mpc/h, not the {box_size:g} given: "
                                  "drop `box_size` (an HDF5 halo file knows its box)")
        return cat
    if path.is_dir() or is_group_tab(path):
        return read_quijote(path, snapnum=snapnum, box_size=box_size)
    raise SymdistillError(f"{path} is neither a halo catalogue (HDF5, {FORMAT}) nor a Quijote FoF file "
                          "(group_tab_NNN.K): give one of them, or the Quijote groups_NNN folder")
