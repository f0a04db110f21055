"""Positions-only observations: derivative estimates, seeded noise, the noise estimate, files, CLI."""

import importlib

import h5py
import numpy as np
import pytest

from symdistill.cli import main
from symdistill.errors import SymdistillError
from symdistill.simulate import (Estimator, SimulationConfig, derive_file, estimate_derivatives, observe,
                                 open_dataset, simulate, simulate_to_file)
from symdistill.simulate.observe import _operator, add_noise, choose_window, position_scale

observe_module = importlib.import_module("symdistill.simulate.observe")  # the package exports observe()

DT = 0.01
T = np.arange(100) * DT


def _orbit(omega=3.0):
    """Two bodies on circles of different radii and phases, and a third in free fall: [1, T, 3, 2]."""
    pos = np.zeros((1, len(T), 3, 2))
    for body, (radius, phase) in enumerate(((1.0, 0.0), (0.5, 1.0))):
        pos[0, :, body] = radius * np.stack([np.cos(omega * T + phase), np.sin(omega * T + phase)], -1)
    pos[0, :, 2] = np.stack([0.3 + 2.0 * T, 1.0 - 0.5 * 9.81 * T**2], -1)
    acc = -omega**2 * pos.copy()
    acc[0, :, 2] = [0.0, -9.81]
    vel = np.zeros_like(pos)
    vel[0, :, :2] = omega * np.stack([-pos[0, :, :2, 1], pos[0, :, :2, 0]], -1)
    vel[0, :, 2] = np.stack([np.full_like(T, 2.0), -9.81 * T], -1)
    return pos, vel, acc


@pytest.mark.parametrize("options", [dict(method="savgol", window=11), dict(method="savgol"),
                                     dict(method="spline")])
def test_derivatives_of_an_analytic_trajectory_are_accurate(options):
    pos, vel, acc = _orbit()
    smooth, v, a = estimate_derivatives(pos, DT, **options)
    inner = slice(5, -5)  # the ends are worse and are dropped by observe()
    assert smooth.shape == v.shape == a.shape == pos.shape
    # |x| <= 1, |v| <= 3, |a| <= 9.81: within 1e-5, 1e-4 and 3e-3 of them
    np.testing.assert_allclose(smooth[:, inner], pos[:, inner], atol=1e-5)
    np.testing.assert_allclose(v[:, inner], vel[:, inner], atol=3e-4)
    np.testing.assert_allclose(a[:, inner], acc[:, inner], atol=0.03)


def test_savgol_is_exact_on_a_parabola_up_to_the_ends():
    pos, _, acc = _orbit()
    _, _, a = estimate_derivatives(pos[:, :, 2:], DT, window=21)
    np.testing.assert_allclose(a, acc[:, :, 2:], atol=1e-8)


def test_time_is_axis_minus_three_whatever_the_leading_axes():
    pos, _, acc = _orbit()
    _, _, a = estimate_derivatives(pos[0], DT, window=11)  # [T, N, D]: no simulation axis
    np.testing.assert_allclose(a[5:-5], acc[0, 5:-5], atol=0.1)
    stacked = np.concatenate([pos, 2 * pos])  # a second simulation, twice as large
    _, _, a2 = estimate_derivatives(stacked, DT, window=11)
    np.testing.assert_allclose(a2[1], 2 * a2[0], rtol=1e-10, atol=1e-9)


def test_window_chosen_from_the_data_grows_with_the_noise():
    traj = simulate("spring", n_sims=8, n_bodies=4, dim=2, n_steps=100, seed=0)
    scale = position_scale(traj.pos)
    windows = [choose_window(add_noise(traj.pos, noise * scale, seed=1), traj.dt) for noise in (0, 0.01, 0.05)]
    assert windows[0] <= 11 < windows[1] < windows[2]


@pytest.fixture(scope="module")
def spring():
    return simulate("spring", n_sims=24, n_bodies=4, dim=2, n_steps=100, seed=0)


