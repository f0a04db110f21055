"""The Hamiltonian graph network (FlatHGN): its dynamics are Hamilton's equations of its energy, the
pair energy is symmetric, a hand-built Hamiltonian gives the true accelerations, training and resume
work as for the message models, and `run --model hamiltonian` goes end to end."""

import json

import numpy as np
import pytest
import sympy as sp
import torch

from symdistill.cli import main
from symdistill.distill.hamiltonian import KINETIC, SymbolicHamiltonian
from symdistill.errors import SymdistillError
from symdistill.graphs.batch import GraphBatch
from symdistill.models import HamiltonianNetwork, ModelConfig, build_model
from symdistill.pipeline import PipelineConfig, run_pipeline
from symdistill.problems import NBodyEnergy, get_problem
from symdistill.simulate import SimulationConfig, get_law, initial_conditions, simulate_to_file
from symdistill.simulate.integrate import Bodies, accelerations
from symdistill.train import RunConfig, load_graphs, load_run, train
from symdistill.train.commands import with_model_defaults
from symdistill.train.energy_metrics import energy_r2, record_energies

CONFIG = ModelConfig(variant="hamiltonian", activation="softplus", hidden=16, layers=2)


def _states(n_sims=6, n=4, dim=2, seed=0, law="charge"):
    pos, vel, mass, charge = initial_conditions(n_sims, n, dim, seed, get_law(law))
    return pos, vel, mass, charge


def _network(dim=2, seed=0):
    torch.manual_seed(seed)
    model = HamiltonianNetwork(CONFIG, dim).double()
    pos, vel, mass, charge = _states(dim=dim)
    acc = accelerations(get_law("charge"), *(torch.as_tensor(a) for a in (pos, vel)),
                        Bodies(torch.as_tensor(mass), torch.as_tensor(charge), torch.zeros(4, dtype=torch.float64)))
    model.fit_scales(GraphBatch.from_arrays(pos, vel, mass, charge, acc.numpy(), dtype=torch.float64))
    with torch.no_grad():  # untrained weights are near-linear: make H visibly curved
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


@pytest.mark.parametrize("dim", [2, 3])
def test_autograd_dynamics_equal_finite_differences_of_the_energy(dim):
    model = _network(dim)
    pos, vel, mass, charge = _states(dim=dim)
    batch = lambda p, v: GraphBatch.from_arrays(p, v, mass, charge, dtype=torch.float64)  # noqa: E731
    acc = model.predict(batch(pos, vel)).numpy().reshape(pos.shape)
    dq = model.velocities(batch(pos, vel)).numpy().reshape(pos.shape)
    h = 1e-5
    for (s, i, k) in [(0, 0, 0), (1, 2, 1), (3, 3, dim - 1), (5, 1, 0)]:
        e = np.zeros_like(pos)
        e[s, i, k] = h
        H = lambda p, v: model.total_energy(batch(p, v)).numpy()[s]  # noqa: E731
        dH_dq = (H(pos + e, vel) - H(pos - e, vel)) / (2 * h)
        dH_dp = (H(pos, vel + e / mass[..., None]) - H(pos, vel - e / mass[..., None])) / (2 * h)
        assert acc[s, i, k] == pytest.approx(-dH_dq / mass[s, i], rel=1e-6, abs=1e-9)
        assert dq[s, i, k] == pytest.approx(dH_dp, rel=1e-6, abs=1e-9)


def test_pair_energy_is_symmetric_and_the_energy_is_permutation_invariant():
    model = _network()
    pos, vel, mass, charge = _states()
    b = GraphBatch.from_arrays(pos, vel, mass, charge, dtype=torch.float64)
    u, _ = model.energies(b)
    send, recv = b.edge_index
    pairs = {(int(s), int(r)): float(x) for s, r, x in zip(send, recv, u)}
    assert all(pairs[(r, s)] == pytest.approx(x, rel=1e-12) for (s, r), x in pairs.items())
    one_way = model.pair_energy(NBodyEnergy(2).edge_features(b))  # f(i, j) alone is not symmetric
    assert not torch.allclose(one_way, model.pair_energy(NBodyEnergy(2).edge_features(b)[:, [0, 2, 1, 4, 3]]))
    perm = np.array([2, 0, 3, 1])
    shuffled = GraphBatch.from_arrays(pos[:, perm], vel[:, perm], mass[:, perm], charge[:, perm], dtype=torch.float64)
    assert torch.allclose(model.total_energy(b), model.total_energy(shuffled), rtol=1e-12)
    assert torch.allclose(model.predict(b).reshape(6, 4, 2)[:, perm], model.predict(shuffled).reshape(6, 4, 2))


