"""Rollouts of learned and symbolic dynamics against the true trajectory (symdistill.distill.rollout)."""

import json

import numpy as np
import pytest
import torch

from symdistill.distill.rollout import (
    LawDynamics, NetworkDynamics, compare_rollouts, initial_states, plot_rollouts, rollout,
)
from symdistill.errors import SymdistillError
from symdistill.graphs.batch import GraphBatch
from symdistill.models.network import GraphNetwork, ModelConfig
from symdistill.simulate import SimulationConfig, get_law, initial_conditions, simulate, simulate_to_file
from symdistill.simulate.integrate import Bodies, potential_energy


def _start(system, n_sims=6, n_bodies=4, dim=2, seed=3):
    law = get_law(system)
    return law, initial_conditions(n_sims, n_bodies, dim, seed, law)


class Scaled:
    """The law's accelerations times ``factor``: conservative, with its own energy K + factor U."""

    def __init__(self, law, factor):
        self.truth, self.law, self.factor = LawDynamics(law), law, factor

    def accelerations(self, pos, vel, mass, charge):
        return self.factor * self.truth.accelerations(pos, vel, mass, charge)

    def energy(self, pos, vel, mass, charge):
        kinetic = 0.5 * (mass[..., None] * vel * vel).sum((1, 2))
        bodies = Bodies(mass, charge, torch.zeros(pos.shape[1], dtype=pos.dtype))
        return kinetic + self.factor * potential_energy(self.law, pos, bodies)


class Unstable:
    """The truth, except for simulations marked by charge[:, 0] == 7: pushed outwards, and inf beyond |x| > 20."""

    def __init__(self, law):
        self.truth = LawDynamics(law)

    def accelerations(self, pos, vel, mass, charge):
        acc = self.truth.accelerations(pos, vel, mass, charge)
        marked = (charge[:, 0] == 7)[:, None, None]
        acc = torch.where(marked, acc + 400.0 * pos, acc)
        far = (pos.abs() > 20).flatten(1).any(1)[:, None, None]
        return torch.where(marked & far, torch.inf, acc)


@pytest.mark.parametrize("system, options", [
    ("spring", {}), ("damped", {}), ("r2", {}), ("charge", {"integrator": "rk4"}),
    ("r1", {"substeps": 3, "max_substeps": 1}),
])
def test_law_rollout_equals_simulate_bit_for_bit(system, options):
    config = SimulationConfig(n_sims=6, n_bodies=4, dim=2, n_steps=40, seed=3, **options)
    traj = simulate(system, config=config)
    law, (pos, vel, mass, charge) = _start(system)
    out = rollout(LawDynamics(law), pos, vel, mass, charge, dt=traj.dt, n_steps=40, substeps=config.substeps,
                  max_substeps=config.max_substeps, tolerance=config.tolerance, integrator=config.integrator)
    assert np.array_equal(out["pos"], traj.pos) and np.array_equal(out["vel"], traj.vel)
    assert (out["blow_up_step"] == -1).all()


def test_rollout_from_a_dataset_file_reproduces_the_file(tmp_path):
    path = simulate_to_file(tmp_path / "test.h5", "damped", config=SimulationConfig(n_sims=7, n_steps=30, seed=11))
    s = initial_states(path, 4, seed=1)
    assert s.pos0.shape == (4, 4, 2) and len(set(s.sims)) == 4 and s.law.name == "damped"
    assert s.config.dt == get_law("damped").dt and s.config.max_substeps == 64 and s.config.integrator == "verlet"
    out = rollout(LawDynamics(s.law), *s.states(), **s.options())
    traj = simulate("damped", n_sims=7, n_steps=30, seed=11)
    assert np.array_equal(out["pos"], traj.pos[s.sims])
    assert initial_states(path, 50).pos0.shape[0] == 7  # all of them when the file holds fewer


def test_wrong_accelerations_have_growing_position_error():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=8)
    res = compare_rollouts({"x1.1": Scaled(law, 1.1), "x1.001": Scaled(law, 1.001)}, law, pos, vel, mass, charge,
                           dt=law.dt, n_steps=200)
    assert all(e == 0 for e in res["models"]["truth"]["position_error"])
    err = np.array(res["models"]["x1.1"]["position_error"])
    assert err[0] == 0 and 0 < err[5] < err[20] < err[-1]
    assert res["models"]["x1.001"]["final_position_error"] < 0.1 * res["models"]["x1.1"]["final_position_error"]


