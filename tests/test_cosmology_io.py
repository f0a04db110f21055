"""Halo catalogue files: the Quijote FoF reader (against bytes laid out by hand), the HDF5 layout, the loader."""

import struct

import h5py
import numpy as np
import pytest

from symdistill.cosmology import halos as halos_module
from symdistill.cosmology.catalogue import QUIJOTE_FIDUCIAL, HaloCatalogue
from symdistill.cosmology.halos import FORMAT, load_catalogue, read_halos, write_halos
from symdistill.cosmology.quijote import QUIJOTE_BOX_SIZE, read_quijote, write_quijote
from symdistill.errors import SymdistillError


def group_tab_bytes(groups, tot_groups, n_files, tot_ids, trailing=b""):
    """One group_tab file laid out with struct alone: ``groups`` is a list of
    (length, offset, mass_1e10, pos_kpc[3], vel_file[3]) tuples."""
    n = len(groups)
    nids = sum(g[0] for g in groups)
    out = struct.pack("<iiiQI", n, tot_groups, nids, tot_ids, n_files)
    assert len(out) == 24
    out += struct.pack(f"<{n}i", *[g[0] for g in groups])
    out += struct.pack(f"<{n}i", *[g[1] for g in groups])
    out += struct.pack(f"<{n}f", *[g[2] for g in groups])
    out += struct.pack(f"<{3 * n}f", *[x for g in groups for x in g[3]])
    out += struct.pack(f"<{3 * n}f", *[x for g in groups for x in g[4]])
    out += struct.pack(f"<{6 * n}f", *[v for g in groups for v in (0, g[0], 0, 0, 0, 0)])  # GroupTLen
    out += struct.pack(f"<{6 * n}f", *[v for g in groups for v in (0, g[2], 0, 0, 0, 0)])  # GroupTMass
    return out + trailing


GROUPS = [(120, 0, 7.5, (1000.0, 250500.0, 999999.0), (10.0, -20.0, 30.0)),
          (40, 120, 2.25, (0.0, 500000.0, 12345.5), (-1.0, 0.5, 2.0))]


def one_halo_catalogue(n=5, seed=0, box=QUIJOTE_BOX_SIZE):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, box, (n, 3)), rng.normal(0, 300, (n, 3)), 10 ** rng.uniform(12.5, 15, n))


def assert_one_line(excinfo, *parts):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, msg


# ---- Quijote FoF files -------------------------------------------------------------------------------

def test_reader_decodes_hand_laid_bytes_with_units(tmp_path):
    folder = tmp_path / "groups_003"  # snapshot 3: z = 0.5
    folder.mkdir()
    (folder / "group_tab_003.0").write_bytes(group_tab_bytes(GROUPS, 2, 1, 160, trailing=b"\x07" * 37))
    cat = read_quijote(folder)
    assert cat.redshift == 0.5 and cat.box_size == 1000.0 and len(cat) == 2
    np.testing.assert_allclose(cat.mass, [7.5e10, 2.25e10], rtol=1e-7)
    np.testing.assert_allclose(cat.pos, [[1.0, 250.5, 999.999], [0.0, 500.0, 12.3455]], rtol=1e-6)
    np.testing.assert_allclose(cat.vel, 1.5 * np.array([[10.0, -20.0, 30.0], [-1.0, 0.5, 2.0]]), rtol=1e-7)
    assert np.isnan(cat.delta).all()
    assert cat.meta["snapnum"] == 3 and cat.meta["n_files"] == 1 and cat.meta["box_size_assumed"] is True
    assert cat.meta["source"].endswith("groups_003")
    assert cat.cosmology == QUIJOTE_FIDUCIAL


