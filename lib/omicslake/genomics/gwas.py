"""Genome-wide association: one regression per variant, with covariates.

Two ways to treat a missing call, because the two reference tools differ:

* ``drop`` (the default): the sample is left out of that variant's regression, as plink2
  ``--glm`` does. Fitted per variant in NumPy inside ``mapInPandas`` on the executors (the
  sample set changes from variant to variant, which Hail's regression methods do not allow).
* ``mean``: the call is replaced by the variant's mean dosage and every sample is used, as
  Hail's ``linear_regression_rows`` / ``logistic_regression_rows`` do; this mode runs those
  Hail methods themselves.

Logistic regression is a Wald test. Firth's penalised likelihood is ``firth="always"``, or
``"fallback"`` (plink2's default): in drop mode the per-variant fits follow plink2 2.00a3's
``--glm`` step for step (Firth when an allele is seen only in cases or only in controls, or
when the Newton-Raphson fit fails; "unfinished" where plink2 says UNFINISHED), so the same
variants get the same kind of fit. In mean mode Hail fits every variant by Wald; the variants
that separate (the same rule on the imputed dosages) or that Hail's fit does not converge on are
refitted by this module's Firth code on the mean-imputed dosages (Hail's own Firth test is a
likelihood-ratio test without a standard error). On variants without missing calls the two
modes give the same numbers. In drop mode the Wald fits of a batch of variants run together
(:func:`fit_block`: one Newton-Raphson over a variants x samples matrix with a mask for missing
calls, plink2's per-variant stopping rules kept); Firth and the rare special cases run one by one.

Statuses: ok, unfinished (iteration limit reached; estimates reported, as plink2 does),
not_converged, separated (``firth="no"``), invalid_result (plink2's check of the covariance
matrix), constant_genotype, one_class, too_few_samples, no_calls, collinear, perfect_fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from scipy import special, stats

from omicslake.errors import InputError

RESULT_SCHEMA = (
    "contig string, position int, ref string, alt string, rsid string, tested_allele string, n int, "
    "af double, beta double, se double, statistic double, p double, neg_log10_p double, firth boolean, status string"
)
RESULT_COLUMNS = [c.split()[0] for c in RESULT_SCHEMA.split(", ")]
MISSING_TOKENS = {"", "NA", "na", "NaN", "nan", ".", "NULL", "null"}
PLINK_SUFFIXES = {".fam", ".pheno", ".phe", ".cov", ".covar", ".eigenvec"}
TOL = 1e-8  # past plink2's stopping rule, steps continue in double precision until below this
POLISH_ITER = 5
FIRTH_MAX_ITER = 25  # plink2 (and R logistf)
FIRTH_POLISH_ITER = 25


# ------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SampleTable:
    """A phenotype or covariate file as strings, indexed by sample id, with where it came from."""

    path: Path
    frame: pd.DataFrame
    plink: bool  # PLINK formats: -9 means missing

    def numeric(self, column: str) -> pd.Series:
        if column not in self.frame.columns:
            raise InputError(f"{self.path}: no column {column!r}; columns are {list(self.frame.columns)}")
        raw = self.frame[column].str.strip()
        missing = raw.isin(MISSING_TOKENS) | (self.plink & (raw == "-9"))
        values = pd.to_numeric(raw.where(~missing), errors="coerce")
        bad = values.isna() & ~missing
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + self.first_line
            raise InputError(
                f"{self.path}, line {line}: column {column!r} is not a number there ({int(bad.sum())} such rows); "
                f"use a number, or NA for missing (encode categories as 0/1 columns)"
            )
        return values.astype(float)

    @property
    def first_line(self) -> int:
        return 1 if self.path.suffix.lower() == ".fam" else 2


def read_sample_table(path: str | Path, id_col: str | None = None) -> SampleTable:
    """A PLINK .fam (FID IID PAT MAT SEX PHENO1), a PLINK .pheno/.cov with a header
    (``#FID IID ...`` or ``#IID ...``) or a TSV/CSV with a header; the sample id is IID when
    there is one, else ``id_col``, else the first column."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.suffix.lower() == ".fam":
        frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False)
        if frame.shape[1] != 6:
            raise InputError(f"{path}: a .fam file has 6 columns (FID IID PAT MAT SEX PHENO), this one has {frame.shape[1]}")
        frame.columns = ["FID", "IID", "PAT", "MAT", "SEX", "PHENO1"]
    else:
        with path.open() as f:
            first = f.readline()
        sep = "\t" if "\t" in first else "," if "," in first else r"\s+"
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        frame.columns = [str(c).lstrip("#").strip() for c in frame.columns]
    key = id_col or ("IID" if "IID" in frame.columns else str(frame.columns[0]))
    if key not in frame.columns:
        raise InputError(f"{path}: no sample id column {key!r}; columns are {list(frame.columns)} (choose one with --id-col)")
    dup = frame[key].duplicated()
    if dup.any():
        raise InputError(f"{path}: sample ids repeat in column {key!r} ({int(dup.sum())} repeats, first on line {int(np.flatnonzero(dup.to_numpy())[0]) + 2}); keep one row per sample")
    return SampleTable(path, frame.set_index(key), path.suffix.lower() in PLINK_SUFFIXES)