def test_a_symbolic_law_is_a_model():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=4)
    models = {"same": get_law(potential="(r - 1)**2", dt=law.dt), "near miss": get_law(potential="1.02*(r - 1)**2")}
    res = compare_rollouts(models, law, pos, vel, mass, charge, dt=law.dt, n_steps=100)
    assert res["models"]["same"]["final_position_error"] < 1e-9
    assert res["models"]["near miss"]["final_position_error"] > 1e-3
    assert res["models"]["near miss"]["own_energy_drift"] is not None


def test_own_and_true_energy_drifts_are_measured_separately():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=8)
    res = compare_rollouts({"x1.1": Scaled(law, 1.1)}, law, pos, vel, mass, charge, dt=law.dt, n_steps=300)
    m = res["models"]["x1.1"]
    assert m["max_own_energy_drift"] < 1e-3  # it conserves its own energy K + 1.1 U...
    assert m["max_true_energy_drift"] > 1e-2  # ...not the true one


def test_verlet_conserves_the_true_energy_on_spring():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=8)
    res = compare_rollouts({}, law, pos, vel, mass, charge, dt=law.dt, n_steps=500, max_substeps=1)
    truth = res["models"]["truth"]
    assert truth["max_own_energy_drift"] < 1e-3 and truth["own_energy_drift"] == truth["true_energy_drift"]
    assert len(res["steps"]) == 101 and res["steps"][0] == 0 and res["steps"][-1] == 499


def test_damped_truth_loses_energy():
    law, (pos, vel, mass, charge) = _start("damped", n_sims=8)
    res = compare_rollouts({}, law, pos, vel, mass, charge, dt=law.dt, n_steps=200)
    assert res["models"]["truth"]["true_energy_drift"][-1] > 0.1


def _tiny_network():
    traj = simulate("spring", n_sims=8, n_steps=3, seed=5)
    model = GraphNetwork(ModelConfig(hidden=16, layers=2), dim=2)
    model.fit_scales(GraphBatch.from_arrays(traj.pos[:, 0], traj.vel[:, 0], traj.mass, traj.charge, traj.acc[:, 0]))
    return model


def test_untrained_network_rolls_out_finite_or_recorded_nan():
    model = _tiny_network()
    law, (pos, vel, mass, charge) = _start("spring", n_sims=5)
    dynamics = NetworkDynamics(model)
    assert dynamics.energy is None
    out = rollout(dynamics, pos, vel, mass, charge, dt=law.dt, n_steps=20)
    assert out["pos"].shape == (5, 20, 4, 2) and out["pos"].dtype == np.float64
    for b, step in enumerate(out["blow_up_step"]):
        stop = 20 if step < 0 else step
        assert np.isfinite(out["pos"][b, :stop]).all() and np.isnan(out["pos"][b, stop:]).all()
    res = compare_rollouts({"gn": dynamics}, law, pos, vel, mass, charge, dt=law.dt, n_steps=10)
    assert res["models"]["gn"]["own_energy_drift"] is None and res["models"]["gn"]["max_own_energy_drift"] is None


