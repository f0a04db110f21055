"""The symbolic model: composition, offsets, refit of constants."""

import numpy as np
import sympy as sp

from symdistill.distill.compose import SymbolicModel
from symdistill.distill.session import drop_constant, drop_offset_terms
from symdistill.simulate import simulate

dx, dy, r, m, s0, s1, vx = (sp.Symbol(n) for n in ("dx", "dy", "r", "m", "s0", "s1", "vx"))


def _data(system="spring", n_sims=100, steps=20):
    tr = simulate(system, n_sims=n_sims, n_steps=steps, seed=3)
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731
    return dict(pos=flat(tr.pos), vel=flat(tr.vel), acc=flat(tr.acc),
                mass=np.repeat(tr.mass, steps, 0), charge=np.repeat(tr.charge, steps, 0))


def test_exact_formulas_reproduce_the_simulator():
    edge = [(2 - 2 * r) * dx / (r - sp.Float(0.01)), (2 - 2 * r) * dy / (r - sp.Float(0.01))]
    model = SymbolicModel(edge, [s0 / m, s1 / m], 2)
    assert model.mae(_data()) < 1e-10


def test_refit_recovers_perturbed_constants_and_never_gets_worse():
    data = _data()
    edge = [sp.Float(1.7) * (1 - sp.Float(1.2) * r) * dx / (r - sp.Float(0.01)),
            sp.Float(2.3) * (1 - sp.Float(0.9) * r) * dy / (r - sp.Float(0.01))]
    model = SymbolicModel(edge, [sp.Float(1.1) * s0 / m, sp.Float(0.9) * s1 / m], 2)
    before, after = model.refit(data, steps=400)
    assert after < 0.05 * before
    (e0, _), _ = model.sympy()
    # the rest length is identifiable: the ratio of the two constants inside (1 - c r) -> 1
    consts = sorted(float(c) for c in e0.atoms(sp.Float))
    assert any(abs(c - 1.0) < 0.02 for c in consts) or after < 1e-3


def test_offsets_are_dropped_but_velocity_terms_kept():
    assert drop_constant(3 * dx / r + sp.Float(0.004)) == 3 * dx / r
    node = (sp.Float(62.0) * s0 + sp.Float(60.0) * s1 - sp.Float(0.46)) / m - sp.Float(0.5) * vx / m
    kept = drop_offset_terms(node, ["s0", "s1"])
    assert not kept.has(sp.Float(0.46)) and kept.has(vx) and kept.has(s0) and kept.has(s1)


def test_choose_by_refit_prefers_the_true_law_over_simpler_wrong_and_more_complex_ones():
    from symdistill.distill.session import choose_by_refit
    data = _data()
    d = r - sp.Float(0.01)
    truth = lambda a: sp.Float(1.3) * (sp.Float(0.9) - r) * a / d  # noqa: E731  (constants off: refit fixes)
    candidates = [
        [sp.Float(0.5) * dx / d, sp.Float(0.5) * dy / d],                              # simpler, wrong
        [truth(dx), truth(dy)],                                                          # the law
        [truth(dx) + sp.Float(0.01) * r ** 3 * dx, truth(dy) + sp.Float(0.01) * r ** 3 * dy],  # law + junk
    ]
    k, maes = choose_by_refit(candidates, [s0 / m, s1 / m], 2, data, steps=200)
    assert k == 1, maes
    assert maes[0] > 5 * maes[1]


def test_distill_config_rejects_unknown_selection_and_bad_trim():
    import pytest
    from symdistill.distill.session import DistillConfig
    from symdistill.errors import SymdistillError
    with pytest.raises(SymdistillError, match="`select` must be refit or paper"):
        DistillConfig(select="best")
    with pytest.raises(SymdistillError, match=r"`trim_closest` must be in \[0, 0.5\)"):
        DistillConfig(trim_closest=0.7)
    with pytest.raises(SymdistillError, match=r"`trim_largest` must be in \[0, 0.5\)"):
        DistillConfig(trim_largest=-0.1)
