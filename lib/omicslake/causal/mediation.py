"""Causal mediation with a linear mediator model and a linear outcome model (Imai, Keele and
Tingley 2010, the quasi-Bayesian "parametric" method of statsmodels' ``Mediation``).

``mediator ~ 1 + treatment + covariates`` and ``outcome ~ 1 + treatment + mediator + covariates``
are fitted by least squares from sums the executors aggregate (X'X, X'y, y'y: (p+2)^2 numbers per
model, no rows collected). Without a treatment-mediator interaction the natural indirect effect
(ACME) is a*b, the natural direct effect (ADE) is c', the total a*b + c'; their intervals come from
``n_draws`` draws of the coefficients from their asymptotic normal distributions (percentiles), and
the proportion mediated is ACME / total (its interval from the same draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def ols(df: DataFrame, y: str, xs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Least squares of ``y`` on an intercept and ``xs`` from executor-side sums: (coefficients
    [intercept, *xs], their covariance sigma^2 (X'X)^-1, rows). ValueError when X'X is singular."""
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
    return beta, sigma2 * np.linalg.inv(xtx), n


def mediate(
    df: DataFrame,
    treatment: str,
    mediator: str,
    outcome: str,
    covariates: Sequence[str] = (),
    n_draws: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Natural indirect (acme), direct (ade) and total effects of ``treatment`` on ``outcome``
    through ``mediator`` (both linear models, see the module docstring), each with its estimate and
    percentile interval from ``n_draws`` coefficient draws, and the proportion mediated."""
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