@pytest.mark.parametrize("system,dim", [("spring", 2), ("r2", 3), ("charge", 2), ("r1", 3)])
def test_a_hand_built_hamiltonian_gives_the_true_accelerations(system, dim):
    law = get_law(system)
    pos, vel, mass, charge = (torch.as_tensor(a) for a in _states(dim=dim, law=system))
    h = SymbolicHamiltonian(law.energy, KINETIC)
    a, v = h.derivatives(pos, vel, mass, charge)
    truth = accelerations(law, pos, vel, Bodies(mass, charge, torch.zeros(4, dtype=torch.float64)))
    assert torch.allclose(a, truth, rtol=1e-10, atol=1e-12)
    assert torch.allclose(v, vel, rtol=1e-12)  # dH/dp = p/m = v
    # and a shifted, scaled-by-one, offset potential is the same dynamics: terms without r exert nothing
    shifted = SymbolicHamiltonian(law.energy + 3 + sp.Symbol("m1") * sp.Symbol("m2"), KINETIC + sp.Symbol("m"))
    assert torch.allclose(shifted.accelerations(pos, vel, mass, charge), truth, rtol=1e-10, atol=1e-12)


def test_the_model_refuses_a_non_smooth_activation_and_bf16():
    with pytest.raises(SymdistillError, match="smooth activation.*model.activation=softplus"):
        build_model(ModelConfig(variant="hamiltonian"), 2)
    assert isinstance(build_model(CONFIG, 2), HamiltonianNetwork)
    cfg = with_model_defaults(RunConfig().replace(**{"model.variant": "hamiltonian"}), {})
    assert cfg.model.activation == "softplus"
    kept = with_model_defaults(RunConfig().replace(**{"model.variant": "hamiltonian", "model.activation": "tanh"}),
                               {"model.activation": "tanh"})
    assert kept.model.activation == "tanh"
    assert get_problem("nbody-energy", dim=3).target.width == 3


@pytest.fixture(scope="module")
def spring_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hdata")
    simulate_to_file(d / "train.h5", "spring", config=SimulationConfig(n_sims=40, n_steps=20, seed=0))
    simulate_to_file(d / "test.h5", "spring", config=SimulationConfig(n_sims=10, n_steps=20, seed=1))
    simulate_to_file(d / "damped.h5", "damped", config=SimulationConfig(n_sims=5, n_steps=5, seed=0))
    return d


def _config(path, **over) -> RunConfig:
    base = {"data.path": str(path), "data.eval_graphs": 100, "model.variant": "hamiltonian",
            "model.activation": "softplus", "model.hidden": 16, "model.layers": 2, "train.batch_size": 64,
            "train.epochs": 3, "train.steps_per_epoch": 5, "train.threads": 1, "train.lr": 3e-3}
    return RunConfig().replace(**{**base, **over})


def test_training_lowers_the_loss_and_resumes_exactly(spring_files, tmp_path):
    cfg = _config(spring_files / "train.h5")
    whole = train(cfg, tmp_path / "whole", progress=False, log=lambda s: None)
    part = train(cfg, tmp_path / "part", progress=False, max_epochs=1, log=lambda s: None)
    assert not (part / "model.pt").exists()
    train(None, part, resume=True, progress=False, log=lambda s: None)
    a, b = load_run(whole), load_run(part)
    assert isinstance(a.model, HamiltonianNetwork)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    losses = [float(r["train_loss"]) for r in a.history]
    assert losses[-1] < losses[0] and all(np.isfinite(float(r["force_r2"][0])) for r in a.history)
    rec = record_energies(a.model, load_graphs(spring_files / "test.h5"), law=get_law("spring"))
    r2_pair, r2_kinetic = energy_r2(rec)
    assert -1 < r2_pair <= 1 and -1 < r2_kinetic <= 1 and rec.pair_energy.shape == rec.pair_truth.shape


