"""Per-feature association: ordinary least squares of each feature's normalised values on a
phenotype with covariates, every feature in parallel on the executors, Benjamini-Hochberg FDR.

The design ``X`` (intercept, phenotype, covariates; one row per analysed sample) is the same for
every feature, so ``(X'X)^-1 X'`` is computed once on the driver (k x n numbers), shipped with the
function, and each batch of features is a matrix product on an executor: ``B = Y A'``, residuals,
``se = sqrt(rss / (n - k) * (X'X)^-1[1, 1])``, a two-sided Student t p-value. A feature with a
missing value among the analysed samples is fitted on its complete samples alone (its own ``X``),
as statsmodels does with ``missing='drop'``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

RESULT = "n int, beta double, se double, t double, p double"


def design(pheno: np.ndarray, covariates: np.ndarray | None = None) -> np.ndarray:
    """The design matrix: a column of ones, the phenotype, then the covariates (n x k)."""
    cols = [np.ones(len(pheno)), np.asarray(pheno, dtype=np.float64)]
    if covariates is not None and covariates.size:
        cols += [np.asarray(c, dtype=np.float64) for c in np.atleast_2d(covariates.T)]
    return np.column_stack(cols)


def _fit_one(y: np.ndarray, x: np.ndarray) -> tuple[int, float | None, float | None, float | None, float | None]:
    from scipy import stats

    n, k = x.shape
    if n <= k or np.linalg.matrix_rank(x) < k:
        return n, None, None, None, None
    xtx_inv = np.linalg.inv(x.T @ x)
    b = xtx_inv @ x.T @ y
    rss = float(((y - x @ b) ** 2).sum())
    se = float(np.sqrt(rss / (n - k) * xtx_inv[1, 1]))
    if se == 0:
        return n, float(b[1]), 0.0, None, None
    tv = float(b[1]) / se
    return n, float(b[1]), se, tv, float(2 * stats.t.sf(abs(tv), n - k))


def ols_rows(x: np.ndarray) -> Any:
    """A function from a pandas Series of value arrays (features; already restricted to the rows of
    ``x``, in its order) to a DataFrame of n, beta, se, t, p: the phenotype's coefficient (column 1
    of ``x``) per feature. Complete features share ``(X'X)^-1 X'``; others are fitted alone."""
    from scipy import stats

    n, k = x.shape
    xtx_inv = np.linalg.inv(x.T @ x)
    a = xtx_inv @ x.T  # k x n
    c11 = xtx_inv[1, 1]

    def fit(values: pd.Series) -> pd.DataFrame:  # noqa: UP037 - pandas_udf reads the hints
        m = len(values)
        out = {"n": np.full(m, n, dtype=np.int32), "beta": np.full(m, np.nan), "se": np.full(m, np.nan)}
        out["t"], out["p"] = np.full(m, np.nan), np.full(m, np.nan)
        if m == 0:
            return pd.DataFrame(out)
        y = np.array([np.asarray(v, dtype=np.float64) for v in values]) if m else np.zeros((0, n))
        complete = ~np.isnan(y).any(axis=1)
        yc = y[complete]
        if yc.size:
            b = yc @ a.T  # m x k
            rss = ((yc - b @ x.T) ** 2).sum(axis=1)
            se = np.sqrt(rss / (n - k) * c11)
            with np.errstate(divide="ignore", invalid="ignore"):
                tv = np.where(se > 0, b[:, 1] / se, np.nan)
            out["beta"][complete] = b[:, 1]
            out["se"][complete] = se
            out["t"][complete] = tv
            out["p"][complete] = 2 * stats.t.sf(np.abs(tv), n - k)
        for i in np.flatnonzero(~complete):
            keep = ~np.isnan(y[i])
            r = _fit_one(y[i][keep], x[keep])
            out["n"][i] = r[0]
            for name, val in zip(("beta", "se", "t", "p"), r[1:], strict=True):
                out[name][i] = np.nan if val is None else val
        return pd.DataFrame(out)

    return fit


def associate(features: DataFrame, positions: list[int], x: np.ndarray, column: str = "values") -> DataFrame:
    """features with a ``result`` struct (n, beta, se, t, p) from OLS of ``column`` at ``positions``
    (the analysed samples, in the row order of ``x``) on the design ``x``; a pandas UDF, so every
    batch of features is fitted on an executor."""
    if len(positions) != x.shape[0]:
        raise ValueError(f"{len(positions)} positions but the design has {x.shape[0]} rows")
    fit = ols_rows(x)
    udf = F.pandas_udf(fit, RESULT)  # type: ignore[call-overload]
    idx = F.lit([int(i) for i in positions]).cast("array<int>")
    picked = F.transform(idx, lambda i: F.element_at(column, i + 1))
    return features.withColumn("_y", picked).withColumn("result", udf(F.col("_y"))).drop("_y")


def bh(df: DataFrame, p: str = "p", name: str = "q") -> DataFrame:
    """Benjamini-Hochberg q-values of column ``p`` over the rows where it is not null (null elsewhere):
    q_(i) = min over j >= i of p_(j) * m / j, capped at 1, with p sorted ascending."""
    m = df.where(F.col(p).isNotNull() & ~F.isnan(p)).count()
    valid = F.col(p).isNotNull() & ~F.isnan(p)
    ranked = df.withColumn("_valid", valid)
    w_desc = Window.partitionBy("_valid").orderBy(F.col(p).desc())
    ranked = ranked.withColumn("_rank", F.lit(m) - F.row_number().over(w_desc) + 1)
    raw = F.col(p) * F.lit(float(m)) / F.col("_rank")
    cum = (
        Window.partitionBy("_valid").orderBy(F.col(p).desc()).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    ranked = ranked.withColumn("_q", F.min(raw).over(cum))
    return ranked.withColumn(name, F.when(F.col("_valid"), F.least(F.col("_q"), F.lit(1.0)))).drop(
        "_valid", "_rank", "_q"
    )