def test_noise_is_deterministic_by_seed_and_of_the_requested_size(spring):
    a, b, c = (observe(spring, 0.02, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.pos_observed, b.pos_observed)
    np.testing.assert_array_equal(a.acc, b.acc)
    assert not np.allclose(a.pos_observed, c.pos_observed)
    kept = slice(a.attrs["estimator_trim"], 100 - a.attrs["estimator_trim"])
    injected = a.pos_observed - spring.pos[:, kept]
    assert np.std(injected) == pytest.approx(0.02 * position_scale(spring.pos), rel=0.03)
    # each simulation draws its own stream: the noise does not depend on how simulations are blocked
    whole = add_noise(spring.pos, 0.1, seed=5)
    np.testing.assert_array_equal(add_noise(spring.pos[[3, 7]], 0.1, seed=5, sims=[3, 7]), whole[[3, 7]])


def test_noise_zero_estimates_derivatives_of_the_exact_positions(spring):
    o = observe(spring, 0.0)
    assert o.attrs["noise"] == 0.0 and o.attrs["observed"] == "positions"
    k = o.attrs["estimator_trim"]
    np.testing.assert_array_equal(o.pos_observed, spring.pos[:, k:100 - k])
    err = np.sqrt(np.mean((o.acc - o.acc_true) ** 2) / np.mean(o.acc_true**2))
    assert err < 0.05 and o.attrs["estimator_window"] <= 11


@pytest.mark.parametrize("noise", [0.01, 0.05])
def test_acc_noise_estimate_matches_the_injected_noise(spring, noise):
    o = observe(spring, noise, seed=2)
    a = o.attrs
    assert a["pos_noise_estimate"] == pytest.approx(noise * a["position_scale"], rel=0.05)
    # the truth: the same filter on the noisy minus on the exact positions is the propagated noise alone
    w, p, k = a["estimator_window"], a["estimator_polyorder"], a["estimator_trim"]
    d2 = _operator(100, w, p, 2, spring.dt)[k:100 - k]
    noise_only = np.einsum("ts,nsbd->ntbd", d2, add_noise(spring.pos, noise * a["position_scale"], seed=2) - spring.pos)
    assert a["acc_noise_estimate"] == pytest.approx(np.sqrt(np.mean(noise_only**2)), rel=0.2)
    assert a["acc_noise_estimate"] < np.sqrt(np.mean((o.acc - o.acc_true) ** 2))  # the bias is not in it


def test_spline_noise_estimate_is_near_its_measured_error():
    traj = simulate("spring", n_sims=2, n_bodies=2, dim=2, n_steps=100, seed=0)
    o = observe(traj, 0.01, seed=1, method="spline")
    measured = np.sqrt(np.mean((o.acc - o.acc_true) ** 2))
    assert o.attrs["estimator"] == "spline" and "estimator_window" not in o.attrs
    assert 0.5 * measured < o.attrs["acc_noise_estimate"] < 2 * measured


@pytest.fixture(scope="module")
def noisy_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("obs")
    simulate_to_file(d / "test.h5", "spring", config=SimulationConfig(n_sims=8, n_steps=60, seed=1), noise=0.01)
    return simulate_to_file(d / "noisy.h5", "spring", config=SimulationConfig(n_sims=40, n_steps=60, seed=3),
                            noise=0.01)


@pytest.mark.parametrize("block_sims", [None, 7])
def test_noisy_file_holds_the_in_memory_observation(noisy_file, block_sims, monkeypatch, tmp_path):
    if block_sims:  # written 7 simulations at a time: the same file
        monkeypatch.setattr(observe_module, "BLOCK_VALUES", 7 * 60 * 4 * 2)
        noisy_file = simulate_to_file(tmp_path / "blocks.h5", "spring", noise=0.01,
                                      config=SimulationConfig(n_sims=40, n_steps=60, seed=3))
    mem = observe(simulate("spring", n_sims=40, n_steps=60, seed=3), 0.01, seed=3)
    with open_dataset(noisy_file) as ds:
        data = ds.read(fields=("pos", "vel", "acc", "pos_observed", "acc_true"))
        assert ds.observed and ds.n_steps == 60 - 2 * mem.attrs["estimator_trim"]
        np.testing.assert_allclose(ds.t, mem.t)
        for name in ("pos", "vel", "acc", "pos_observed", "acc_true"):
            np.testing.assert_allclose(data[name], getattr(mem, name), rtol=1e-12, atol=1e-12)
        for key, value in mem.attrs.items():
            assert ds.attrs[key] == pytest.approx(value) if isinstance(value, float) else ds.attrs[key] == value
        summary = ds.summary()
    assert "observed: positions only, with Gaussian noise 0.01 x position scale" in summary
    assert "savgol(window=" in summary


def test_noisy_file_trains_through_the_cli(noisy_file, tmp_path):
    rc = main(["train", "--data", str(noisy_file), "--test-data", str(noisy_file.parent / "test.h5"),
               "--out", str(tmp_path / "run"), "--epochs", "1", "--hidden", "16", "--layers", "1",
               "--batch-size", "32", "--set", "train.steps_per_epoch=3", "--set", "train.threads=1",
               "--set", "data.eval_graphs=50", "--quiet"])
    assert rc == 0 and (tmp_path / "run" / "config.json").exists()


def test_exact_files_are_unchanged_by_the_noise_option(tmp_path):
    cfg = SimulationConfig(n_sims=3, n_steps=20)
    a = simulate_to_file(tmp_path / "a.h5", "spring", config=cfg)
    b = simulate_to_file(tmp_path / "b.h5", "spring", config=cfg, noise=None, estimator="spline")
    assert a.read_bytes() == b.read_bytes()
    with h5py.File(a) as f:
        assert set(f) == {"pos", "vel", "acc", "mass", "charge", "t"}
        assert set(f.attrs) == {"format", "version", "system", "potential", "dim", "n_bodies", "dt", "seed",
                                "integrator", "substeps", "max_substeps", "tolerance", "damping", "paper_quirks"}


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise=-0.1), r"`noise` must be >= 0"),
    (dict(noise=0.01, steps=6), r"needs >= 9 saved states per simulation \(got 6\): save more --steps"),
    (dict(noise=0.01, estimator="sgolay"), r"Unknown estimator 'sgolay'. Choose one of: savgol, spline"),
    (dict(noise=0.01, estimator=Estimator(window=51), steps=30), r"needs >= 51 saved states .* smaller window"),
])
def test_bad_observation_options_raise_one_line_errors_naming_the_fix(tmp_path, kwargs, match):
    steps = kwargs.pop("steps", 30)
    with pytest.raises(SymdistillError, match=match) as e:
        simulate_to_file(tmp_path / "x.h5", "spring", config=SimulationConfig(n_sims=2, n_steps=steps), **kwargs)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing simulated, nothing left behind


