"""Quijote friends-of-friends halo catalogues (Gadget FoF ``group_tab`` files).

A snapshot's catalogue is the folder ``groups_NNN`` (NNN the snapshot number, three digits) holding
``group_tab_NNN.0`` ... ``group_tab_NNN.<Nfiles-1>``. Each file is little endian:

- a 24-byte header: int32 ``Ngroups`` (halos in this file), int32 ``TotNgroups`` (in all files),
  int32 ``Nids``, uint64 ``TotNids``, uint32 ``Nfiles``;
- then the fields one block after another, each block ``Ngroups`` rows: int32 ``GroupLen``, int32
  ``GroupOffset``, float32 ``GroupMass`` (1e10 Msun/h), float32[3] ``GroupPos`` (kpc/h), float32[3]
  ``GroupVel`` (x (1 + z) = peculiar velocity in km/s), float32[6] ``GroupTLen``, float32[6]
  ``GroupTMass`` (84 bytes a halo in all);
- bytes after these blocks (other fields of some FoF versions) are ignored.

What the files do not say, and is assumed unless given: the box size (Quijote's 1000 Mpc/h), the
redshift (from the snapshot number, Quijote's :data:`QUIJOTE_REDSHIFTS`) and the cosmology
(Quijote's fiducial one; other Quijote cosmologies need ``cosmology=``).

:func:`write_quijote` writes the same layout byte by byte: for tests and for interoperability with
tools that read Quijote catalogues, not as a storage format (use :mod:`symdistill.cosmology.halos`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from symdistill.cosmology.catalogue import QUIJOTE_FIDUCIAL, HaloCatalogue
from symdistill.errors import SymdistillError, check_positive
from symdistill.io import atomic_path

#: Quijote's box (Mpc/h); the FoF header does not record it.
QUIJOTE_BOX_SIZE = 1000.0
#: Quijote's snapshot numbers and their redshifts.
QUIJOTE_REDSHIFTS = {4: 0.0, 3: 0.5, 2: 1.0, 1: 2.0, 0: 3.0}
#: Mass of one particle of a fiducial Quijote run (Msun/h): rho_crit x Om0 x (1000 Mpc/h)^3 / 512^3,
#: rho_crit = 2.775e11 h^2 Msun/Mpc^3. Only :func:`write_quijote` uses it, for a plausible GroupLen.
QUIJOTE_PARTICLE_MASS = 2.77536627e11 * QUIJOTE_FIDUCIAL["Om0"] * 1000.0**3 / 512**3
MASS_UNIT = 1e10  # Msun/h per GroupMass unit
LENGTH_UNIT = 1e-3  # Mpc/h per GroupPos unit (kpc/h)

HEADER = np.dtype([("Ngroups", "<i4"), ("TotNgroups", "<i4"), ("Nids", "<i4"), ("TotNids", "<u8"),
                   ("Nfiles", "<u4")])  # packed: 24 bytes
FIELDS = (("GroupLen", "<i4", 1), ("GroupOffset", "<i4", 1), ("GroupMass", "<f4", 1), ("GroupPos", "<f4", 3),
          ("GroupVel", "<f4", 3), ("GroupTLen", "<f4", 6), ("GroupTMass", "<f4", 6))
ROW_BYTES = sum(np.dtype(t).itemsize * k for _, t, k in FIELDS)  # 84
_FILE = re.compile(r"^group_tab_(\d+)(?:\.(\d+))?$")
_FOLDER = re.compile(r"^groups_(\d+)$")
_FIX = "re-download it from the Quijote archive"


def read_group_tab(path) -> tuple[dict, dict]:
    """The header (a dict of ints) and the fields (arrays of ``Ngroups`` rows, file units) of one file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(HEADER.itemsize)
            if len(raw) < HEADER.itemsize:
                raise SymdistillError(f"{path} is truncated: {size} bytes, {HEADER.itemsize - size} bytes short of "
                                      f"the {HEADER.itemsize}-byte FoF header ({_FIX})")
            header = {k: int(v) for k, v in zip(HEADER.names, np.frombuffer(raw, HEADER)[0].tolist())}
            n = header["Ngroups"]
            if n < 0 or header["TotNgroups"] < n or header["Nfiles"] < 1:
                raise SymdistillError(f"{path} is not a Quijote FoF file: its header says Ngroups {n}, TotNgroups "
                                      f"{header['TotNgroups']}, Nfiles {header['Nfiles']} ({_FIX})")
            need = HEADER.itemsize + n * ROW_BYTES
            if size < need:
                raise SymdistillError(f"{path} is truncated: {size} bytes, {need - size} bytes short of the header "
                                      f"and the {n} halos it announces ({_FIX})")
            body = f.read(need - HEADER.itemsize)
    except OSError as e:
        raise SymdistillError(f"Cannot read {path}: {(e.strerror or str(e)).lower()} (check the path and its "
                              "permissions)") from None
    fields, at = {}, 0
    for name, dtype, k in FIELDS:
        nbytes = n * k * np.dtype(dtype).itemsize
        a = np.frombuffer(body, dtype, count=n * k, offset=at)
        fields[name] = a.reshape(n, k) if k > 1 else a
        at += nbytes
    return header, fields


