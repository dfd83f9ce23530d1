"""GWAS fits in NumPy: per variant (:func:`fit_variant`) and per block of variants
(:func:`fit_block`: variants x samples matrices with a mask for missing calls; closed-form OLS for
linear, one masked Newton-Raphson for logistic Wald), decision for decision as plink2 2.00a3's
``--glm``; Firth and the rare special cases one variant at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from omicslake.genomics.gwas.samples import Design

TOL = 1e-8  # past plink2's stopping rule, steps continue in double precision until below this
POLISH_ITER = 5
FIRTH_MAX_ITER = 25  # plink2 (and R logistf)
FIRTH_POLISH_ITER = 25


@dataclass(frozen=True)
class Fit:
    """One variant's test of the tested (last) column: beta, se, statistic (t for linear, Wald z for
    logistic), two-sided p and -log10 p, whether Firth was used, and status: "ok", "unfinished" (plink2's
    iteration limit reached) or why the numbers are NaN (too_few_samples, collinear, perfect_fit,
    one_class, constant_genotype, separated, not_converged, invalid_result, no_calls)."""

    beta: float
    se: float
    statistic: float
    p: float
    neg_log10_p: float
    firth: bool
    status: str


def _nan_fit(status: str, firth: bool = False) -> Fit:
    nan = float("nan")
    return Fit(nan, nan, nan, nan, nan, firth, status)


def _normal_test(beta: float, se: float, firth: bool, status: str = "ok") -> Fit:
    z = beta / se
    logp = math.log(2.0) + float(stats.norm.logsf(abs(z)))
    return Fit(beta, se, z, math.exp(logp), -logp / math.log(10), firth, status)


def fit_linear(x: np.ndarray, y: np.ndarray) -> Fit:
    """OLS; the tested variable is the last column. t test on n - p degrees of freedom."""
    n, p = x.shape
    if n <= p:
        return _nan_fit("too_few_samples")
    xtx = x.T @ x
    try:
        inv = np.linalg.inv(xtx)
    except np.linalg.LinAlgError:
        return _nan_fit("collinear")
    if not np.isfinite(inv).all() or inv[-1, -1] <= 0 or np.linalg.cond(xtx) > 1e12:
        return _nan_fit("collinear")
    b = inv @ (x.T @ y)
    resid = y - x @ b
    df = n - p
    s2 = float(resid @ resid) / df
    se = math.sqrt(s2 * inv[-1, -1])
    if se == 0:
        return _nan_fit("perfect_fit")
    t = b[-1] / se
    logp = math.log(2.0) + float(stats.t.logsf(abs(t), df))
    return Fit(float(b[-1]), se, float(t), math.exp(logp), -logp / math.log(10), False, "ok")


# The logistic fits follow plink2 2.00a3's --glm (plink2_glm_logistic.cc: LogisticRegressionF,
# FirthRegression and the checks around them) decision for decision, in double precision, so that
# the same variants are fitted by Wald, by Firth, flagged UNFINISHED or left without estimate.


def separated(g: np.ndarray, y: np.ndarray) -> bool:
    """plink2's shortcut to Firth: either allele's dosage sits wholly in the cases or wholly in
    the controls (a variant seen only in cases, say), where the plain fit cannot converge."""
    case = y == 1
    alt_case, alt_control = float(g[case].sum()), float(g[~case].sum())
    ref_case, ref_control = float((2.0 - g[case]).sum()), float((2.0 - g[~case]).sum())
    return min(alt_case, alt_control, ref_case, ref_control) == 0.0


def _information(x: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fitted probabilities, their variances, Fisher information X'WX) at b."""
    mu = special.expit(x @ b)
    w = mu * (1.0 - mu)
    return mu, w, x.T @ (x * w[:, None])