def test_estimator_options_are_checked():
    with pytest.raises(SymdistillError, match="must be odd"):
        Estimator(window=20)
    with pytest.raises(SymdistillError, match="savgol estimator only"):
        Estimator(method="spline", window=11)
    with pytest.raises(SymdistillError, match="Unknown estimator option 'windw'. .* Did you mean 'window'"):
        estimate_derivatives(np.zeros((20, 2, 2)), 0.1, windw=5)


@pytest.fixture()
def positions_only(tmp_path):
    """A user's file: positions, masses and the three attributes; no vel, acc or system."""
    traj = simulate("spring", n_sims=6, n_bodies=3, dim=2, n_steps=80, seed=2)
    path = tmp_path / "mine.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pos", data=traj.pos)
        f.create_dataset("mass", data=traj.mass)
        f.attrs.update({"dim": 2, "n_bodies": 3, "dt": traj.dt})
    return path, traj


def test_positions_only_file_opens_and_training_asks_for_accelerations(positions_only, tmp_path, capsys):
    path, _ = positions_only
    with open_dataset(path) as ds:
        assert not ds.has_vel and not ds.has_acc
        assert "no vel or acc: estimate them from pos with `symdistill derive" in ds.summary()
        with pytest.raises(SymdistillError, match="no velocities .* `symdistill derive --data"):
            ds.read()
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no accelerations ('acc')" in err


def test_derive_estimates_vel_and_acc_of_a_positions_only_file(positions_only, tmp_path, capsys):
    path, traj = positions_only
    out = tmp_path / "derived.h5"
    assert main(["derive", "--data", str(path), "--out", str(out)]) == 0
    assert "observed: positions only, noise unknown" in capsys.readouterr().out
    with open_dataset(out) as ds:
        assert ds.observed and "noise" not in ds.attrs and "acc_true" not in ds._f
        k = ds.attrs["estimator_trim"]
        data = ds.read()
        np.testing.assert_array_equal(ds.read(fields=("pos_observed",))["pos_observed"], traj.pos[:, k:80 - k])
    assert np.sqrt(np.mean((data["acc"] - traj.acc[:, k:80 - k]) ** 2) / np.mean(traj.acc**2)) < 0.05
    assert np.sqrt(np.mean((data["vel"] - traj.vel[:, k:80 - k]) ** 2) / np.mean(traj.vel**2)) < 1e-3


def test_simulate_noise_option_on_the_cli(tmp_path):
    out = tmp_path / "n.h5"
    assert main(["simulate", "--n-sims", "3", "--steps", "40", "--noise", "0.02", "--estimator", "savgol",
                 "--window", "15", "--out", str(out), "--quiet"]) == 0
    with open_dataset(out) as ds:
        assert ds.attrs["noise"] == 0.02 and ds.attrs["estimator_window"] == 15 and ds.n_steps == 40 - 2 * 3
        first = ds.read(fields=("pos_observed", "acc_true"))
    # derived again, from what was observed (not from the smoothed positions), by another estimator
    again = derive_file(out, tmp_path / "again.h5", estimator="spline")
    with open_dataset(again) as ds:
        assert ds.attrs["noise"] == 0.02 and "estimator_window" not in ds.attrs and ds.n_steps == 34 - 2 * 5
        second = ds.read(fields=("pos_observed", "acc_true"))
    for name in ("pos_observed", "acc_true"):
        np.testing.assert_array_equal(second[name], first[name][:, 5:-5])
