"""Descriptive epidemiology and simple outcome models on Spark DataFrames (one row per person).

- ``incidence``: events, person-years and the rate per 1,000 person-years with the exact
  (Garwood) Poisson interval ``chi2(a/2, 2k)/2``, ``chi2(1-a/2, 2k+2)/2`` over person-years,
  overall or by any grouping columns (one Spark aggregation; the driver gets one row per group).
- ``kaplan_meier_by_arm`` / ``at_risk``: Kaplan-Meier curves per arm (``ml.survival``) and the
  numbers at risk at chosen times.
- ``poisson`` / ``logistic``: MLlib GeneralizedLinearRegression (IRLS) outcome models: Poisson
  with log person-time offset (rate ratios) and binomial with logit link (odds ratios), with
  Wald standard errors and 95 % intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.regression import GeneralizedLinearRegression
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import stats

from omicslake.ml import survival as S

DAYS_PER_YEAR = 365.25


def exact_poisson_ci(events: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) confidence limits of a Poisson count."""
    a = 1 - level
    lo = 0.0 if events == 0 else float(stats.chi2.ppf(a / 2, 2 * events) / 2)
    hi = float(stats.chi2.ppf(1 - a / 2, 2 * events + 2) / 2)
    return lo, hi


def incidence(
    df: DataFrame,
    event: str,
    time_days: str,
    by: Sequence[str] = (),
    per: float = 1000.0,
    level: float = 0.95,
) -> list[dict[str, object]]:
    """Incidence per ``per`` person-years: one dict per group of ``by`` (or one overall) with the
    group values, persons, events, person_years, rate, rate_lower, rate_upper (exact Poisson).
    ``time_days`` is each person's follow-up in days, ``event`` 0/1."""
    rows = (
        df.groupBy(*by)
        .agg(
            F.count(F.lit(1)).alias("persons"),
            F.sum(F.col(event).cast("long")).alias("events"),
            F.sum(F.col(time_days).cast("double")).alias("days"),
        )
        .collect()
    )
    out: list[dict[str, object]] = []
    for r in sorted(rows, key=lambda r: tuple(str(r[b]) for b in by)):
        k = int(r["events"] or 0)
        py = float(r["days"] or 0.0) / DAYS_PER_YEAR
        lo, hi = exact_poisson_ci(k, level)
        scale = per / py if py > 0 else float("nan")
        out.append(
            {
                **{b: r[b] for b in by},
                "persons": int(r["persons"]),
                "events": k,
                "person_years": py,
                "rate": k * scale,
                "rate_lower": lo * scale,
                "rate_upper": hi * scale,
            }
        )
    return out


def kaplan_meier_by_arm(
    df: DataFrame, arm: str, time: str = "time", event: str = "event"
) -> dict[str, dict[str, np.ndarray]]:
    """Kaplan-Meier curves per value of ``arm``: {arm: {"t", "s", "n" (at risk)}}."""
    return S.kaplan_meier(df, arm, time, event)


def at_risk(curve: dict[str, np.ndarray], times: Sequence[float]) -> list[int]:
    """Numbers at risk of a Kaplan-Meier curve at each of ``times`` (still followed at t)."""
    t, n = curve["t"], curve["n"]
    out = []
    for x in times:
        i = int(np.searchsorted(t, x, side="left"))
        out.append(int(n[i]) if i < len(t) else 0)
    return out


def _glm(
    df: DataFrame, label: str, covariates: Sequence[str], family: str, link: str, offset: str | None, weight: str | None
) -> list[dict[str, float | str]]:
    data = VectorAssembler(inputCols=list(covariates), outputCol="_glm_x", handleInvalid="error").transform(
        df.withColumn("_glm_y", F.col(label).cast("double"))
    )
    kw: dict[str, str] = {}
    if offset:
        data = data.withColumn("_glm_off", F.col(offset).cast("double"))
        kw["offsetCol"] = "_glm_off"
    if weight:
        kw["weightCol"] = weight
    glr = GeneralizedLinearRegression(
        family=family, link=link, featuresCol="_glm_x", labelCol="_glm_y", maxIter=100, tol=1e-10, regParam=0.0, **kw
    )
    model = glr.fit(data)
    summ = model.summary
    se = list(summ.coefficientStandardErrors)  # covariates then intercept
    coefs = [*model.coefficients.toArray(), model.intercept]
    z = stats.norm.ppf(0.975)
    out: list[dict[str, float | str]] = []
    for name, b, s in zip([*covariates, "intercept"], coefs, se, strict=True):
        out.append(
            {
                "term": name,
                "coef": float(b),
                "se": float(s),
                "ratio": math.exp(b),
                "ratio_lower": math.exp(b - z * s),
                "ratio_upper": math.exp(b + z * s),
                "p": float(2 * stats.norm.sf(abs(b / s))) if s > 0 else float("nan"),
            }
        )
    return out


def poisson(
    df: DataFrame, event: str, covariates: Sequence[str], person_time: str, weight: str | None = None
) -> list[dict[str, float | str]]:
    """Poisson regression of the count ``event`` on ``covariates`` with offset log(``person_time``)
    (> 0): one dict per term (covariates then intercept) with coef, se, ratio (the incidence rate
    ratio) and its 95 % CI, p."""
    data = df.withColumn("_log_pt", F.log(F.col(person_time).cast("double")))
    return _glm(data, event, covariates, "poisson", "log", "_log_pt", weight)


def logistic(
    df: DataFrame, event: str, covariates: Sequence[str], weight: str | None = None
) -> list[dict[str, float | str]]:
    """Logistic regression of ``event`` (0/1) on ``covariates``: one dict per term (covariates then
    intercept) with coef, se, ratio (the odds ratio) and its 95 % CI, p."""
    return _glm(df, event, covariates, "binomial", "logit", None, weight)