def _cholesky_inverse(h: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(inverse, log determinant) of a symmetric positive definite matrix; None if it is not."""
    try:
        chol = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        return None
    inv_chol = np.linalg.inv(chol)
    return inv_chol.T @ inv_chol, 2.0 * float(np.log(np.diag(chol)).sum())


def _logistic_newton(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, bool] | None:
    """plink2's LogisticRegressionF: Newton-Raphson from zero; None where plink2 calls it a
    convergence failure (which sends a variant to Firth), else (beta, unfinished) where
    unfinished means the iteration limit was reached (plink2's UNFINISHED)."""
    b = np.zeros(x.shape[1])
    min_delta = 1e9
    for iteration in range(15):  # plink2 decides by the 15th iteration
        mu, _, info = _information(x, b)
        try:
            step = np.linalg.solve(info, x.T @ (mu - y))
        except np.linalg.LinAlgError:
            return None
        b = b - step
        delta = float(np.abs(step).sum())
        min_delta = min(min_delta, delta)
        if not math.isfinite(delta):
            return None
        if iteration > 3:
            if (delta > 20.0 and delta > 2 * min_delta) or (iteration > 6 and abs(1.0 - delta) < 1e-3):
                return None
            if iteration > 13:
                return None if np.abs(b).max() > 8e3 else (b, True)
        if delta < 1e-4:
            if np.abs(b).max() > 6e4:
                return None
            for _ in range(POLISH_ITER):  # plink2 stops here in single precision; a few more steps in double
                mu, _, info = _information(x, b)
                try:
                    step = np.linalg.solve(info, x.T @ (mu - y))
                except np.linalg.LinAlgError:
                    break
                b = b - step
                if np.abs(step).max() < TOL:
                    break
            return b, False
    return None


def _loglik(x: np.ndarray, y: np.ndarray, b: np.ndarray) -> float:
    eta = x @ b
    return -float((y * np.logaddexp(0.0, -eta) + (1.0 - y) * np.logaddexp(0.0, eta)).sum())


def _firth(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """plink2's FirthRegression (a port of R logistf): Jeffreys-penalised likelihood from zero,
    steps capped at 5, up to 5 step halvings, 25 iterations. (beta, inverse information at beta,
    unfinished), or None where plink2 reports FIRTH_CONVERGE_FAIL (a singular information)."""
    p = x.shape[1]
    b = np.zeros(p)
    _, w, info = _information(x, b)
    mu = special.expit(x @ b)
    got = _cholesky_inverse(info)
    if got is None:
        return None
    inv, logdet = got
    loglik = _loglik(x, y, b) + 0.5 * logdet
    unfinished = False
    polish = 0
    for iteration in range(FIRTH_MAX_ITER + FIRTH_POLISH_ITER):
        h = w * np.einsum("ij,jk,ik->i", x, inv, x)  # leverages of the weighted hat matrix
        grad = x.T @ (y - mu + h * (0.5 - mu))
        step = inv @ grad
        grad_max, step_max = float(np.abs(grad).max()), float(np.abs(step).max())
        if polish:  # past plink2's stopping point: plain steps until they vanish
            b = b + step
            mu, w, info = _information(x, b)
            got = _cholesky_inverse(info)
            if got is None:
                return None
            inv = got[0]
            if step_max < TOL:
                break
            continue
        if step_max > 5.0:
            step *= 5.0 / step_max
            step_max = 5.0
        b = b + step
        converged = step_max <= 1e-4 and grad_max < 1e-4
        old = loglik
        threshold = old - (0.999999e-4 if converged else 0.0)
        max_halvings, halving, bail = 5, 1, False
        while True:
            mu, w, info = _information(x, b)
            got = _cholesky_inverse(info)
            if got is None:
                return None
            inv, logdet = got
            loglik = _loglik(x, y, b) + 0.5 * logdet
            if halving > max_halvings:
                break
            if loglik >= threshold:
                if loglik >= old:
                    break
                max_halvings = halving
            elif halving == max_halvings and step_max < 1e-3 and grad_max < 0.05 and loglik >= old - 1e-4:
                # converged as far as plink2's single precision goes: undo the step and stop
                halving -= 1
                max_halvings -= 1
                bail = True
            b = b - step * 2.0**-halving
            halving += 1
        if abs(loglik - old) <= 1e-4 and (converged or bail):
            polish = 1
        elif iteration == FIRTH_MAX_ITER - 1:
            unfinished = True
            break
    return b, inv, unfinished


def _valid(inv: np.ndarray) -> bool:
    """plink2's check of the inverse information before reporting: positive, finite variances
    and no pair of estimates correlated beyond 0.99999."""
    d = np.diag(inv)
    if not np.isfinite(inv).all() or (d[1:] < 1e-20).any():
        return False
    sd = np.sqrt(np.maximum(d, 0.0))
    lower = np.tril(inv, -1)[1:, :]
    return not (lower > 0.99999 * np.outer(sd[1:], sd)).any()


def fit_logistic(x: np.ndarray, y: np.ndarray, firth: str = "fallback") -> Fit:
    """Wald test of the last column; Firth per ``firth`` (no | fallback | always), as plink2:
    fallback refits a variant with Firth when an allele is seen only in cases or only in controls,
    or when the plain fit fails to converge."""
    n, p = x.shape
    if n <= p:
        return _nan_fit("too_few_samples")
    if y.min() == y.max():
        return _nan_fit("one_class")
    if np.ptp(x[:, -1]) == 0:
        return _nan_fit("constant_genotype")
    if firth != "always":
        if not separated(x[:, -1], y):
            got = _logistic_newton(x, y)
            if got is not None:
                b, unfinished = got
                inv = _cholesky_inverse(_information(x, b)[2])
                if inv is None or not _valid(inv[0]):
                    return _nan_fit("invalid_result")
                status = "unfinished" if unfinished else "ok"
                return _normal_test(float(b[-1]), math.sqrt(inv[0][-1, -1]), False, status)
            if firth == "no":
                return _nan_fit("not_converged")
        elif firth == "no":
            return _nan_fit("separated")
    got_firth = _firth(x, y)
    if got_firth is None:
        return _nan_fit("not_converged", True)
    b, inv, unfinished = got_firth
    if not _valid(inv):
        return _nan_fit("invalid_result", True)
    return _normal_test(float(b[-1]), math.sqrt(inv[-1, -1]), True, "unfinished" if unfinished else "ok")


def fit_variant(g: np.ndarray, design: Design, model: str, missing: str, firth: str) -> tuple[int, float, Fit]:
    """(n used, AF of the tested allele among them, fit) for one variant's dosages (NaN = missing)."""
    called = ~np.isnan(g)
    if missing == "drop":
        x = np.column_stack([design.covariates[called], g[called]])
        y = design.y[called]
        dose = g[called]
    else:
        mean = g[called].mean() if called.any() else 0.0
        dose = np.where(called, g, mean)
        x = np.column_stack([design.covariates, dose])
        y = design.y
    n = len(y)
    af = float(g[called].mean() / 2) if called.any() else float("nan")
    if n == 0 or not called.any():
        return n, af, _nan_fit("no_calls")
    if np.ptp(dose) == 0:
        return n, af, _nan_fit("constant_genotype")
    return n, af, fit_linear(x, y) if model == "linear" else fit_logistic(x, y, firth)


def _wald_block(
    c: np.ndarray, y: np.ndarray, g0: np.ndarray, m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_logistic_newton` on many variants at once: covariates ``c`` (n x k) shared, the
    genotypes ``g0`` (V x n, 0 where missing) and masks ``m`` (V x n, 1 = called) per variant.
    Returns (beta V x p, state V, information at beta V x p x p) with state 1 converged, 2 failed,
    3 unfinished."""
    v, k = g0.shape[0], c.shape[1]
    cc = (c[:, :, None] * c[:, None, :]).reshape(len(c), k * k)
    b = np.zeros((v, k + 1))
    min_delta = np.full(v, 1e9)
    state = np.zeros(v, dtype=np.int8)
    active = np.arange(v)

    def info_grad(idx: np.ndarray, bb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, mm = g0[idx], m[idx]
        mu = special.expit(bb[:, :k] @ c.T + bb[:, k:] * g)
        w, r = mu * (1.0 - mu) * mm, (mu - y) * mm
        h = np.empty((len(idx), k + 1, k + 1))
        h[:, :k, :k] = (w @ cc).reshape(-1, k, k)
        h[:, :k, k] = h[:, k, :k] = (w * g) @ c
        h[:, k, k] = (w * g * g).sum(axis=1)
        return h, np.concatenate([r @ c, (r * g).sum(axis=1)[:, None]], axis=1)

    def solve(h: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Newton steps and which of them exist (a singular information has none)."""
        try:
            return np.linalg.solve(h, grad[..., None])[..., 0], np.ones(len(h), bool)
        except np.linalg.LinAlgError:
            out, ok = np.zeros_like(grad), np.ones(len(h), bool)
            for i in range(len(h)):
                try:
                    out[i] = np.linalg.solve(h[i], grad[i])
                except np.linalg.LinAlgError:
                    ok[i] = False
            return out, ok

    for iteration in range(15):
        if not len(active):
            break
        step, ok = solve(*info_grad(active, b[active]))
        b[active] -= step
        delta = np.abs(step).sum(axis=1)
        min_delta[active] = np.minimum(min_delta[active], delta)
        big = np.abs(b[active]).max(axis=1)
        failed = ~ok | ~np.isfinite(delta)
        decided = failed.copy()
        if iteration > 3:
            diverging = (delta > 20.0) & (delta > 2 * min_delta[active])
            stuck = (iteration > 6) & (np.abs(1.0 - delta) < 1e-3)
            failed |= ~decided & (diverging | stuck)
            decided = failed.copy()
            if iteration > 13:
                state[active[~decided & (big > 8e3)]] = 2
                state[active[~decided & (big <= 8e3)]] = 3
                decided[:] = True
        converged = ~decided & (delta < 1e-4)
        state[active[failed]] = 2
        state[active[converged & (big > 6e4)]] = 2
        state[active[converged & (big <= 6e4)]] = 1
        active = active[~(decided | converged)]
    polish = np.flatnonzero(state == 1)
    for _ in range(POLISH_ITER):  # as _logistic_newton: a few more steps in double precision
        if not len(polish):
            break
        step, ok = solve(*info_grad(polish, b[polish]))
        b[polish[ok]] -= step[ok]
        polish = polish[ok & (np.abs(step).max(axis=1) >= TOL)]
    return b, state, info_grad(np.arange(v), b)[0]


FIT_COLUMNS = ["n", "af", "beta", "se", "statistic", "p", "neg_log10_p", "firth", "status"]


def _valid_many(inv: np.ndarray) -> np.ndarray:
    """:func:`_valid` on a stack of inverse informations (V x p x p)."""
    d = np.diagonal(inv, axis1=1, axis2=2)
    ok = np.isfinite(inv).all(axis=(1, 2)) & (d[:, 1:] >= 1e-20).all(axis=1)
    sd = np.sqrt(np.maximum(d, 0.0))
    lower = np.tril(inv, -1)[:, 1:, :]
    return ok & ~(lower > 0.99999 * sd[:, 1:, None] * sd[:, None, :]).any(axis=(1, 2))


def _linear_block(c: np.ndarray, y: np.ndarray, g0: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-variant OLS of y on the covariates ``c`` (n x k) and the genotype, each variant on its
    called samples (mask ``m``, genotypes ``g0`` zero where missing), from the masked normal
    equations: (beta, se, t, rss ok, X'X condition number) per variant, fitted as :func:`fit_linear`."""
    v, k = g0.shape[0], c.shape[1]
    yc = y - y.mean()  # the intercept absorbs it; smaller sums of squares
    cc = (c[:, :, None] * c[:, None, :]).reshape(len(c), k * k)
    xtx = np.empty((v, k + 1, k + 1))
    xtx[:, :k, :k] = (m @ cc).reshape(v, k, k)
    xtx[:, :k, k] = xtx[:, k, :k] = g0 @ c
    xtx[:, k, k] = np.einsum("ij,ij->i", g0, g0)
    rhs = np.concatenate([m @ (c * yc[:, None]), (g0 @ yc)[:, None]], axis=1)
    yy = m @ (yc * yc)
    cond = np.linalg.cond(xtx)
    good = np.isfinite(cond) & (cond <= 1e12)
    inv = np.full_like(xtx, np.nan)
    if good.any():
        inv[good] = np.linalg.inv(xtx[good])
    b = (inv @ rhs[:, :, None])[:, :, 0]
    rss = yy - np.einsum("ij,ij->i", b, rhs)
    df = m.sum(axis=1) - (k + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(rss / df * inv[:, -1, -1])
        t = b[:, -1] / se
    # a residual sum of squares lost to rounding (a near perfect fit) is left to fit_linear
    fine = good & (inv[:, -1, -1] > 0) & (rss > 1e-9 * np.maximum(yy, 1e-300)) & np.isfinite(se) & (se > 0)
    return b[:, -1], se, t, df, fine


def fit_block(g: np.ndarray, design: Design, model: str, missing: str, firth: str) -> pd.DataFrame:
    """:func:`fit_variant` on every row of ``g`` (variants x samples, NaN = missing), as a frame
    with :data:`FIT_COLUMNS` in row order. With ``missing="drop"`` the plain fits run for all
    rows at once: linear by the masked normal equations (closed form), logistic Wald by one
    masked Newton-Raphson (plink2's per-variant stopping and failure rules kept). A variant that
    goes to Firth, has no estimate or is a special case is fitted one by one: the same numbers
    either way."""
    v = len(g)
    nan = np.full(v, np.nan)
    out = {
        "n": np.zeros(v, np.int64),
        "af": nan.copy(),
        "beta": nan.copy(),
        "se": nan.copy(),
        "statistic": nan.copy(),
        "p": nan.copy(),
        "neg_log10_p": nan.copy(),
        "firth": np.zeros(v, bool),
        "status": np.full(v, None, object),
    }
    done = np.zeros(v, bool)
    if missing == "drop" and v and not (model == "logistic" and firth == "always"):
        called = ~np.isnan(g)
        m = called.astype(float)
        g0 = np.where(called, g, 0.0)
        n = called.sum(axis=1)
        p = design.covariates.shape[1] + 1
        y = design.y
        lo = np.where(called, g, np.inf).min(axis=1)
        hi = np.where(called, g, -np.inf).max(axis=1)
        plain = (n > p) & (lo < hi)
        if model == "logistic":
            is_case = (y == 1).astype(float)
            cases = m @ is_case
            alt_case, alt_control = g0 @ is_case, g0 @ (1.0 - is_case)
            ref_case, ref_control = 2.0 * cases - alt_case, 2.0 * (n - cases) - alt_control
            plain &= (cases > 0) & (cases < n)
            plain &= np.minimum(np.minimum(alt_case, alt_control), np.minimum(ref_case, ref_control)) != 0.0
        idx = np.flatnonzero(plain)
        if len(idx):
            if model == "logistic":
                got_idx, beta, se, z, logp, status = _logistic_rows(design, g0[idx], m[idx])
                rows = idx[got_idx]
                stat = z
            else:
                beta, se, stat, df, fine = _linear_block(design.covariates, y, g0[idx], m[idx])
                rows = idx[fine]
                beta, se, stat, df = beta[fine], se[fine], stat[fine], df[fine]
                logp = math.log(2.0) + stats.t.logsf(np.abs(stat), df)
                status = np.full(len(rows), "ok", object)
            with np.errstate(invalid="ignore"):
                out["beta"][rows], out["se"][rows], out["statistic"][rows] = beta, se, stat
                out["p"][rows], out["neg_log10_p"][rows] = np.exp(logp), -logp / math.log(10)
            out["status"][rows] = status
            out["n"][rows] = n[rows]
            out["af"][rows] = g0[rows].sum(axis=1) / n[rows] / 2
            done[rows] = True
    for i in np.flatnonzero(~done):
        n_i, af, f = fit_variant(g[i], design, model, missing, firth)
        out["n"][i], out["af"][i] = n_i, af
        for col in ("beta", "se", "statistic", "p", "neg_log10_p", "firth", "status"):
            out[col][i] = getattr(f, col)
    return pd.DataFrame(out, columns=FIT_COLUMNS)


def _logistic_rows(design: Design, g0: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, ...]:
    """The batched Wald fits of :func:`fit_block`: (which rows got a result here, beta, se, z,
    log p, status); the rows whose Newton-Raphson failed are left to :func:`fit_variant` (Firth
    or not_converged, as plink2)."""
    b, state, info = _wald_block(design.covariates, design.y, g0, m)
    fitted = (state == 1) | (state == 3)
    inv = np.full_like(info, np.nan)
    if fitted.any():
        try:
            chol = np.linalg.cholesky(info[fitted])
            inv_chol = np.linalg.inv(chol)
            inv[fitted] = np.swapaxes(inv_chol, 1, 2) @ inv_chol
        except np.linalg.LinAlgError:  # one of them is not positive definite: one by one
            for j in np.flatnonzero(fitted):
                got = _cholesky_inverse(info[j])
                inv[j] = got[0] if got is not None else np.nan
    valid = _valid_many(inv)
    got = np.flatnonzero(fitted)
    se = np.sqrt(inv[got, -1, -1])
    beta = b[got, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beta / se
        logp = math.log(2.0) + stats.norm.logsf(np.abs(z))
    ok = valid[got]
    status = np.where(state[got] == 3, "unfinished", "ok").astype(object)
    status[~ok] = "invalid_result"
    nan = np.nan
    beta, se, z, logp = (np.where(ok, a, nan) for a in (beta, se, z, logp))
    return got, beta, se, z, logp, status