@dataclass(frozen=True)
class Design:
    """The regression's samples (positions in the genotype arrays), response and covariates."""

    index: np.ndarray
    samples: list[str]
    y: np.ndarray
    covariates: np.ndarray  # n x (1 + k), intercept first
    covariate_names: list[str]
    binary: bool
    report: dict[str, int | list[str]] = field(default_factory=dict)


def binary_response(values: pd.Series, where: str) -> pd.Series:
    """0/1 as given; PLINK's 1 = control, 2 = case (0 then means missing)."""
    seen = set(values.dropna().unique())
    if seen <= {0.0, 1.0}:
        return values
    if seen <= {0.0, 1.0, 2.0}:
        return values.where(values != 0) - 1
    raise InputError(f"{where}: a logistic model needs a case/control column coded 0/1 or PLINK's 1/2; found values {sorted(seen)[:6]}")


def build_design(
    genotype_samples: list[str],
    pheno: SampleTable,
    pheno_col: str,
    binary: bool,
    covar: SampleTable | None = None,
    covar_cols: list[str] | tuple[str, ...] = (),
) -> Design:
    """Samples with a genotype, a phenotype and every covariate, in genotype order; the
    others are counted in ``report``, never guessed."""
    y = pheno.numeric(pheno_col)
    if binary:
        y = binary_response(y, f"{pheno.path} column {pheno_col!r}")
    columns = {pheno_col: y}
    names = list(covar_cols)
    for c in names:
        columns[c] = (covar or pheno).numeric(c)
    geno = pd.Index(genotype_samples)
    in_pheno = geno.isin(y.index)
    in_covar = geno.isin(covar.frame.index) if covar is not None and names else np.ones(len(geno), bool)
    frame = pd.DataFrame({k: v.reindex(geno) for k, v in columns.items()})
    complete = frame.notna().all(axis=1).to_numpy()
    keep = np.flatnonzero(complete)
    not_in_pheno = geno[~in_pheno].tolist()
    report: dict[str, int | list[str]] = {
        "genotyped": len(geno),
        "used": len(keep),
        "no_phenotype_row": len(not_in_pheno),
        "no_covariate_row": int((~in_covar).sum()),
        "missing_value": int((in_pheno & in_covar & ~complete).sum()),
        "phenotyped_not_genotyped": int((~y.index.isin(geno)).sum()),
        "examples_no_phenotype_row": not_in_pheno[:5],
    }
    if len(keep) < len(names) + 3:
        raise InputError(
            f"only {len(keep)} of {len(geno)} genotyped samples have {pheno_col!r} and every covariate in "
            f"{pheno.path}{' / ' + str(covar.path) if covar else ''}; check that the sample ids match the VCF's"
        )
    c = frame.iloc[keep]
    if binary and c[pheno_col].nunique() < 2:
        raise InputError(f"{pheno.path}: {pheno_col!r} has one class only among the {len(keep)} usable samples")
    x = np.column_stack([np.ones(len(keep))] + [c[n].to_numpy(float) for n in names])
    return Design(keep, [genotype_samples[i] for i in keep], c[pheno_col].to_numpy(float), x, names, binary, report)


# ------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Fit:
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
            b = b - step * 2.0 ** -halving
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


