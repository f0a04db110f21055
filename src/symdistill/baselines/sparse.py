"""Sparse regression of a central pair force: the non-neural baseline with the network's prior.

The graph network assumes m_i a_i = sum_{j != i} F(x_i - x_j, m_i, m_j, q_i, q_j). This baseline
assumes the same, plus that the force is central, and writes it linearly in a fixed library:

    m_i a_i = sum_{j != i} g(r_ij, m_i, m_j, q_i, q_j) u_ij  +  sum_k b_k w_k(m_i) v_i,
    g = sum_k c_k phi_k(r, m1, m2, q1, q2),

with r = |x_i - x_j| + EPS (the softened distance), u = (x_i - x_j) / |x_i - x_j| and per-body
velocity terms for damping. The sparse c and b come from sequentially thresholded least squares
(repeated scikit-learn fits; see :func:`stlsq` for why not matching pursuit or the lasso). A law
whose g is not a sparse combination of the library (the discontinuous one, a screened Coulomb law)
is honestly out of reach: the fit returns a dense approximation, not the law.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import sympy as sp
from sklearn.linear_model import LinearRegression

from symdistill.distill.pareto import DIGITS, round_constants
from symdistill.errors import SymdistillError, check_dim, check_positive
from symdistill.simulate import simulate
from symdistill.simulate.potentials import EDGE_VARIABLES, EPS, PAIR_VARIABLES, SYM, Law, get_law

_r, _m1, _m2, _q1, _q2 = (SYM[k] for k in PAIR_VARIABLES)
#: Radial functions: every integer power the paper's laws and their neighbours use, and a log.
RADIAL = tuple(_r**p for p in range(-3, 4)) + (sp.log(_r),)
#: Property factors: none, the sender's mass or charge, and the products with the receiver's.
FACTORS = (sp.Integer(1), _m2, _m1 * _m2, _q2, _q1 * _q2)
#: The default library, the same for every law: 8 radial functions x 5 factors = 40 terms of g.
LIBRARY = tuple(f * g for f in FACTORS for g in RADIAL)
#: Per-body force terms w(m_i) v_i: damping (-c v), and a mass-weighted decoy (-c m v).
VELOCITY_TERMS = (sp.Integer(1), _m1)
#: A term is kept if its share of the weighted force is >= THRESHOLD x the largest term's. Every
#: value in [0.007, 0.1] recovers the five in-library development laws exactly, with up to 5%
#: noise on the accelerations (measured on those laws only); 0.03 is that window's geometric middle.
THRESHOLD = 0.03


class SparsePairRegression:
    """Fit g(r, m1, m2, q1, q2) as a sparse sum of library terms (scikit-learn-like).

    Args:
        library: sympy expressions in r, m1, m2, q1, q2; the candidate terms of g.
        velocity_terms: sympy expressions in m1 multiplying v_i as per-body force terms
            (empty: a conservative pair law only).
        threshold: relative share of the force below which a term is dropped (see THRESHOLD).
        weighting: ``"relative"`` weighs each body by 1 / (|F_i|^2 + median |F|^2), so close
            encounters (forces 10^4 times typical) do not decide the fit alone; ``"none"``.
        digits: significant digits kept in ``scalar_``.

    Learned: ``coef_`` [K] (library then velocity terms), ``terms_`` (their names), ``support_``
    (selected indices), ``scalar_`` (g as sympy), ``node_terms_`` (velocity term name -> coefficient).

    Shapes:
        pos, vel, acc: [B, N, D] (B snapshots of N bodies in D = 2 or 3 dimensions); mass, charge: [B, N].
    """

    def __init__(self, library: Sequence[sp.Expr] = LIBRARY, *, velocity_terms: Sequence[sp.Expr] = VELOCITY_TERMS,
                 threshold: float = THRESHOLD, weighting: str = "relative", digits: int = DIGITS):
        self.library = library
        self.velocity_terms = velocity_terms
        self.threshold = threshold
        self.weighting = weighting
        self.digits = digits

    # ---- fit ------------------------------------------------------------------------------------
    def fit(self, pos, vel, acc, mass, charge) -> SparsePairRegression:
        self._check_options()
        pos, vel, acc, mass, charge = _check_arrays(pos=pos, vel=vel, acc=acc, mass=mass, charge=charge)
        X = self.design(pos, vel, mass, charge)
        force = mass[..., None] * acc
        y = force.reshape(-1)
        sw = np.repeat(np.sqrt(self.body_weights(force)), pos.shape[2])
        self.coef_ = stlsq(X * sw[:, None], y * sw, self.threshold)
        self.support_ = np.flatnonzero(self.coef_)
        self.terms_ = [sp.sstr(t) for t in self.library] + [sp.sstr(w * sp.Symbol("v")) for w in self.velocity_terms]
        self._set_formulas()
        return self

    def _check_options(self) -> None:
        if len(self.library) == 0:
            raise SymdistillError("`library` must hold at least one term (got none)")
        allowed = {SYM[k] for k in PAIR_VARIABLES}
        for name, terms, ok in (("library", self.library, allowed), ("velocity_terms", self.velocity_terms, {_m1})):
            for t in terms:
                extra = sp.sympify(t).free_symbols - ok
                if extra:
                    raise SymdistillError(f"`{name}` term {t} uses {sorted(map(str, extra))}; "
                                          f"allowed: {sorted(map(str, ok))}")
        if self.weighting not in ("relative", "none"):
            raise SymdistillError(f"`weighting` must be 'relative' or 'none' (got {self.weighting!r})")
        if not 0 <= self.threshold < 1:
            raise SymdistillError(f"`threshold` must be in [0, 1) (got {self.threshold})")
        check_positive("digits", self.digits)

    def body_weights(self, force: np.ndarray) -> np.ndarray:
        """Per-body weights [B*N] of the fit (``weighting``)."""
        f2 = (force**2).sum(-1).reshape(-1)
        return np.ones_like(f2) if self.weighting == "none" else relative_weights(force).reshape(-1)

    def design(self, pos, vel, mass, charge) -> np.ndarray:
        """Columns [B*N*D, K]: each term's total force on each body, then the velocity terms."""
        dist, ok, u = pair_geometry(pos)
        pair = {"r": np.where(ok, dist, 1.0) + EPS, "m1": mass[:, :, None], "m2": mass[:, None, :],
                "q1": charge[:, :, None], "q2": charge[:, None, :]}
        cols = [np.einsum("bij,bijd->bid", _evaluate(t, pair, ok.shape) * ok, u) for t in self.library]
        cols += [_evaluate(w, {"m1": mass}, mass.shape)[..., None] * vel for w in self.velocity_terms]
        return np.stack([c.reshape(-1) for c in cols], axis=1)

    def _set_formulas(self) -> None:
        n = len(self.library)
        c = [float(f"{v:.{self.digits}g}") for v in self.coef_]
        self.scalar_ = round_constants(sum((sp.Float(c[k]) * self.library[k] for k in self.support_ if k < n),
                                           sp.Integer(0)), self.digits)
        self.node_terms_ = {self.terms_[k]: c[k] for k in self.support_ if k >= n}

    # ---- use ------------------------------------------------------------------------------------
    def force_formulas(self, dim: int) -> list[sp.Expr]:
        """Pair force on the receiver, g u, as sympy in dx, dy, (dz), r, m1, m2, q1, q2 (for verify)."""
        self._require_fit()
        check_dim(dim)
        return [self.scalar_ * SYM[c] / (SYM["r"] - EPS) for c in EDGE_VARIABLES[:dim]]

    def predict(self, pos, vel, mass, charge) -> np.ndarray:
        """Accelerations [B, N, D] from the fitted (unrounded) coefficients."""
        self._require_fit()
        pos, vel, mass, charge = _check_arrays(pos=pos, vel=vel, mass=mass, charge=charge)
        force = self.design(pos, vel, mass, charge) @ self.coef_
        return force.reshape(pos.shape) / mass[..., None]

    def _require_fit(self) -> None:
        if not hasattr(self, "coef_"):
            raise SymdistillError("This SparsePairRegression is not fitted yet: call `fit` first")


