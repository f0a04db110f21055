"""Dataset files: layout, lazy reads, splits, atomic writes and bad files."""

import os

import h5py
import numpy as np
import pytest

from symdistill.errors import SymdistillError
from symdistill.simulate import SimulationConfig, open_dataset, simulate, simulate_to_file

CFG = SimulationConfig(n_sims=12, n_bodies=3, dim=3, n_steps=30, seed=4)


@pytest.fixture(scope="module")
def charge_file(tmp_path_factory):
    return simulate_to_file(tmp_path_factory.mktemp("d") / "charge.h5", "charge", config=CFG)


def test_file_layout_matches_the_spec(charge_file):
    with h5py.File(charge_file, "r") as f:
        for name in ("pos", "vel", "acc"):
            assert f[name].shape == (12, 30, 3, 3)
        assert f["mass"].shape == f["charge"].shape == (12, 3)
        assert f["t"].shape == (30,)
        for a in ("system", "dim", "n_bodies", "dt", "seed", "version"):
            assert a in f.attrs
        assert f.attrs["system"] == "charge" and f.attrs["dt"] == pytest.approx(1e-3)


def test_file_equals_in_memory_simulation(charge_file):
    mem = simulate("charge", config=CFG)
    with open_dataset(charge_file) as ds:
        for name in ("pos", "vel", "acc"):
            np.testing.assert_array_equal(ds.read(fields=(name,))[name], getattr(mem, name))
        np.testing.assert_array_equal(ds.mass, mem.mass)
        np.testing.assert_array_equal(ds.charge, mem.charge)
        assert ds.law().name == "charge"


def test_read_selects_simulations_in_the_order_asked(charge_file):
    with open_dataset(charge_file) as ds:
        full = ds.read()
        part = ds.read([7, 2, 2, 9], slice(5, 10))
    np.testing.assert_array_equal(part["pos"], full["pos"][[7, 2, 2, 9], 5:10])
    np.testing.assert_array_equal(part["mass"], full["mass"][[7, 2, 2, 9]])


def test_reading_is_lazy(charge_file):
    with open_dataset(charge_file) as ds:
        assert isinstance(ds.pos, h5py.Dataset)  # a handle on disk, not an array in memory
        assert ds.pos[3, 4].shape == (3, 3)


def test_split_is_by_simulation_and_reproducible(charge_file):
    with open_dataset(charge_file) as ds:
        train, val = ds.split(0.25, seed=1)
        train2, val2 = ds.split(0.25, seed=1)
    assert len(val) == 3 and len(train) == 9
    assert not set(train) & set(val) and set(train) | set(val) == set(range(12))
    np.testing.assert_array_equal(val, val2)


def test_potential_string_round_trips_through_the_file(tmp_path):
    path = simulate_to_file(tmp_path / "y.h5", potential="q1*q2*exp(-r)/r",
                            config=SimulationConfig(n_sims=3, n_steps=5, dim=2))
    with open_dataset(path) as ds:
        law = ds.law()
    assert law.energy is not None and "exp" in str(law.energy) and law.uses_charge


def test_failed_simulation_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "out.h5"
    earlier = b"\x89HDF\r\n\x1a\n precious earlier result"  # an HDF5 file: one a new dataset may replace
    path.write_bytes(earlier)
    with pytest.raises(SymdistillError, match="overflowed"):
        simulate_to_file(path, potential="-exp(r^3)", config=SimulationConfig(n_sims=4, n_steps=100, dt=0.05))
    assert path.read_bytes() == earlier
    assert os.listdir(tmp_path) == ["out.h5"]  # no temporary left behind


def _write(path, **datasets):
    attrs = datasets.pop("attrs", {"dim": 2, "n_bodies": 3, "dt": 0.01, "system": "spring"})
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)
        f.attrs.update(attrs)
    return path


GOOD = dict(pos=np.zeros((2, 4, 3, 2)), vel=np.zeros((2, 4, 3, 2)), acc=np.zeros((2, 4, 3, 2)), mass=np.ones((2, 3)))


@pytest.mark.parametrize("change,match", [
    (dict(pos=None), "missing dataset 'pos'"),
    (dict(vel=np.zeros((2, 5, 3, 2))), "'vel' has shape"),
    (dict(mass=np.ones((2, 4))), "'mass' has shape"),
    (dict(mass=-np.ones((2, 3))), "'mass' must be finite and > 0"),
    (dict(pos=np.zeros((2, 4, 3))), "'pos' has shape"),
    (dict(attrs={"dim": 2}), "missing attribute 'n_bodies'"),
])
def test_malformed_files_get_a_clear_error(tmp_path, change, match):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    path = _write(tmp_path / "bad.h5", **data)
    with pytest.raises(SymdistillError, match=match):
        open_dataset(path)


def test_nan_in_data_is_reported_on_read(tmp_path):
    pos = GOOD["pos"].copy()
    pos[1, 2, 0, 0] = np.nan
    path = _write(tmp_path / "nan.h5", **{**GOOD, "pos": pos})
    with open_dataset(path) as ds:
        ds.read([0])  # clean part reads fine
        with pytest.raises(SymdistillError, match="NaN"):
            ds.read([1])


def test_missing_accelerations_error_names_the_fix(tmp_path):
    path = _write(tmp_path / "noacc.h5", **{k: v for k, v in GOOD.items() if k != "acc"})
    with open_dataset(path) as ds:
        assert not ds.has_acc
        with pytest.raises(SymdistillError, match="no accelerations"):
            ds.read()


def test_foreign_and_missing_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SymdistillError, match="not a readable HDF5 file"):
        open_dataset(text)
    with pytest.raises(SymdistillError, match="File not found"):
        open_dataset(tmp_path / "absent.h5")
    foreign = _write(tmp_path / "foreign.h5", images=np.zeros((3, 8, 8)), attrs={})
    with pytest.raises(SymdistillError, match="missing dataset 'pos'"):
        open_dataset(foreign)


def test_written_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    from symdistill.io import write_text
    simulate_to_file(tmp_path / "a.h5", "spring", config=SimulationConfig(n_sims=2, n_steps=2))
    write_text(tmp_path / "b.txt", "x")
    (tmp_path / "c.txt").write_text("x")  # what a plain open() gives under this process's umask
    expected = (tmp_path / "c.txt").stat().st_mode & 0o777
    assert (tmp_path / "a.h5").stat().st_mode & 0o777 == expected
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == expected


@pytest.mark.parametrize("quirks", [np.array([2, 3]), "yes", 0.5])
def test_unreadable_paper_quirks_means_no_ground_truth_not_a_crash(tmp_path, quirks):
    # found by the fuzz tests: an array here made `symdistill info` raise a traceback
    path = simulate_to_file(tmp_path / "d.h5", "spring", config=SimulationConfig(n_sims=2, n_steps=3))
    with h5py.File(path, "a") as f:
        f.attrs["paper_quirks"] = quirks
    with open_dataset(path) as ds:
        assert ds.law() is None and "no ground truth" in ds.summary()