def test_reader_joins_hand_laid_files_in_order_with_an_empty_one(tmp_path):
    folder = tmp_path / "groups_004"
    folder.mkdir()
    third = [(30, 0, 4.0, (5000.0, 6000.0, 7000.0), (3.0, 3.0, 3.0))]
    for k, groups in enumerate([GROUPS, [], third]):
        (folder / f"group_tab_004.{k}").write_bytes(group_tab_bytes(groups, 3, 3, 190))
    cat = read_quijote(folder / "group_tab_004.2")
    assert cat.redshift == 0.0 and cat.meta["n_files"] == 3
    np.testing.assert_allclose(cat.mass, [7.5e10, 2.25e10, 4e10], rtol=1e-7)
    np.testing.assert_allclose(cat.pos[2], [5.0, 6.0, 7.0], rtol=1e-7)
    np.testing.assert_allclose(cat.vel[2], [3.0, 3.0, 3.0])


def test_writer_bytes_match_the_hand_laid_layout(tmp_path):
    pos = np.array([g[3] for g in GROUPS]) / 1000.0
    vel = np.array([g[4] for g in GROUPS]) * 2.0  # z = 1: stored as vel / (1 + z)
    mass = np.array([g[2] for g in GROUPS]) * 1e10
    (path,) = write_quijote(tmp_path, 2, pos, vel, mass, redshift=1.0, lengths=[120, 40])
    assert path == tmp_path / "groups_002" / "group_tab_002.0"
    assert path.read_bytes() == group_tab_bytes(GROUPS, 2, 1, 160)


def test_positions_are_wrapped_into_the_box(tmp_path):
    folder = tmp_path / "groups_004"
    folder.mkdir()
    edge = [(20, 0, 1.0, (1000000.0, -0.5, 5.0), (0, 0, 0))]  # exactly the box edge, and a hair below 0
    (folder / "group_tab_004.0").write_bytes(group_tab_bytes(edge, 1, 1, 20))
    cat = read_quijote(folder / "group_tab_004.0")
    assert ((cat.pos >= 0) & (cat.pos < 1000.0)).all()
    np.testing.assert_allclose(cat.pos[0], [0.0, 1000.0 - 0.0005, 0.005], atol=1e-6)


def test_multi_file_round_trip_with_an_empty_file(tmp_path):
    pos, vel, mass = one_halo_catalogue(5)
    files = write_quijote(tmp_path, 4, pos, vel, mass, n_files=3, counts=[2, 0, 3])
    assert [f.name for f in files] == ["group_tab_004.0", "group_tab_004.1", "group_tab_004.2"]
    by_folder = read_quijote(tmp_path / "groups_004")
    by_file = read_quijote(files[1])  # the empty one: its siblings are read too
    by_parent = read_quijote(tmp_path, snapnum=4)
    for cat in (by_folder, by_file, by_parent):
        assert len(cat) == 5 and cat.redshift == 0.0 and cat.meta["n_files"] == 3
        np.testing.assert_allclose(cat.pos, pos, rtol=1e-6, atol=1e-4)  # float32 kpc/h
        np.testing.assert_allclose(cat.vel, vel, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(cat.mass, mass, rtol=1e-6)


def test_empty_catalogue_reads_as_no_halos(tmp_path):
    write_quijote(tmp_path, 4, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), n_files=2)
    assert len(read_quijote(tmp_path)) == 0


def test_redshift_and_box_size_arguments_override(tmp_path):
    pos, vel, mass = one_halo_catalogue(3, box=100.0)
    write_quijote(tmp_path, 4, pos, vel / 3.0, mass)  # stored for z = 0
    cat = read_quijote(tmp_path, box_size=100.0, redshift=2.0)
    assert cat.box_size == 100.0 and cat.meta["box_size_assumed"] is False
    np.testing.assert_allclose(cat.vel, vel, rtol=1e-6, atol=1e-4)


def test_truncated_file_is_a_one_line_error(tmp_path):
    (path,) = write_quijote(tmp_path, 4, *one_halo_catalogue(4))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(SymdistillError) as e:
        read_quijote(path)
    assert_one_line(e, str(path), "10 bytes short", "re-download")
    path.write_bytes(b"\x01\x00")
    with pytest.raises(SymdistillError) as e:
        read_quijote(path)
    assert_one_line(e, "truncated", "22 bytes short")