def pair_geometry(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dist [B, N, N], ok [B, N, N], u [B, N, N, D]) of snapshots pos [B, N, D]: distances, which pairs
    act (self-pairs and coincident bodies have no direction: they exert nothing), and unit vectors
    from sender j to receiver i (receiver minus sender)."""
    d = pos[:, :, None, :] - pos[:, None, :, :]
    dist = np.sqrt((d**2).sum(-1))
    ok = dist > 0
    return dist, ok, np.where(ok[..., None], d / np.where(ok, dist, 1.0)[..., None], 0.0)


def relative_weights(force: np.ndarray) -> np.ndarray:
    """1 / (|F|^2 + median |F|^2) per body, force [..., D] -> [...]: close encounters (forces 10^4 times
    typical) do not decide a fit alone."""
    f2 = (force**2).sum(-1)
    return 1.0 / (f2 + (np.median(f2[f2 > 0]) if np.any(f2 > 0) else 1.0))


def _evaluate(term: sp.Expr, values: dict[str, np.ndarray], shape) -> np.ndarray:
    names = sorted(s.name for s in sp.sympify(term).free_symbols)
    fn = sp.lambdify([SYM[n] for n in names], term, "numpy")
    with np.errstate(all="ignore"):  # masked entries (self-pairs) may overflow; they are zeroed
        return np.broadcast_to(np.asarray(fn(*(values[n] for n in names)), dtype=float), shape)


def stlsq(X: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """Sequentially thresholded least squares (SINDy's STLSQ) from repeated scikit-learn fits.

    Columns are scaled to unit norm, so a coefficient is its term's share of the (weighted) force;
    terms whose share is below ``threshold`` x the largest are dropped and the rest refit, until
    the support stops changing. The last fit is plain least squares on the support (no shrinkage).

    Why not scikit-learn's greedy or l1 paths: the smooth radial terms are strongly collinear. On
    the clean development data orthogonal matching pursuit (support picked by BIC) recovered at
    most 3 of the 5 in-library laws and LassoLarsIC (BIC) none; both kept 12-18 terms and missed
    spring's 2 - 2r, which full least squares, where STLSQ starts, already finds exactly.
    """
    norms = np.linalg.norm(X, axis=0)
    support = np.flatnonzero(norms > 0)  # e.g. charge terms of an uncharged law: nothing to fit
    Xn = X / np.where(norms > 0, norms, 1.0)
    coef = np.zeros(X.shape[1])
    for _ in range(support.size):  # every pass but the last drops a term, so this always suffices
        c = LinearRegression(fit_intercept=False).fit(Xn[:, support], y).coef_
        keep = np.abs(c) >= threshold * np.abs(c).max()
        coef[:] = 0.0
        coef[support] = c
        if keep.all():
            break
        support = support[keep]
    return coef / np.where(norms > 0, norms, 1.0)


def _check_arrays(**arrays) -> list[np.ndarray]:
    """Float arrays: pos/vel/acc [B, N, D] with D 2 or 3, mass/charge [B, N], all finite, mass > 0."""
    out, shape = [], None
    for name, a in arrays.items():
        a = np.asarray(a, dtype=float)
        want = 3 if name in ("pos", "vel", "acc") else 2
        if a.ndim != want:
            raise SymdistillError(f"Expected `{name}` of shape {'[B, N, D]' if want == 3 else '[B, N]'} "
                                  f"(got {a.shape})")
        if shape is None:
            shape = a.shape
        if a.shape[:2] != shape[:2] or (want == 3 and a.shape != shape):
            raise SymdistillError(f"Expected `{name}` of shape {shape if want == 3 else shape[:2]} like `pos` "
                                  f"(got {a.shape})")
        if not np.all(np.isfinite(a)):
            raise SymdistillError(f"`{name}` holds non-finite values")
        out.append(a)
    if shape[0] < 1 or shape[1] < 2 or shape[2] not in (2, 3):
        raise SymdistillError(f"Expected `pos` with B >= 1 snapshots of N >= 2 bodies in D = 2 or 3 "
                              f"dimensions (got shape {shape})")
    if "mass" in arrays and np.any(out[list(arrays).index("mass")] <= 0):
        raise SymdistillError("`mass` must be > 0 everywhere")
    return out


def fit_law(law: Law | str, dim: int, *, n_sims: int = 100, n_bodies: int = 4, n_steps: int = 50,
            seed: int = 0, **options) -> tuple[SparsePairRegression, float]:
    """Simulate ``law`` (training seed ``seed``) and fit; returns the model and the fit's seconds
    (the regression only, not the simulation)."""
    law = get_law(law)
    traj = simulate(law, n_sims=n_sims, n_bodies=n_bodies, dim=dim, n_steps=n_steps, seed=seed)
    flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731  [S, T, ...] -> [S*T, ...]
    per_step = lambda a: np.repeat(a, traj.pos.shape[1], axis=0)  # noqa: E731  [S, N] -> [S*T, N]
    start = time.perf_counter()
    model = SparsePairRegression(**options).fit(flat(traj.pos), flat(traj.vel), flat(traj.acc),
                                                per_step(traj.mass), per_step(traj.charge))
    return model, time.perf_counter() - start