class WithEnergy(torch.nn.Module):
    """A network that also has a total energy per graph (as a Hamiltonian network will)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def predict(self, batch):
        return self.model.predict(batch)

    def total_energy(self, batch):
        kinetic = 0.5 * batch["mass"] * (batch["vel"] ** 2).sum(1)
        return torch.zeros(batch.n_graphs).index_add_(0, batch.graph, kinetic)


def test_network_energy_comes_from_its_total_energy():
    dynamics = NetworkDynamics(WithEnergy(_tiny_network()))
    law, (pos, vel, mass, charge) = _start("spring", n_sims=3)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    e = dynamics.energy(t(pos), t(vel), t(mass), t(charge))
    assert e.shape == (3,) and e.dtype == torch.float64
    assert np.allclose(e.numpy(), 0.5 * (mass[..., None] * vel ** 2).sum((1, 2)), rtol=1e-5)
    res = compare_rollouts({"h": dynamics}, law, pos, vel, mass, charge, dt=law.dt, n_steps=10)
    assert res["models"]["h"]["own_energy_drift"] is not None


def test_blow_up_is_recorded_and_other_simulations_go_on():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=5)
    charge = charge.copy()
    charge[1, 0] = 7
    options = dict(dt=law.dt, n_steps=80)
    out = rollout(Unstable(law), pos, vel, mass, charge, **options)
    truth = rollout(LawDynamics(law), pos, vel, mass, charge, **options)
    step = out["blow_up_step"][1]
    assert 0 < step < 80 and (np.delete(out["blow_up_step"], 1) == -1).all()
    assert np.isfinite(out["pos"][1, :step]).all() and np.isnan(out["pos"][1, step:]).all()
    others = [0, 2, 3, 4]
    assert np.array_equal(out["pos"][others], truth["pos"][others])
    res = compare_rollouts({"unstable": Unstable(law)}, law, pos, vel, mass, charge, **options)
    m = res["models"]["unstable"]
    assert m["blow_ups"] == 1 and m["blow_up_steps"] == [int(step)]


class Huge:
    """Accelerations of +-1e300: finite states whose pair differences overflow."""

    def accelerations(self, pos, vel, mass, charge):
        sign = (-1.0) ** torch.arange(pos.shape[1], dtype=pos.dtype)[None, :, None]
        return (sign * 1e300).expand_as(pos).clone()


def test_overflowing_states_are_a_blow_up_not_a_stalled_step():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=3)
    out = rollout(Huge(), pos, vel, mass, charge, dt=law.dt, n_steps=20)
    assert (out["blow_up_step"] == 1).all() and np.isnan(out["pos"][:, 1:]).all()


def test_all_blown_up_gives_null_curves_not_a_crash():
    law, (pos, vel, mass, charge) = _start("spring", n_sims=3)
    res = compare_rollouts({"inf": Unstable(law)}, law, pos, vel, mass, np.full_like(charge, 7.0), dt=law.dt,
                           n_steps=80)
    m = res["models"]["inf"]
    assert m["blow_ups"] == 3 and m["final_position_error"] is None and m["position_error"][-1] is None
    json.dumps(res, allow_nan=False)


def test_comparison_is_json_safe_and_plots(tmp_path):
    law, (pos, vel, mass, charge) = _start("r2", n_sims=4)
    charge = charge.copy()
    charge[0, 0] = 7
    res = compare_rollouts({"x1.1": Scaled(law, 1.1), "unstable": Unstable(law)}, law, pos, vel, mass, charge,
                           dt=law.dt, n_steps=150, max_points=40)
    text = json.dumps(res, allow_nan=False)
    assert json.loads(text)["models"].keys() == {"truth", "x1.1", "unstable"}
    assert len(res["steps"]) <= 40
    assert all(len(m["position_error"]) == len(res["steps"]) for m in res["models"].values())
    path = plot_rollouts(res, tmp_path / "figs" / "rollouts.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("call, match", [
    (lambda law, s: rollout(LawDynamics(law), *s, dt=0.01, n_steps=0), "n_steps"),
    (lambda law, s: rollout(LawDynamics(law), *s, dt=-1, n_steps=5), "dt"),
    (lambda law, s: rollout(LawDynamics(law), s[0][:, :, :1], *s[1:], dt=0.01, n_steps=5), "vel0"),
    (lambda law, s: rollout(LawDynamics(law), *s, dt=0.01, n_steps=5, damping=[1.0, 2.0]), "damping"),
    (lambda law, s: compare_rollouts({"truth": LawDynamics(law)}, law, *s, dt=0.01), "reserved"),
    (lambda law, s: compare_rollouts({}, None, *s, dt=0.01), "true law"),
    (lambda law, s: NetworkDynamics(object()), "predict"),
])
def test_bad_arguments_are_one_line_errors(call, match):
    law, states = _start("spring", n_sims=2)
    with pytest.raises(SymdistillError, match=match):
        call(law, states)
