"""Physics checks of the offline halo generator: the initial power spectrum, linear growth under the PM
integrator, conservation of mass and momentum, friends-of-friends across the periodic boundary, the
halo mass function against colossus, the calibrated target, determinism."""

import numpy as np
import pytest

from symdistill.cosmology import generate as gen
from symdistill.cosmology.density import TARGET_MEDIAN
from symdistill.cosmology.fof import friends_of_friends, group_properties, particle_mass
from symdistill.cosmology.ics import growth, linear_field_k, linear_power, lpt_initial_conditions, power_spectrum
from symdistill.cosmology.pm import PMStepper, forces, paint
from symdistill.errors import SymdistillError

import scipy.fft as sfft


@pytest.fixture(scope="module")
def tiny():
    return gen.generate(gen.GeneratorConfig.of_size("tiny"), progress=False)


def _ratio_in_bins(k, pk, counts, kmax, scale=1.0):
    keep = (k < kmax) & (counts >= 50)
    ratio = pk[keep] / (scale * linear_power(k[keep]))
    sigma = np.sqrt(2.0 / counts[keep])  # cosmic variance of a Gaussian field
    return ratio, sigma


def test_initial_power_spectrum_matches_linear():
    n, box = 64, 250.0
    field = sfft.irfftn(linear_field_k(n, box, seed=3), s=(n, n, n))
    k, pk, counts = power_spectrum(field, box)
    ratio, sigma = _ratio_in_bins(k, pk, counts, kmax=np.pi * n / box)
    assert len(ratio) >= 8
    assert np.all(np.abs(ratio - 1) < 5 * sigma + 0.02), ratio
    # the mean over all modes is unbiased to well under a percent
    assert abs(np.average(ratio, weights=1 / sigma ** 2) - 1) < 0.03


def test_lpt_particles_carry_the_linear_spectrum_grown_to_the_start():
    n, box, a = 64, 250.0, 0.1
    pos, _, _ = lpt_initial_conditions(n, box, a, seed=5, order=2)
    k, pk, counts = power_spectrum(paint(pos, 2 * n, box), box, deconvolve_cic=True)
    d1 = growth(a)[0]
    ratio, sigma = _ratio_in_bins(k, pk, counts, kmax=0.25, scale=d1 ** 2)
    assert len(ratio) >= 5
    assert np.all(np.abs(ratio - 1) < 5 * sigma + 0.05), ratio


def test_pm_grows_linear_modes_as_the_growth_factor():
    n, box, a0 = 32, 400.0, 0.1
    pos, mom, _ = lpt_initial_conditions(n, box, a0, seed=1, order=1)
    k0, p0, c0 = power_spectrum(paint(pos, 2 * n, box), box, deconvolve_cic=True)
    PMStepper(box, 2 * n, a0, 0.5, n_steps=20).run(pos, mom)
    k1, p1, _ = power_spectrum(paint(pos, 2 * n, box), box, deconvolve_cic=True)
    keep = (k0 < 0.05) & (c0 >= 20)
    expected = (growth(0.5)[0] / growth(a0)[0]) ** 2
    measured = np.sum(p1[keep] * c0[keep]) / np.sum(p0[keep] * c0[keep])
    assert abs(measured / expected - 1) < 0.08, (measured, expected)


def test_pm_conserves_mass_and_momentum():
    rng = np.random.default_rng(0)
    box, n_mesh = 100.0, 32
    pos = rng.uniform(0, box, (3000, 3))
    pos[:1000] = np.mod(30 + rng.normal(0, 3, (1000, 3)), box)  # a clump, so forces are large
    delta = paint(pos, n_mesh, box)
    assert abs(delta.mean()) < 1e-12  # every particle's mass lands on the grid
    f = forces(pos, n_mesh, box, a=0.5, omega_m=0.3)
    assert np.abs(f.sum(axis=0)).max() < 1e-10 * np.abs(f).sum()
    mom = rng.normal(0, 0.1, pos.shape)
    p_before = mom.sum(axis=0).copy()
    stepper = PMStepper(box, n_mesh, 0.5, 0.6, n_steps=2)
    stepper.run(pos, mom)
    assert np.abs(mom.sum(axis=0) - p_before).max() < 1e-10 * np.abs(mom).sum()


