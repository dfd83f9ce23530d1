"""Causal mediation with a linear mediator model and a linear outcome model (Imai, Keele and
Tingley 2010, the quasi-Bayesian "parametric" method of statsmodels' ``Mediation``).

``mediator ~ 1 + treatment + covariates`` and ``outcome ~ 1 + treatment + mediator + covariates``
are fitted by least squares from sums the executors aggregate (X'X, X'y, y'y: (p+2)^2 numbers per
model, no rows collected). Without a treatment-mediator interaction the natural indirect effect
(ACME) is a*b, the natural direct effect (ADE) is c', the total a*b + c'; their intervals come from
``n_draws`` draws of the coefficients from their asymptotic normal distributions (percentiles), and
the proportion mediated is ACME / total (its interval from the same draws).

A binary mediator and/or a binary outcome take logistic models (``mediator_model`` /
``outcome_model`` 'logistic'; ``logit`` fits them by Newton-Raphson from executor-side sums). The
effects are then on the outcome's mean (risk-difference) scale, as statsmodels' ``Mediation``
defines them: for each coefficient draw, ``Q[m][t] = mean_i E[Y_i(t, M_i(m))]`` over the persons, and
ACME(t) = Q[1][t] - Q[0][t], ADE(t) = Q[t][1] - Q[t][0], their averages over t = 0, 1, the total
effect (the mean of the four) and the proportion mediated ACME / total (its estimate the median over
the draws, as statsmodels). Where statsmodels draws one potential mediator per person and draw, the
expectation over the mediator is taken exactly (a binary mediator: its two values weighted by their
probabilities; a linear one under a logistic outcome: 24-point Gauss-Hermite quadrature over its
normal distribution; a linear one under a linear outcome: its mean), so the draws carry only the
coefficients' uncertainty. The persons stay on the executors: each partition returns its sums of
``Q`` per draw (4 x n_draws numbers).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

MODELS = ("linear", "logistic")


def ols(df: DataFrame, y: str, xs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Least squares of ``y`` on an intercept and ``xs`` from executor-side sums: (coefficients
    [intercept, *xs], their covariance sigma^2 (X'X)^-1, rows). ValueError when X'X is singular."""
    beta, cov, n, _ = _ols(df, y, xs)
    return beta, cov, n


def _ols(df: DataFrame, y: str, xs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int, float]:
    """``ols`` and the residual variance sigma^2 (one aggregation)."""
    cols = [F.lit(1.0), *[F.col(x).cast("double") for x in xs]]
    yc = F.col(y).cast("double")
    k = len(cols)
    aggs = [F.sum(cols[i] * cols[j]).alias(f"xx{i}_{j}") for i in range(k) for j in range(i, k)]
    aggs += [F.sum(cols[i] * yc).alias(f"xy{i}") for i in range(k)]
    aggs += [F.sum(yc * yc).alias("yy"), F.count(F.lit(1)).alias("n")]
    row = df.agg(*aggs).first()
    assert row is not None
    xtx = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            xtx[i, j] = xtx[j, i] = float(row[f"xx{i}_{j}"])
    xty = np.array([float(row[f"xy{i}"]) for i in range(k)])
    n = int(row["n"])
    try:
        beta = np.linalg.solve(xtx, xty)
    except np.linalg.LinAlgError as e:
        raise ValueError(f"least squares of {y}: the design {list(xs)} is singular") from e
    rss = float(row["yy"]) - 2 * float(beta @ xty) + float(beta @ xtx @ beta)
    sigma2 = rss / max(n - k, 1)
    return beta, sigma2 * np.linalg.inv(xtx), n, sigma2