def fit_block(
    g: np.ndarray, design: Design, model: str, missing: str, firth: str
) -> list[tuple[int, float, Fit]]:
    """:func:`fit_variant` on the rows of ``g`` (variants x samples, NaN = missing), the
    logistic Wald fits of ``missing="drop"`` done for all rows at once (the others, and any
    variant that goes to Firth or has no estimate, one by one: the same numbers either way)."""
    if model != "logistic" or missing != "drop" or firth == "always" or len(g) == 0:
        return [fit_variant(row, design, model, missing, firth) for row in g]
    called = ~np.isnan(g)
    m = called.astype(float)
    g0 = np.where(called, g, 0.0)
    n = called.sum(axis=1)
    p = design.covariates.shape[1] + 1
    y = design.y
    is_case = (y == 1).astype(float)
    cases = m @ is_case
    lo = np.where(called, g, np.inf).min(axis=1)
    hi = np.where(called, g, -np.inf).max(axis=1)
    alt_case, alt_control = g0 @ is_case, g0 @ (1.0 - is_case)
    ref_case, ref_control = 2.0 * cases - alt_case, 2.0 * (n - cases) - alt_control
    plain = (n > p) & (lo < hi) & (cases > 0) & (cases < n)
    plain &= np.minimum(np.minimum(alt_case, alt_control), np.minimum(ref_case, ref_control)) != 0.0
    out: list[tuple[int, float, Fit] | None] = [None] * len(g)
    idx = np.flatnonzero(plain)
    if len(idx):
        b, state, info = _wald_block(design.covariates, y, g0[idx], m[idx])
        af = g0[idx].sum(axis=1) / n[idx] / 2
        fitted = (state == 1) | (state == 3)
        inv = np.full_like(info, np.nan)
        try:
            chol = np.linalg.cholesky(info[fitted])
            inv_chol = np.linalg.inv(chol)
            inv[fitted] = np.swapaxes(inv_chol, 1, 2) @ inv_chol
        except np.linalg.LinAlgError:  # one of them is not positive definite: one by one
            for j in np.flatnonzero(fitted):
                got = _cholesky_inverse(info[j])
                inv[j] = got[0] if got is not None else np.nan
        se = np.sqrt(inv[:, -1, -1])
        beta = b[:, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = beta / se
            logp = math.log(2.0) + stats.norm.logsf(np.abs(z))
        for j, i in enumerate(idx):
            if not fitted[j]:
                continue  # failed: fit_variant below goes to Firth (or not_converged), as plink2
            if not _valid(inv[j]):
                out[i] = (int(n[i]), float(af[j]), _nan_fit("invalid_result"))
                continue
            status = "unfinished" if state[j] == 3 else "ok"
            lp = float(logp[j])
            fit = Fit(float(beta[j]), float(se[j]), float(z[j]),
                      math.exp(lp), -lp / math.log(10), False, status)
            out[i] = (int(n[i]), float(af[j]), fit)
    return [r or fit_variant(row, design, model, missing, firth) for row, r in zip(g, out, strict=True)]


def regress(genotypes: DataFrame, design: Design, model: str, missing: str = "drop", firth: str = "fallback") -> DataFrame:
    """One result row per variant of ``genotypes`` (contig, position, ref, alt, rsid, dosage
    array in the sample order the design's index refers to), fitted on the executors."""
    spark = genotypes.sparkSession
    shared = spark.sparkContext.broadcast(design)

    def fit_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        d = shared.value
        for pdf in batches:
            rows = []
            g = np.array([np.array(x, dtype=float)[d.index] for x in pdf["dosage"]])
            g = g.reshape(len(pdf), len(d.index))
            fits = fit_block(g, d, model, missing, firth)
            for rec, (n, af, f) in zip(pdf.itertuples(index=False), fits, strict=True):
                rows.append((rec.contig, rec.position, rec.ref, rec.alt, rec.rsid, rec.alt, n, af,
                             f.beta, f.se, f.statistic, f.p, f.neg_log10_p, f.firth, f.status))
            yield pd.DataFrame(rows, columns=RESULT_COLUMNS)

    cols = genotypes.select("contig", "position", "ref", "alt", "rsid", "dosage")
    return cols.mapInPandas(fit_batches, RESULT_SCHEMA)


# ------------------------------------------------------------------------------------- Hail mode


def _separates(x: hl.Float64Expression, y: hl.Float64Expression) -> hl.BooleanExpression:  # noqa: F821
    """:func:`separated` on the mean-imputed dosages, as a row aggregation over the columns: an
    allele's imputed dosage is zero in the cases or in the controls. An imputed call carries the
    mean dosage, so a group with a missing call has none of an allele only if no call has it."""
    import hail as hl

    called = hl.is_defined(x)
    s = hl.struct(
        alt=hl.agg.sum(x),
        called=hl.agg.count_where(called),
        case_alt=hl.agg.filter(y == 1, hl.agg.sum(x)),
        case_called=hl.agg.count_where((y == 1) & called),
        case_n=hl.agg.count_where(y == 1),
        control_alt=hl.agg.filter(y == 0, hl.agg.sum(x)),
        control_called=hl.agg.count_where((y == 0) & called),
        control_n=hl.agg.count_where(y == 0),
    )

    def none_of_it(s: hl.StructExpression) -> hl.BooleanExpression:  # noqa: F821
        full_case, full_control = s.case_called == s.case_n, s.control_called == s.control_n
        no_alt, no_ref = s.alt == 0, s.alt == 2 * s.called
        return (
            ((s.case_alt == 0) & (full_case | no_alt))
            | ((s.control_alt == 0) & (full_control | no_alt))
            | ((s.case_alt == 2 * s.case_called) & (full_case | no_ref))
            | ((s.control_alt == 2 * s.control_called) & (full_control | no_ref))
        )

    return hl.bind(none_of_it, s)


def regress_hail(mt: hl.MatrixTable, design: Design, model: str, firth: str) -> hl.Table:  # noqa: F821
    """Hail's own regression (missing calls mean-imputed) over the design's samples: the result
    columns keyed by locus and alleles, and ``refit``. With a logistic model and
    ``firth="fallback"``, refit marks the variants that separate (plink2's rule, on the imputed
    dosages) or whose Wald fit did not converge or exploded; :func:`refit_rows` and :func:`regress`
    fit those by Firth. Hail's own Firth test is a likelihood-ratio test without a standard error,
    so the refits use this module's Firth fit (plink2's algorithm, Wald test), on the same
    mean-imputed dosages. ``firth="always"`` runs Hail's Firth test on every variant."""
    import hail as hl

    cols = {s: [float(design.y[i])] + [float(v) for v in design.covariates[i, 1:]] for i, s in enumerate(design.samples)}
    lit = hl.literal(cols)
    mt = mt.filter_cols(lit.contains(mt.s))
    mt = mt.annotate_cols(_v=lit[mt.s])
    dose = hl.float64(mt.GT.n_alt_alleles())
    separates = _separates(dose, mt._v[0]) if model == "logistic" else hl.missing(hl.tbool)
    mt = mt.annotate_rows(gwas_af=hl.agg.mean(dose) / 2, gwas_n=hl.agg.count(), _sep=separates)
    x = hl.float64(mt.GT.n_alt_alleles())
    passed = ["gwas_af", "gwas_n"] + (["rsid"] if "rsid" in mt.row else [])
    covs = [1.0] + [mt._v[j + 1] for j in range(len(design.covariate_names))]
    if model == "linear":
        ht = hl.linear_regression_rows(y=mt._v[0], x=x, covariates=covs, pass_through=passed)
        stat, se, is_firth, beta, p = ht.t_stat, ht.standard_error, False, ht.beta, ht.p_value
        refit = hl.bool(False)
        status = hl.if_else(hl.is_nan(ht.p_value), "collinear", "ok")
    else:
        test = "firth" if firth == "always" else "wald"
        ht = hl.logistic_regression_rows(
            test=test, y=mt._v[0], x=x, covariates=covs, pass_through=[*passed, "_sep"]
        )
        beta, p, refit = ht.beta, ht.p_value, hl.bool(False)
        if test == "firth":  # Hail's Firth test is a likelihood-ratio test: no standard error
            stat, se, is_firth = ht.chi_sq_stat, hl.missing(hl.tfloat64), True
            status = hl.if_else(ht.fit.converged, "ok", "not_converged")
        else:
            stat, se, is_firth = ht.z_stat, ht.standard_error, False
            fit = ht.fit
            failed = ~fit.converged | fit.exploded | ~hl.is_finite(ht.standard_error) | ~hl.is_finite(ht.beta)
            failed = hl.or_else(failed, True)
            if firth == "fallback":
                refit = ht._sep | failed
                status = hl.if_else(failed, "not_converged", "ok")
            else:  # "no": as plink2 without Firth, a separating variant has no estimate
                status = hl.case().when(ht._sep, "separated").when(failed, "not_converged").default("ok")
                beta, stat, se, p = (hl.or_missing(~ht._sep, e) for e in (beta, stat, se, p))
    rsid = ht.rsid if "rsid" in ht.row else hl.missing(hl.tstr)
    return ht.select(
        contig=ht.locus.contig, position=ht.locus.position, ref=ht.alleles[0], alt=ht.alleles[1], rsid=rsid,
        tested_allele=ht.alleles[1], n=hl.int32(ht.gwas_n), af=ht.gwas_af, beta=beta, se=se, statistic=stat,
        p=p, neg_log10_p=-hl.log10(p), firth=is_firth, status=status, refit=refit,
    )


def hail_results(ht: hl.Table) -> DataFrame:  # noqa: F821
    """:func:`regress_hail`'s rows as a DataFrame with the result columns (``refit`` dropped)."""
    return ht.key_by().select(*RESULT_COLUMNS).to_spark(flatten=False)


def refit_rows(mt: hl.MatrixTable, flagged: hl.Table) -> hl.Table:  # noqa: F821
    """The rows of ``mt`` in ``flagged`` (keyed by locus and alleles) as :func:`regress` reads
    them: contig, position, ref, alt, rsid and the alt-allele dosage per column of ``mt`` (in
    its column order, null for a missing call)."""
    import hail as hl

    mt = mt.semi_join_rows(flagged)
    mt = mt.select_entries(dosage=hl.int32(mt.GT.n_alt_alleles()))
    ht = mt.localize_entries("_e", "_cols").key_by()
    return ht.select(
        contig=ht.locus.contig, position=ht.locus.position, ref=ht.alleles[0], alt=ht.alleles[1],
        rsid=ht.rsid if "rsid" in ht.row else hl.missing(hl.tstr), dosage=ht._e.map(lambda e: e.dosage),
    )


# ------------------------------------------------------------------------------------- summaries


def lambda_gc(p: np.ndarray) -> float:
    """Genomic inflation: median chi-square (1 df) of the p-values over its null median 0.4549."""
    p = p[np.isfinite(p) & (p > 0)]
    if len(p) == 0:
        return float("nan")
    return float(np.median(stats.chi2.isf(p, 1)) / stats.chi2.ppf(0.5, 1))


def plots(results: pd.DataFrame, out_dir: Path, title: str) -> dict[str, Path]:
    """Manhattan and QQ plots (PNG) from (contig, position, neg_log10_p)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    r = results[np.isfinite(results["neg_log10_p"])].copy()
    r["_c"] = r["contig"].str.replace("chr", "", regex=False)
    r["_order"] = pd.to_numeric(r["_c"].replace({"X": "23", "Y": "24", "MT": "25", "M": "25"}), errors="coerce").fillna(99)
    r = r.sort_values(["_order", "_c", "position"])
    fig, ax = plt.subplots(figsize=(11, 4), dpi=110)
    offset, ticks, labels = 0.0, [], []
    for i, (c, grp) in enumerate(r.groupby(["_order", "_c"], sort=False)):
        x = grp["position"].to_numpy(float) + offset
        ax.scatter(x, grp["neg_log10_p"], s=5, color="#1f4e79" if i % 2 == 0 else "#6fa8dc", linewidths=0)
        ticks.append((x.min() + x.max()) / 2)
        labels.append(c[1])
        offset = x.max() + 1
    ax.axhline(-math.log10(5e-8), color="#c0392b", lw=0.8, ls="--", label="5e-8")
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlabel("chromosome")
    ax.set_ylabel("-log10 p")
    ax.set_title(f"Manhattan: {title}")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    manhattan = out_dir / "manhattan.png"
    fig.savefig(manhattan)
    plt.close(fig)

    obs = np.sort(r["neg_log10_p"].to_numpy())[::-1]
    exp = -np.log10((np.arange(1, len(obs) + 1) - 0.5) / max(len(obs), 1))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=110)
    ax.scatter(exp, obs, s=5, color="#1f4e79", linewidths=0)
    top = max(exp.max(initial=1), obs.max(initial=1))
    ax.plot([0, top], [0, top], color="#c0392b", lw=0.8)
    lam = lambda_gc(np.power(10.0, -obs))
    ax.set_xlabel("expected -log10 p")
    ax.set_ylabel("observed -log10 p")
    ax.set_title(f"QQ: {title} (lambda GC {lam:.3f})")
    fig.tight_layout()
    qq = out_dir / "qq.png"
    fig.savefig(qq)
    plt.close(fig)
    return {"manhattan": manhattan, "qq": qq}