def test_missing_file_of_a_set_is_named(tmp_path):
    files = write_quijote(tmp_path, 4, *one_halo_catalogue(6), n_files=3)
    files[1].unlink()
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path / "groups_004")
    assert_one_line(e, "group_tab_004.1 is missing", "3 files")


def test_files_of_different_catalogues_are_refused(tmp_path):
    write_quijote(tmp_path / "a", 4, *one_halo_catalogue(4), n_files=2)
    write_quijote(tmp_path / "b", 4, *one_halo_catalogue(6), n_files=2)
    a1 = tmp_path / "a" / "groups_004" / "group_tab_004.1"
    a1.write_bytes((tmp_path / "b" / "groups_004" / "group_tab_004.1").read_bytes())
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path / "a")
    assert_one_line(e, "TotNgroups", "not of one catalogue")


def test_halo_count_must_match_the_header(tmp_path):
    folder = tmp_path / "groups_004"
    folder.mkdir()
    (folder / "group_tab_004.0").write_bytes(group_tab_bytes(GROUPS, 3, 1, 160))  # says 3, holds 2
    with pytest.raises(SymdistillError) as e:
        read_quijote(folder)
    assert_one_line(e, "hold 2 halos", "TotNgroups 3")


def test_choosing_a_snapshot(tmp_path):
    write_quijote(tmp_path, 4, *one_halo_catalogue(2))
    write_quijote(tmp_path, 7, *one_halo_catalogue(3))
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path)
    assert_one_line(e, "snapshots 4, 7", "snapnum")
    assert len(read_quijote(tmp_path, snapnum=4)) == 2
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path, snapnum=7)  # not a Quijote snapshot number: no known redshift
    assert_one_line(e, "snapshot 7", "give `redshift`")
    assert len(read_quijote(tmp_path, snapnum=7, redshift=0.25)) == 3
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path, snapnum=2)
    assert_one_line(e, "no catalogue of snapshot 2")
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path / "groups_004", snapnum=3)
    assert_one_line(e, "no catalogue of snapshot 3 (it has 4)")
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path / "groups_004" / "group_tab_004.0", snapnum=3)
    assert_one_line(e, "snapshot 4, not 3")


def test_positions_outside_the_box_ask_for_the_box_size(tmp_path):
    write_quijote(tmp_path, 4, *one_halo_catalogue(5, box=1000.0))
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path, box_size=250.0)
    assert_one_line(e, "outside the 250 Mpc/h box", "box_size")


def test_folder_without_a_catalogue(tmp_path):
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path)
    assert_one_line(e, "holds no Quijote FoF catalogue")
    with pytest.raises(SymdistillError) as e:
        read_quijote(tmp_path / "nowhere")
    assert_one_line(e, "not found")


# ---- HDF5 halo files ---------------------------------------------------------------------------------

def sample_catalogue(n=7, seed=1):
    pos, vel, mass = one_halo_catalogue(n, seed, box=250.0)
    delta = np.random.default_rng(seed).normal(0.4, 0.5, n)
    return HaloCatalogue(pos, vel, mass, 250.0, delta=delta, redshift=0.5,
                         cosmology=dict(QUIJOTE_FIDUCIAL, Om0=0.3),
                         meta={"source": "generator", "seed": 3, "settings": {"n_particles": 64, "b": 0.2}})


def test_hdf5_round_trip_is_exact(tmp_path):
    cat = sample_catalogue()
    path = write_halos(tmp_path / "halos.h5", cat)
    back = read_halos(path)
    for name in ("pos", "vel", "mass", "delta"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cat, name))
    assert (back.box_size, back.redshift, back.cosmology, back.meta) == (250.0, 0.5, cat.cosmology, cat.meta)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == 1
        assert f.attrs["cosmology.Om0"] == 0.3 and f.attrs["cosmology.flat"]
        assert f["pos"].dtype == np.float64 and f["pos"].shape == (7, 3)