# ---- finding the files of one snapshot ------------------------------------------------------------

def _snapshots(folder: Path) -> dict[int, Path]:
    """Snapshot number -> the folder holding its group_tab files, for the files in ``folder`` itself
    or else its ``groups_NNN`` subfolders."""
    direct = {int(m[1]) for p in folder.iterdir() if (m := _FILE.match(p.name)) and p.is_file()}
    if direct:
        return {s: folder for s in direct}
    return {int(m[1]): p for p in folder.iterdir() if (m := _FOLDER.match(p.name)) and p.is_dir()}


def _first_file(folder: Path, snapnum: int) -> Path:
    for name in (f"group_tab_{snapnum:03d}.0", f"group_tab_{snapnum:03d}"):
        if (folder / name).is_file():
            return folder / name
    raise SymdistillError(f"{folder / f'group_tab_{snapnum:03d}.0'} is missing (the first file of the catalogue "
                          f"of snapshot {snapnum:03d}): {_FIX}")


def quijote_files(path, snapnum: int | None = None) -> tuple[list[Path], int | None]:
    """The files of one snapshot's catalogue, in order, and its snapshot number (None if unknown).

    ``path``: a ``groups_NNN`` folder, one ``group_tab_NNN.K`` file (its siblings are found), or a
    folder of ``groups_NNN`` folders (``snapnum`` chooses one; it may be left out if there is one)."""
    path = Path(path)
    if not path.exists():
        raise SymdistillError(f"{path} not found: give a Quijote groups_NNN folder or a group_tab_NNN.K file")
    if path.is_file():
        probe, folder = path, path.parent
        m = _FILE.match(path.name)
        found = int(m[1]) if m else None
    else:
        try:
            snaps = _snapshots(path)
        except OSError as e:
            raise SymdistillError(f"Cannot list {path}: {(e.strerror or str(e)).lower()} "
                                  "(check its permissions)") from None
        if not snaps:
            raise SymdistillError(f"{path} holds no Quijote FoF catalogue: expected groups_NNN folders or "
                                  "group_tab_NNN.K files (give the folder of the simulation or of one snapshot)")
        listed = ", ".join(str(s) for s in sorted(snaps))
        if snapnum is None and len(snaps) > 1:
            raise SymdistillError(f"{path} holds the catalogues of snapshots {listed}: choose one with `snapnum`")
        found = snapnum if snapnum is not None else next(iter(snaps))
        if found not in snaps:
            raise SymdistillError(f"{path} holds no catalogue of snapshot {found} (it has {listed}): "
                                  "choose one of them")
        folder = snaps[found]
        probe = _first_file(folder, found)
    if snapnum is not None and found is not None and snapnum != found:
        raise SymdistillError(f"{path} is the catalogue of snapshot {found}, not {snapnum}: drop `snapnum` or "
                              "give the matching folder")
    header, _ = read_group_tab(probe)
    n_files = header["Nfiles"]
    if n_files == 1 and (found is None or _FILE.match(probe.name)[2] is None):  # a lone file, no ".K"
        return [probe], found if found is not None else snapnum
    if found is None:
        raise SymdistillError(f"{probe} is one of {n_files} files but is not named group_tab_NNN.K, so its "
                              "siblings cannot be found: restore the original file names")
    files = []
    for k in range(n_files):  # checked one by one: a damaged header can announce billions of files
        f = folder / f"group_tab_{found:03d}.{k}"
        if not f.is_file():
            raise SymdistillError(f"{f} is missing: the catalogue of snapshot {found:03d} has {n_files} files "
                                  f"(group_tab_{found:03d}.0 to .{n_files - 1}); {_FIX}")
        files.append(f)
    return files, found