def logit(
    df: DataFrame, y: str, xs: Sequence[str], max_iter: int = 50, tol: float = 1e-8
) -> tuple[np.ndarray, np.ndarray, int]:
    """Logistic regression of ``y`` (0/1) on an intercept and ``xs`` by Newton-Raphson, each step
    one aggregation of X'WX and X'(y - p) on the executors: (coefficients [intercept, *xs], their
    covariance (X'WX)^-1 at the estimate, rows). ValueError naming the model when y is not 0/1, has
    one value only, the design is singular, or the fit does not converge (separation)."""
    cols = [F.lit(1.0), *[F.col(x).cast("double") for x in xs]]
    yc = F.col(y).cast("double")
    k = len(cols)
    beta = np.zeros(k)
    for it in range(max_iter):
        eta = sum((cols[j] * float(beta[j]) for j in range(k)), F.lit(0.0))
        prob = 1 / (1 + F.exp(-eta))
        wt = prob * (1 - prob)
        aggs = [F.sum(wt * cols[i] * cols[j]).alias(f"h{i}_{j}") for i in range(k) for j in range(i, k)]
        aggs += [F.sum((yc - prob) * cols[i]).alias(f"g{i}") for i in range(k)]
        if it == 0:  # the checks ride on the first pass
            aggs += [
                F.count(F.lit(1)).alias("n"),
                F.sum(yc).alias("s"),
                F.sum(F.when(yc.isNull() | ~yc.isin(0.0, 1.0), 1).otherwise(0)).alias("bad"),
            ]
        row = df.agg(*aggs).first()
        assert row is not None
        if it == 0:
            n, ones = int(row["n"]), float(row["s"] or 0.0)
            if row["bad"]:
                raise ValueError(f"logistic model of {y}: {row['bad']} rows where {y} is not 0/1")
            if ones in (0.0, float(n)):
                raise ValueError(f"logistic model of {y}: every one of the {n} rows has {y} = {int(ones > 0)}")
        h = np.zeros((k, k))
        for i in range(k):
            for j in range(i, k):
                h[i, j] = h[j, i] = float(row[f"h{i}_{j}"])
        g = np.array([float(row[f"g{i}"]) for i in range(k)])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError as e:
            raise ValueError(f"logistic model of {y}: the design {list(xs)} is singular") from e
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            return beta, np.linalg.inv(h), n
        if np.max(np.abs(beta)) > 30:
            break
    raise ValueError(
        f"logistic model of {y} on {list(xs)} did not converge (coefficients {np.round(beta, 2).tolist()}): "
        "a covariate separates the outcome; drop it or use a linear model"
    )


def _fit(df: DataFrame, kind: str, y: str, xs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int, float]:
    """(coefficients, covariance, rows, residual SD: linear only, else 0)."""
    if kind == "logistic":
        b, cov, n = logit(df, y, xs)
        return b, cov, n, 0.0
    b, cov, n, sigma2 = _ols(df, y, xs)
    return b, cov, n, float(np.sqrt(sigma2))


GH_NODES, GH_WEIGHTS = np.polynomial.hermite.hermgauss(24)


def _expit(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1 + np.tanh(0.5 * x)))