def test_free_particles_drift_exactly():
    n, box = 8, 80.0
    q = (np.indices((n, n, n)).reshape(3, -1).T + 0.5) * (box / n)  # a perfect lattice: no force
    stepper = PMStepper(box, 2 * n, 0.2, 0.4, n_steps=3)
    assert np.abs(stepper.force(q, 0.2)).max() < 1e-10
    mom = np.full_like(q, 0.3)
    pos = q.copy()
    stepper.run(pos, mom)
    drift = sum(stepper.drift_factor(stepper.a[i], stepper.a[i + 1]) for i in range(3))
    expected = np.mod(q + 0.3 * drift, box)
    diff = (pos - expected + box / 2) % box - box / 2
    assert np.abs(diff).max() < 1e-9


def test_fof_links_a_group_across_the_boundary():
    box = 10.0
    rng = np.random.default_rng(1)
    # a chain of 30 particles 0.034 apart through the face x = 0, in a background kept 1 away from it
    background = rng.uniform(0, box, (970, 3))
    background = background[np.min(np.abs((background + box / 2) % box - box / 2), axis=1) > 1.0]
    chain = np.stack([np.linspace(-0.5, 0.5, 30) % box, np.full(30, 5.0), np.full(30, 5.0)], axis=1)
    pos = np.concatenate([chain, background])
    labels, members = friends_of_friends(pos, box, linking_length=0.2, min_members=20)  # ~0.2 absolute
    assert labels[0] >= 0 and np.all(labels[:30] == labels[0])
    centre, _ = group_properties(pos, np.zeros_like(pos), labels, box)
    c = centre[labels[0]]
    assert min(c[0], box - c[0]) < 1e-9 and np.allclose(c[1:], 5.0)
    with pytest.raises(SymdistillError, match="linking_length"):
        friends_of_friends(pos, box, linking_length=1.5)


def test_halo_mass_function_within_a_factor_of_colossus(tiny):
    from colossus.lss import mass_function
    m_p = particle_mass(tiny.box_size, 64 ** 3, tiny.cosmology["Om0"])
    assert np.isclose(tiny.mass.min(), 20 * m_p)
    for n_min in (20, 40, 80):
        masses = np.geomspace(n_min * m_p, 1e16, 300)
        dndlnm = mass_function.massFunction(masses, 0.0, mdef="fof", model="watson13", q_out="dndlnM")
        expected = np.trapezoid(dndlnm, np.log(masses)) * tiny.box_size ** 3
        ratio = np.sum(tiny.mass >= n_min * m_p) / expected
        assert 1 / 1.3 < ratio < 1.3, (n_min, ratio)


def test_target_is_calibrated_like_the_paper(tiny):
    assert 400 < len(tiny) < 1000
    assert abs(np.median(tiny.delta) - TARGET_MEDIAN) < 0.02
    assert 0.10 < np.mean(tiny.delta > 1) < 0.35
    assert 5.0 < tiny.meta["smoothing_radius"] < 12.0
    assert np.all(tiny.vel.std(axis=0) > 100) and np.all(tiny.vel.std(axis=0) < 1000)  # km/s


def test_generator_is_deterministic_by_seed():
    c = gen.GeneratorConfig(box_size=80.0, n_side=32, n_steps=8, smoothing=8.0)
    a, b = gen.generate(c, progress=False), gen.generate(c, progress=False)
    other = gen.generate(c.with_(seed=1), progress=False)
    assert len(a) > 0
    np.testing.assert_array_equal(a.pos, b.pos)
    np.testing.assert_array_equal(a.delta, b.delta)
    assert len(a) != len(other) or not np.array_equal(a.mass, other.mass)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(SymdistillError, match="size"):
        gen.GeneratorConfig.of_size("huge")
    with pytest.raises(SymdistillError, match="n_side"):
        gen.generate(gen.GeneratorConfig(n_side=4), progress=False)
    with pytest.raises(SymdistillError, match="mesh"):
        gen.generate(gen.GeneratorConfig(n_side=1024), progress=False)