def is_group_tab(path) -> bool:
    """True if ``path`` is a file whose first bytes read as a plausible FoF header (by content, not name)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(HEADER.itemsize)
    except OSError:
        return False
    if len(raw) < HEADER.itemsize:
        return False
    h = np.frombuffer(raw, HEADER)[0]
    n, total, nids, n_files = int(h["Ngroups"]), int(h["TotNgroups"]), int(h["Nids"]), int(h["Nfiles"])
    return 0 <= n <= total and nids >= 0 and n_files >= 1 and size >= HEADER.itemsize + n * ROW_BYTES


# ---- reading ----------------------------------------------------------------------------------------

def read_quijote(path, *, snapnum: int | None = None, box_size: float | None = None,
                 redshift: float | None = None, cosmology: dict | None = None) -> HaloCatalogue:
    """Read one snapshot's Quijote FoF catalogue (all its files) into a :class:`HaloCatalogue`.

    ``path`` as in :func:`quijote_files`. ``box_size`` (Mpc/h) defaults to Quijote's 1000 (not in the
    files); ``redshift`` to Quijote's for the snapshot number; ``cosmology`` to the fiducial one.
    Output units: masses Msun/h, positions Mpc/h wrapped into the box, velocities km/s; ``delta``
    unknown (NaN). The files must agree with each other (TotNgroups, Nfiles, and the halos they hold).
    """
    check_positive("box_size", box_size, optional=True)
    files, snap = quijote_files(path, snapnum)
    z = _redshift(snap, redshift, files[0])
    box = QUIJOTE_BOX_SIZE if box_size is None else float(box_size)
    headers, parts = [], []
    for f in files:
        h, fields = read_group_tab(f)
        headers.append(h)
        parts.append(fields)
    _check_consistent(files, headers)
    pos = np.concatenate([p["GroupPos"] for p in parts]).astype(np.float64) * LENGTH_UNIT
    vel = np.concatenate([p["GroupVel"] for p in parts]).astype(np.float64) * (1.0 + z)
    mass = np.concatenate([p["GroupMass"] for p in parts]).astype(np.float64) * MASS_UNIT
    _check_in_box(pos, box, files[0].parent, box_size is None)
    if len(mass) and not (np.isfinite(mass).all() and (mass > 0).all()):
        raise SymdistillError(f"{files[0].parent}: some GroupMass values are not finite numbers > 0 (a damaged "
                              f"catalogue? {_FIX})")
    meta = {"source": str(Path(path).resolve()), "source_format": "quijote-fof", "snapnum": snap,
            "n_files": len(files), "box_size_assumed": box_size is None}
    return HaloCatalogue(pos, vel, mass, box, redshift=z, meta=meta,
                         cosmology=dict(QUIJOTE_FIDUCIAL if cosmology is None else cosmology))


def _redshift(snap: int | None, redshift: float | None, where: Path) -> float:
    if redshift is not None:
        return _check_redshift(redshift)
    if snap in QUIJOTE_REDSHIFTS:
        return QUIJOTE_REDSHIFTS[snap]
    known = ", ".join(f"{s} (z = {z:g})" for s, z in sorted(QUIJOTE_REDSHIFTS.items()))
    what = f"snapshot {snap}" if snap is not None else "an unknown snapshot"
    raise SymdistillError(f"{where} is {what}, not one of Quijote's {known}: give `redshift`")


def _check_redshift(z) -> float:
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not -1 < z < float("inf"):
        raise SymdistillError(f"`redshift` must be a finite number > -1 (got {z!r})")
    return float(z)


def _check_consistent(files: list[Path], headers: list[dict]) -> None:
    first = headers[0]
    for f, h in zip(files, headers):
        for key in ("TotNgroups", "Nfiles", "TotNids"):
            if h[key] != first[key]:
                raise SymdistillError(f"{f} says {key} {h[key]} but {files[0].name} says {first[key]}: the files "
                                      f"are not of one catalogue ({_FIX})")
    total = sum(h["Ngroups"] for h in headers)
    if total != first["TotNgroups"]:
        raise SymdistillError(f"{files[0].parent}: the {len(files)} files hold {total} halos but their header says "
                              f"TotNgroups {first['TotNgroups']} (a file was replaced or damaged; {_FIX})")


def _check_in_box(pos: np.ndarray, box: float, where: Path, assumed: bool) -> None:
    """Positions far outside [0, box) mean the box size is wrong: wrapping them would scramble the halos."""
    if not len(pos):
        return
    lo, hi = float(pos.min()), float(pos.max())
    slack = 1e-3 * box
    if lo < -slack or hi > box + slack:
        given = "Quijote's default box_size" if assumed else "box_size"
        raise SymdistillError(f"{where}: halo positions span {lo:g} to {hi:g} Mpc/h, outside the {box:g} Mpc/h "
                              f"box ({given}): give the simulation's `box_size`")


# ---- writing (tests, interoperability) --------------------------------------------------------------

def write_quijote(folder, snapnum: int, pos_mpc, vel_kms, mass_msun, *, n_files: int = 1, redshift: float = 0.0,
                  lengths=None, counts=None) -> list[Path]:
    """Write halos as a Quijote FoF catalogue ``folder/groups_NNN/group_tab_NNN.K``; returns the files.

    For tests and interoperability only. Units in: Mpc/h, km/s, Msun/h (stored as kpc/h, km/s / (1+z),
    1e10 Msun/h in float32). ``lengths``: GroupLen per halo (default: mass / :data:`QUIJOTE_PARTICLE_MASS`,
    at least 1), also stored as dark-matter (type 1) GroupTLen; ``counts``: halos per file (default:
    as even as possible; files may be empty). Each file is written atomically.
    """
    pos, vel, mass = (np.asarray(a, dtype=np.float64) for a in (pos_mpc, vel_kms, mass_msun))
    n = len(mass)
    if pos.shape != (n, 3) or vel.shape != (n, 3) or mass.shape != (n,):
        raise SymdistillError(f"Expected pos_mpc [N, 3], vel_kms [N, 3], mass_msun [N] (got {pos.shape}, {vel.shape}, "
                              f"{mass.shape})")
    if isinstance(n_files, bool) or not isinstance(n_files, int) or n_files < 1:
        raise SymdistillError(f"`n_files` must be an integer >= 1 (got {n_files!r})")
    if isinstance(snapnum, bool) or not isinstance(snapnum, int) or not 0 <= snapnum <= 999:
        raise SymdistillError(f"`snapnum` must be an integer from 0 to 999 (got {snapnum!r})")
    redshift = _check_redshift(redshift)
    lengths = (np.maximum(1, np.rint(mass / QUIJOTE_PARTICLE_MASS)) if lengths is None
               else np.asarray(lengths)).astype("<i4")
    if lengths.shape != (n,):
        raise SymdistillError(f"`lengths` must have one entry per halo ({n}; got shape {lengths.shape})")
    counts = [len(c) for c in np.array_split(np.arange(n), n_files)] if counts is None else list(counts)
    if len(counts) != n_files or sum(counts) != n or min(counts) < 0:
        raise SymdistillError(f"`counts` must be {n_files} numbers >= 0 summing to {n} (got {counts})")
    out = Path(folder) / f"groups_{snapnum:03d}"
    bounds = np.cumsum([0] + counts)
    paths = []
    for k in range(n_files):
        s = slice(bounds[k], bounds[k + 1])
        blob = _file_bytes(pos[s], vel[s] / (1.0 + redshift), mass[s], lengths[s], n, int(lengths.sum()), n_files)
        path = out / f"group_tab_{snapnum:03d}.{k}"
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(blob)
        paths.append(path)
    return paths


def _file_bytes(pos, vel, mass, lengths, tot_groups: int, tot_ids: int, n_files: int) -> bytes:
    """One file's bytes: the header, then the field blocks (file units)."""
    n = len(mass)
    header = np.array([(n, tot_groups, int(lengths.sum()), tot_ids, n_files)], dtype=HEADER)
    tlen = np.zeros((n, 6), "<f4")
    tmass = np.zeros((n, 6), "<f4")
    tlen[:, 1] = lengths
    tmass[:, 1] = mass / MASS_UNIT
    offset = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if n else np.zeros(0)
    blocks = (lengths, offset, mass / MASS_UNIT, pos / LENGTH_UNIT, vel, tlen, tmass)
    return header.tobytes() + b"".join(np.ascontiguousarray(b, dtype=t).tobytes()
                                       for b, (_, t, _k) in zip(blocks, FIELDS))
