"""Physics and consistency of the simulator."""

import numpy as np
import pytest
import sympy as sp
import torch

from symdistill.errors import SymdistillError
from symdistill.simulate import SYSTEMS, get_law, initial_conditions, simulate
from symdistill.simulate.integrate import Bodies, forces, potential_energy, total_energy
from symdistill.simulate.potentials import EPS, SYM

DIMS = (2, 3)


def _batch(law, n_sims=16, n_bodies=5, dim=2, seed=0):
    pos, vel, mass, charge = initial_conditions(n_sims, n_bodies, dim, seed, law)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    bodies = Bodies(t(mass), t(charge), law.damping_coefficients(n_bodies))
    return t(pos), t(vel), bodies


def _conservative(name):
    return get_law(name, damping=0.0)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("system", SYSTEMS)
def test_force_is_minus_energy_gradient(system, dim):
    law = _conservative(system)
    pos, vel, bodies = _batch(law, dim=dim)
    pos.requires_grad_(True)
    energy = potential_energy(law, pos, bodies).sum()
    (grad,) = torch.autograd.grad(energy, pos)
    f = forces(law, pos.detach(), vel, bodies)
    np.testing.assert_allclose(f.numpy(), -grad.numpy(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("system", SYSTEMS)
def test_sympy_truth_equals_numeric_pair_force(system, dim):
    law = get_law(system)
    rng = np.random.default_rng(1)
    n = 200
    d = rng.standard_normal((n, dim)) * 2
    dist = np.linalg.norm(d, axis=1)
    m1, m2 = np.exp(rng.standard_normal((2, n)))
    q1, q2 = rng.choice([-1.0, 1.0], size=(2, n))
    comps = ("dx", "dy", "dz")[:dim]
    values = {c: d[:, i] for i, c in enumerate(comps)} | dict(r=dist + EPS, m1=m1, m2=m2, q1=q1, q2=q2)
    t = {k: torch.as_tensor(v) for k, v in values.items()}
    mag = law.force_magnitude(t["r"], t["m1"], t["m2"], t["q1"], t["q2"]).numpy()
    numeric = mag[:, None] * d / dist[:, None]
    for i, expr in enumerate(law.force_expr(dim)):
        args = sorted(expr.free_symbols, key=lambda s: s.name)
        f = sp.lambdify(args, expr, "numpy")
        truth = np.broadcast_to(f(*[values[a.name] for a in args]), (n,))
        np.testing.assert_allclose(truth, numeric[:, i], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("system", SYSTEMS)
def test_newtons_third_law_total_force_vanishes(system):
    law = _conservative(system)
    pos, vel, bodies = _batch(law, dim=3)
    f = forces(law, pos, vel, bodies)
    assert f.abs().max() > 0
    np.testing.assert_allclose(f.sum(1).numpy(), 0.0, atol=1e-9 * float(f.abs().max()))


@pytest.mark.parametrize("system", ["spring", "r1", "charge"])
def test_momentum_is_conserved(system):
    tr = simulate(system, n_sims=8, n_bodies=4, dim=2, n_steps=400, seed=3)
    p = (tr.mass[:, None, :, None] * tr.vel).sum(2)  # [S, T, D]
    np.testing.assert_allclose(p - p[:, :1], 0.0, atol=1e-9 * np.abs(p).max())


@pytest.mark.parametrize("system,dim", [("spring", 2), ("spring", 3), ("r1", 2), ("charge", 3)])
def test_energy_drift_is_bounded_on_long_runs(system, dim):
    # The discontinuous law is left out on purpose: its energy jumps by 1 whenever a pair crosses
    # r = 2 (the force is finite there), so no integrator conserves it.
    steps = 3000
    tr = simulate(system, n_sims=16, n_bodies=4, dim=dim, n_steps=steps, seed=5)
    law = tr.law
    pos, vel = torch.as_tensor(tr.pos), torch.as_tensor(tr.vel)
    bodies = Bodies(torch.as_tensor(tr.mass), torch.as_tensor(tr.charge), law.damping_coefficients(4))
    e = np.stack([total_energy(law, pos[:, k], vel[:, k], bodies).numpy() for k in range(0, steps, 50)], 1)
    drift = np.abs(e - e[:, :1]) / (np.abs(e[:, :1]) + 1.0)
    assert np.median(drift.max(1)) < 2e-3
    # bounded, not growing: the typical error late in the run is no worse than 3x the early one
    half = drift.shape[1] // 2
    typical = np.median(drift, 0)
    assert typical[half:].max() <= 3 * typical[:half].max() + 1e-6


def test_adaptive_steps_conserve_energy_better_than_fixed_steps():
    kw = dict(n_sims=32, n_bodies=4, dim=2, n_steps=1500, seed=5)
    worst = {}
    for max_substeps in (1, 64):
        tr = simulate("r1", max_substeps=max_substeps, **kw)
        bodies = Bodies(torch.as_tensor(tr.mass), torch.as_tensor(tr.charge), tr.law.damping_coefficients(4))
        e0, e1 = (total_energy(tr.law, torch.as_tensor(tr.pos[:, k]), torch.as_tensor(tr.vel[:, k]), bodies).numpy()
                  for k in (0, -1))
        worst[max_substeps] = np.quantile(np.abs(e1 - e0) / (np.abs(e0) + 1), 0.9)
    assert worst[64] < 0.2 * worst[1], worst


def test_damping_dissipates_energy():
    tr = simulate("damped", n_sims=8, n_bodies=4, dim=2, n_steps=300, seed=2)
    law = tr.law
    bodies = Bodies(torch.as_tensor(tr.mass), torch.as_tensor(tr.charge), law.damping_coefficients(4))
    e0 = total_energy(law, torch.as_tensor(tr.pos[:, 0]), torch.as_tensor(tr.vel[:, 0]), bodies)
    e1 = total_energy(law, torch.as_tensor(tr.pos[:, -1]), torch.as_tensor(tr.vel[:, -1]), bodies)
    assert (e1 < e0).all()


def test_paper_quirks_damping_is_index_dependent():
    quirky = get_law("damped", paper_quirks=True)
    np.testing.assert_allclose(quirky.damping_coefficients(4).numpy(), [0.75, 0.5, 0.25, 0.0])
    np.testing.assert_allclose(get_law("damped").damping_coefficients(4).numpy(), [0.5] * 4)
    _, _, _, q = initial_conditions(4, 3, 2, 0, get_law("spring", paper_quirks=True))
    assert len(np.unique(q)) > 2  # N(0,1) nuisance column
    _, _, _, q = initial_conditions(4, 3, 2, 0, get_law("spring"))
    assert (q == 0).all()


@pytest.mark.parametrize("system", SYSTEMS)
def test_forces_invariant_to_translation_and_equivariant_to_rotation(system):
    law = get_law(system)
    pos, vel, bodies = _batch(law, dim=3, seed=7)
    f = forces(law, pos, vel, bodies)
    shifted = forces(law, pos + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64), vel, bodies)
    np.testing.assert_allclose(shifted.numpy(), f.numpy(), rtol=1e-8, atol=1e-8)
    q, _ = torch.linalg.qr(torch.as_tensor(np.random.default_rng(0).standard_normal((3, 3))))
    rotated = forces(law, pos @ q.T, vel @ q.T, bodies)
    np.testing.assert_allclose(rotated.numpy(), (f @ q.T).numpy(), rtol=1e-8, atol=1e-8)


def test_discontinuous_force_vanishes_below_threshold():
    law = get_law("discontinuous")
    r = torch.tensor([0.5, 1.5, 1.99, 2.5, 3.0], dtype=torch.float64)
    one = torch.ones_like(r)
    mag = law.force_magnitude(r, one, one, one, one).numpy()
    np.testing.assert_allclose(mag, [0, 0, 0, -3.0, -4.0])


def test_stored_accelerations_are_exact():
    for system in ("spring", "damped"):
        tr = simulate(system, n_sims=4, n_bodies=3, dim=2, n_steps=30, seed=1)
        law = tr.law
        bodies = Bodies(torch.as_tensor(tr.mass), torch.as_tensor(tr.charge), law.damping_coefficients(3))
        k = 17
        f = forces(law, torch.as_tensor(tr.pos[:, k]), torch.as_tensor(tr.vel[:, k]), bodies)
        np.testing.assert_allclose(tr.acc[:, k], (f / bodies.mass[..., None]).numpy(), rtol=1e-12)


@pytest.mark.parametrize("integrator,order", [("verlet", 2), ("rk4", 4)])
def test_integrator_converges_at_its_order(integrator, order):
    kw = dict(n_sims=16, n_steps=21, dt=0.05, seed=4, max_substeps=1)  # fixed steps
    ref = simulate("spring", substeps=128, integrator="rk4", **kw).pos[:, -1]
    errs = [np.abs(simulate("spring", substeps=s, integrator=integrator, **kw).pos[:, -1] - ref).reshape(16, -1).max(1)
            for s in (4, 8)]
    measured = np.median(np.log2(errs[0] / errs[1]))  # per simulation, robust to a near-collision
    assert abs(measured - order) < 0.3, measured


def test_same_seed_same_initial_conditions_whatever_the_law():
    a = initial_conditions(5, 4, 3, 11, get_law("spring"))
    b = initial_conditions(5, 4, 3, 11, get_law("charge"))
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert set(np.unique(b[3])) == {-1.0, 1.0}
    c = initial_conditions(5, 4, 3, 12, get_law("spring"))
    assert not np.array_equal(a[0], c[0])


def test_simulation_is_deterministic_and_independent_of_batch_size():
    a = simulate("r2", n_sims=10, n_steps=40, seed=9)
    b = simulate("r2", n_sims=10, n_steps=40, seed=9, batch_size=3)
    np.testing.assert_array_equal(a.pos, b.pos)
    np.testing.assert_array_equal(a.acc, b.acc)


def test_potential_string_reproduces_builtin_spring():
    a = simulate("spring", n_sims=5, n_steps=50, seed=2)
    b = simulate(potential="(r-1)^2", n_sims=5, n_steps=50, seed=2)
    np.testing.assert_allclose(a.pos, b.pos, rtol=1e-12, atol=1e-12)


def test_user_potentials_from_strings_and_callables():
    yukawa = get_law(potential="q1*q2*exp(-r)/r")
    assert yukawa.uses_charge and yukawa.has_truth
    fx = yukawa.force_expr(2)[0]
    assert sp.simplify(fx - SYM["q1"] * SYM["q2"] * (SYM["r"] + 1) * sp.exp(-SYM["r"]) * SYM["dx"]
                       / (SYM["r"] ** 2 * (SYM["r"] - EPS))) == 0
    symbolic = get_law(lambda r, m1, m2, **_: -m1 * m2 / r)
    assert symbolic.has_truth and sp.simplify(symbolic.energy - get_law("r2").energy) == 0
    opaque = get_law(lambda r, m1, m2, **_: -m1 * m2 * torch.exp(-r) / r)  # torch only: no sympy
    assert not opaque.has_truth
    with pytest.raises(SymdistillError, match="ground truth is unknown"):
        opaque.force_expr(2)
    kw = dict(n_sims=3, n_steps=20, seed=1, max_substeps=1)
    a = simulate(potential="-m1*m2*exp(-r)/r", **kw)
    b = simulate(opaque, **kw)
    np.testing.assert_allclose(a.pos, b.pos, rtol=1e-9)


@pytest.mark.parametrize("bad,match", [
    ("sprng", "Did you mean 'spring'"),
])
def test_unknown_system_suggests_a_name(bad, match):
    with pytest.raises(SymdistillError, match=match):
        get_law(bad)


@pytest.mark.parametrize("text,match", [
    ("(x-1)**2", "Unknown name 'x'"),
    ("__import__('os').system('true')", "Invalid potential"),
    ("r.__class__", "Invalid potential"),
    ("open(r)", "Unknown name 'open'"),
    ("(r-1", "Could not parse"),
    ("m1*m2", "does not depend on r"),
])
def test_bad_potential_strings_are_rejected(text, match):
    with pytest.raises(SymdistillError, match=match):
        get_law(potential=text)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_bodies=1), "n_bodies"),
    (dict(dim=4), "dim"),
    (dict(n_sims=0), "n_sims"),
    (dict(dt=-0.1), "dt"),
    (dict(integrator="euler"), "Unknown integrator"),
    (dict(n_step=3), "Did you mean 'n_steps'"),
])
def test_bad_simulation_options_are_rejected(kwargs, match):
    with pytest.raises(SymdistillError, match=match):
        simulate("spring", **kwargs)


def test_divergence_is_reported():
    with pytest.raises(SymdistillError, match="overflowed"):
        simulate(potential="-exp(r^3)", n_sims=4, n_steps=100, dt=0.05, seed=0)