def test_quijote_to_hdf5_keeps_the_provenance(tmp_path):
    write_quijote(tmp_path, 4, *one_halo_catalogue(3))
    cat = read_quijote(tmp_path)
    back = read_halos(write_halos(tmp_path / "q.h5", cat))
    assert back.meta == cat.meta and np.isnan(back.delta).all() and not back.has_delta


def test_hand_written_hdf5_gets_the_documented_defaults(tmp_path):
    path = tmp_path / "mine.h5"
    with h5py.File(path, "w") as f:
        f["pos"], f["vel"], f["mass"] = np.ones((2, 3)), np.zeros((2, 3)), np.array([1e13, 2e13])
        f.attrs["box_size"] = 100
        f.attrs["cosmology.Om0"] = 0.31
    cat = read_halos(path)
    assert cat.redshift == 0.0 and cat.meta == {} and cat.cosmology == {"Om0": 0.31}
    assert np.isnan(cat.delta).all()


def bad_file(path, drop=None, **changes):
    """A halo file written by write_halos, then damaged: ``drop`` a dataset or attribute, or replace some."""
    write_halos(path, sample_catalogue())
    with h5py.File(path, "a") as f:
        if drop is not None and drop in f:
            del f[drop]
        elif drop is not None:
            del f.attrs[drop]
        for name, value in changes.items():
            if name in f:
                del f[name]
                f[name] = value
            else:
                f.attrs[name] = value
    return path


@pytest.mark.parametrize("damage, expected", [
    (dict(drop="vel"), "missing dataset 'vel'"),
    (dict(drop="pos"), "missing dataset 'pos'"),
    (dict(drop="box_size"), "missing attribute 'box_size'"),
    (dict(mass=np.ones(6)), "'mass' has shape (6,), expected [7]"),
    (dict(pos=np.ones((7, 2))), "'pos' has shape (7, 2), expected [N, 3]"),
    (dict(format="symdistill.nbody/1"), "its format is 'symdistill.nbody/1'"),
    (dict(box_size=-5.0), "`box_size` must be a positive number"),
    (dict(meta="{not json"), "attribute 'meta' is not valid JSON"),
    (dict(mass=np.array(["a"] * 7, dtype="S1")), "'mass' is not a dataset of numbers"),
])
def test_invalid_hdf5_is_a_one_line_error(tmp_path, damage, expected):
    path = bad_file(tmp_path / "bad.h5", **damage)
    with pytest.raises(SymdistillError) as e:
        read_halos(path)
    assert_one_line(e, str(path), expected, "write_halos")


def test_newer_format_version_asks_for_an_upgrade(tmp_path):
    path = bad_file(tmp_path / "new.h5", format_version=2)
    with pytest.raises(SymdistillError) as e:
        read_halos(path)
    assert_one_line(e, "format version 2", "upgrade symdistill")


def test_missing_text_and_corrupt_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    for path, expected in ((tmp_path / "none.h5", "File not found"), (text, "not an HDF5 file"),
                           (corrupt, "not a readable HDF5 file"), (tmp_path, "is a folder")):
        with pytest.raises(SymdistillError) as e:
            read_halos(path)
        assert_one_line(e, expected)


class Boom(Exception):
    pass