def test_damped_data_and_bf16_are_refused_with_one_line_errors(spring_files, tmp_path, capsys):
    with pytest.raises(SymdistillError, match="no Hamiltonian.*--model l1"):
        train(_config(spring_files / "damped.h5"), tmp_path / "d", progress=False, log=lambda s: None)
    assert not (tmp_path / "d").exists()
    with pytest.raises(SymdistillError, match="bfloat16.*fp32"):
        train(_config(spring_files / "train.h5", **{"train.precision": "bf16"}), tmp_path / "b", progress=False,
              log=lambda s: None)
    with pytest.raises(SymdistillError, match="smooth activation"):
        train(_config(spring_files / "train.h5", **{"model.activation": "relu"}), tmp_path / "a", progress=False,
              log=lambda s: None)
    assert not (tmp_path / "b").exists() and not (tmp_path / "a").exists()  # refused before any folder
    with pytest.raises(SymdistillError, match="no Hamiltonian"):
        PipelineConfig(system="damped", model="hamiltonian")
    assert main(["run", "--system", "damped", "--model", "hamiltonian", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Hamiltonian" in err[0]


def test_train_cli_takes_model_hamiltonian(spring_files, tmp_path, capsys):
    assert main(["train", "--data", str(spring_files / "train.h5"), "--model", "hamiltonian", "--hidden", "16",
                 "--layers", "2", "--epochs", "1", "--batch-size", "64", "--threads", "1", "--out",
                 str(tmp_path / "cli"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert saved["config"]["model"]["variant"] == "hamiltonian" and saved["config"]["model"]["activation"] == "softplus"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(tmp_path / "cli"), "--data", str(spring_files / "test.h5"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "hamiltonian" and out["force_r2"] is None and set(out["energy_r2"]) == {"pair", "kinetic"}
    assert out["test_mae"] > 0


def test_run_model_hamiltonian_end_to_end(tmp_path):
    config = PipelineConfig(system="spring", model="hamiltonian", n_sims=60, test_sims=10, n_steps=30,
                            train_steps=60, sr_evaluations=4000)
    result = run_pipeline(tmp_path / "run", config, progress=False, log=lambda *a, **k: None)
    assert result["found_by"] == "network" and result["library"] is None  # no library fit for an energy
    assert result["formula"].startswith("U = ") and "T = " in result["formula"]
    assert result["truth"] == "U = (r - 1)^2;  T = p^2/(2*m)" and isinstance(result["recovered"], bool)
    run = tmp_path / "run" / "train"
    d = json.loads((run / "distill.json").read_text())
    assert d["model"] == "hamiltonian" and d["verification"]["checks"] and set(d["energy_r2"]) == {"pair", "kinetic"}
    models = d["rollout"]["models"]
    assert set(models) == {"truth", "hamiltonian network", "symbolic H"} and d["rollout"]["n_steps"] == 500
    assert models["symbolic H"]["own_energy_drift"] is not None
    for f in ("report.html", "rollout.png", "energies.npz", "figures/energies.png", "equations.md"):
        assert (run / f).exists(), f
    again = run_pipeline(tmp_path / "run", config, progress=False, log=lambda *a, **k: None)
    assert again["formula"] == result["formula"]  # a finished run is a record: shown, not redone


def test_terms_without_r_or_p_are_dropped_from_the_printed_energies():
    from symdistill.distill.energy import without_free_terms
    from symdistill.expr import symbols
    s = symbols(["r", "m1", "m2", "q1", "p", "m"])
    r, m1, m2, p, m = s["r"], s["m1"], s["m2"], s["p"], s["m"]
    assert without_free_terms(m1 * m2 * sp.log(r / 2), "r") == m1 * m2 * sp.log(r)
    assert without_free_terms((r - 1) ** 2 - sp.Float(0.3) + m1, "r") == (r - 1) ** 2  # not expanded
    assert without_free_terms(m1 * m2 * (sp.Float(0.3) - 1 / r), "r") == -m1 * m2 / r
    assert without_free_terms(p**2 / (2 * m) + m, "p") == p**2 / (2 * m)
    assert without_free_terms(sp.Integer(3) + m1, "r") == 3 + m1  # nothing with r: left for the verdict to judge