def _partition_q(
    pdfs: Iterator[pd.DataFrame],
    a: np.ndarray,
    b: np.ndarray,
    m_kind: str,
    y_kind: str,
    sigma: float,
) -> Iterator[pd.DataFrame]:
    """Sums over a partition's rows of E[Y(t, M(m))] per draw: one row, q{m}{t} arrays of n_draws.
    Rows are [1, covariates]; a: (draws, 2 + p) mediator coefficients [1, t, covs], b: (draws,
    3 + p) outcome coefficients [1, t, m, covs]."""
    draws = a.shape[0]
    q = np.zeros((2, 2, draws))
    nodes = np.sqrt(2.0) * GH_NODES
    weights = GH_WEIGHTS / np.sqrt(np.pi)
    per = 1 if (m_kind == "linear" and y_kind == "logistic") else 0
    chunk = max(1, 4_000_000 // (draws * (len(nodes) if per else 2)))
    for pdf in pdfs:
        x_all = pdf.to_numpy(dtype=float)[:, 1:]  # the covariates (the first column is a constant)
        for r0 in range(0, len(x_all), chunk):
            x = x_all[r0 : r0 + chunk]
            ma = x @ a[:, 2:].T  # (rows, draws): the covariates' part of the mediator model
            yb = x @ b[:, 3:].T
            for m in (0, 1):
                mu_m = a[:, 0] + a[:, 1] * m + ma  # the mediator model's linear predictor under treatment m
                for t in (0, 1):
                    base = b[:, 0] + b[:, 1] * t + yb  # the outcome's, without the mediator term
                    if m_kind == "logistic":
                        pm = _expit(mu_m)
                        y1, y0 = base + b[:, 2], base
                        if y_kind == "logistic":
                            y1, y0 = _expit(y1), _expit(y0)
                        ey = pm * y1 + (1 - pm) * y0
                    elif y_kind == "linear":
                        ey = base + b[:, 2] * mu_m
                    else:
                        ey = np.zeros_like(base)
                        for z, w in zip(nodes, weights, strict=True):
                            ey += w * _expit(base + b[:, 2] * (mu_m + sigma * z))
                    q[m, t] += ey.sum(axis=0)
    yield pd.DataFrame([{f"q{m}{t}": q[m, t].tolist() for m in (0, 1) for t in (0, 1)}])


def mediate(
    df: DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    covariates: Sequence[str] = (),
    n_draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    mediator_model: str = "linear",
    outcome_model: str = "linear",
) -> dict[str, Any]:
    """Natural indirect (acme), direct (ade) and total effects of ``treatment`` (0/1) on ``outcome``
    through ``mediator`` (linear or logistic models, see the module docstring), each with its
    estimate and percentile interval from ``n_draws`` coefficient draws, and the proportion
    mediated. ValueError for an unknown model or a model that cannot be fitted."""
    for what, kind in (("mediator_model", mediator_model), ("outcome_model", outcome_model)):
        if kind not in MODELS:
            raise ValueError(f"mediation: {what} must be one of {MODELS}, not {kind!r}")
    if mediator_model != "linear" or outcome_model != "linear":
        return _mediate_glm(
            df, treatment, mediator, outcome, covariates, n_draws, seed, level, mediator_model, outcome_model
        )
    a_beta, a_cov, n = ols(df, mediator, [treatment, *covariates])
    b_beta, b_cov, _ = ols(df, outcome, [treatment, mediator, *covariates])
    rng = np.random.default_rng(seed)
    a_draw = rng.multivariate_normal(a_beta, a_cov, size=n_draws)[:, 1]
    b_draws = rng.multivariate_normal(b_beta, b_cov, size=n_draws)
    acme, ade = a_draw * b_draws[:, 2], b_draws[:, 1]
    total = acme + ade
    prop = acme / total
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def summ(x: np.ndarray) -> dict[str, float]:
        lo, hi = np.percentile(x, q)
        return {"estimate": float(np.mean(x)), "lower": float(lo), "upper": float(hi)}

    return {
        "acme": summ(acme),
        "ade": summ(ade),
        "total": summ(total),
        "prop_mediated": summ(prop),
        "a": float(a_beta[1]),
        "b": float(b_beta[2]),
        "persons": n,
        "draws": n_draws,
    }


def _mediate_glm(
    df: DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    covariates: Sequence[str],
    n_draws: int,
    seed: int,
    level: float,
    m_kind: str,
    y_kind: str,
) -> dict[str, Any]:
    """``mediate`` with a logistic mediator and/or outcome model (the module docstring)."""
    a_beta, a_cov, n, sigma = _fit(df, m_kind, mediator, [treatment, *covariates])
    b_beta, b_cov, _, _ = _fit(df, y_kind, outcome, [treatment, mediator, *covariates])
    rng = np.random.default_rng(seed)
    a = rng.multivariate_normal(a_beta, a_cov, size=n_draws)
    b = rng.multivariate_normal(b_beta, b_cov, size=n_draws)
    schema = ", ".join(f"q{m}{t} array<double>" for m in (0, 1) for t in (0, 1))

    def fn(it: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return _partition_q(it, a, b, m_kind, y_kind, sigma)

    cols = [F.lit(1.0).alias("_one"), *[F.col(c).cast("double").alias(f"_c{j}") for j, c in enumerate(covariates)]]
    rows = df.select(*cols).mapInPandas(fn, schema).collect()
    q = np.zeros((2, 2, n_draws))
    for r in rows:
        for m in (0, 1):
            for t in (0, 1):
                q[m, t] += np.asarray(r[f"q{m}{t}"], dtype=float)
    q /= n
    acme = {t: q[1, t] - q[0, t] for t in (0, 1)}
    ade = {t: q[t, 1] - q[t, 0] for t in (0, 1)}
    total = (acme[0] + acme[1] + ade[0] + ade[1]) / 2
    acme_avg, ade_avg = (acme[0] + acme[1]) / 2, (ade[0] + ade[1]) / 2
    prop = acme_avg / total
    qs = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def summ(x: np.ndarray, centre: Any = np.mean) -> dict[str, float]:
        lo, hi = np.percentile(x, qs)
        return {"estimate": float(centre(x)), "lower": float(lo), "upper": float(hi)}

    return {
        "acme": summ(acme_avg),
        "ade": summ(ade_avg),
        "total": summ(total),
        "prop_mediated": summ(prop, np.median),
        "acme_control": summ(acme[0]),
        "acme_treated": summ(acme[1]),
        "ade_control": summ(ade[0]),
        "ade_treated": summ(ade[1]),
        "a": float(a_beta[1]),
        "b": float(b_beta[2]),
        "mediator_model": m_kind,
        "outcome_model": y_kind,
        "persons": n,
        "draws": n_draws,
    }