def test_failed_write_leaves_the_earlier_file_intact(tmp_path, monkeypatch):
    path = write_halos(tmp_path / "halos.h5", sample_catalogue(seed=1))
    before = path.read_bytes()
    real = halos_module._write_contents

    def half_then_fail(f, *args):
        real(f, *args)
        f.flush()
        raise Boom("disk pulled out mid-write")

    monkeypatch.setattr(halos_module, "_write_contents", half_then_fail)
    with pytest.raises(Boom):
        write_halos(path, sample_catalogue(n=20, seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["halos.h5"]  # no temporary file left behind
    monkeypatch.undo()
    assert len(read_halos(path)) == 7


def test_write_refuses_to_replace_a_file_that_is_not_hdf5(tmp_path):
    precious = tmp_path / "precious.h5"
    precious.write_text("not mine to overwrite")
    with pytest.raises(SymdistillError) as e:
        write_halos(precious, sample_catalogue())
    assert_one_line(e, "will not be replaced")
    assert precious.read_text() == "not mine to overwrite"


def test_meta_that_is_not_json_is_refused_before_writing(tmp_path):
    cat = sample_catalogue()
    cat.meta = {"callback": print}
    with pytest.raises(SymdistillError) as e:
        write_halos(tmp_path / "x.h5", cat)
    assert_one_line(e, "`meta` cannot be saved as JSON")
    assert not any(tmp_path.iterdir())


# ---- the loader ----------------------------------------------------------------------------------------

def test_load_catalogue_recognises_each_kind_by_content(tmp_path):
    h5 = write_halos(tmp_path / "halos.dat", sample_catalogue())  # an HDF5 file, whatever its name
    (q,) = write_quijote(tmp_path / "sim", 4, *one_halo_catalogue(3))
    renamed = tmp_path / "fof.bin"  # a lone FoF file under another name
    renamed.write_bytes(q.read_bytes())
    assert len(load_catalogue(h5)) == 7
    assert len(load_catalogue(tmp_path / "sim")) == 3
    assert len(load_catalogue(q)) == 3
    assert len(load_catalogue(renamed, snapnum=4)) == 3
    assert load_catalogue(h5, box_size=250.0).box_size == 250.0


def test_load_catalogue_errors(tmp_path):
    h5 = write_halos(tmp_path / "halos.h5", sample_catalogue())
    other = tmp_path / "other.txt"
    other.write_text("x" * 10)
    cases = ((dict(path=other), "neither a halo catalogue"), (dict(path=tmp_path / "nope"), "not found"),
             (dict(path=h5, snapnum=4), "drop `snapnum`"), (dict(path=h5, box_size=1000.0), "drop `box_size`"))
    for kwargs, expected in cases:
        with pytest.raises(SymdistillError) as e:
            load_catalogue(**kwargs)
        assert_one_line(e, expected)


def test_delta_from_a_gadget_snapshot_in_several_files(tmp_path):
    import h5py
    from symdistill.cosmology.density import TARGET_MEDIAN, SmoothedDensity
    from symdistill.cosmology.snapshot import with_snapshot_delta
    rng = np.random.default_rng(0)
    box = 100.0
    centres = rng.uniform(0, box, (40, 3))
    particles = np.concatenate([rng.uniform(0, box, (60_000, 3)),
                                np.mod(np.repeat(centres, 500, axis=0) + rng.normal(0, 2, (20_000, 3)), box)])
    folder = tmp_path / "snapdir_004"
    folder.mkdir()
    for k, part in enumerate(np.array_split(particles, 3)):
        with h5py.File(folder / f"snap_004.{k}.hdf5", "w") as h:
            h.create_group("Header").attrs["BoxSize"] = box * 1000.0  # kpc/h
            h.create_dataset("PartType1/Coordinates", data=(part * 1000.0).astype(np.float32))
    cat = HaloCatalogue(centres, np.zeros((40, 3)), np.full(40, 1e13), box)
    out = with_snapshot_delta(cat, folder, n_mesh=32)
    assert abs(np.median(out.delta) - TARGET_MEDIAN) < 0.02 and out.meta["snapshot"] == str(folder)
    direct = SmoothedDensity(particles.astype(np.float32).astype(np.float64), box, 32).at(centres, out.meta["smoothing_radius"])
    np.testing.assert_allclose(out.delta, direct, rtol=1e-4, atol=1e-6)
    with pytest.raises(SymdistillError, match="not the catalogue's"):
        with_snapshot_delta(HaloCatalogue(centres, np.zeros((40, 3)), np.full(40, 1e13), 200.0), folder, n_mesh=32)
    with pytest.raises(SymdistillError, match="no snapshot files"):
        with_snapshot_delta(cat, tmp_path, n_mesh=32)
