"""Time-to-event models: MLlib's accelerated failure time model (Weibull AFT) with censoring,
Harrell's concordance index, and Kaplan-Meier curves by predicted risk group (pure functions).

- ``pipeline``: the shared preprocessing (imputation, encoding, assembly, scaling) and
  ``AFTSurvivalRegression`` (label ``time`` > 0 in days, ``event`` 1 = outcome seen, 0 = censored);
  ``log(time) = intercept + x.beta + scale * W``, W standard extreme-value: the same model as
  lifelines' ``WeibullAFTFitter`` (rho = 1 / scale).
- ``concordance``: Harrell's C with lifelines' definition of comparable pairs (i had the event,
  j left later, or at the same time censored). Spark aggregates counts by (time, event, score bin)
  (100,000 equal-width bins of the linear predictor; predictions closer than a bin count as
  ties), the driver sweeps those counts: no patient rows are collected, and it is linear in the
  number of patients.
- ``kaplan_meier``: survival curves per group from per-(group, time) event and exit counts.
- ``risk_cuts`` / ``risk_group``: risk tertiles of the linear predictor (cut on the training split).
"""

from __future__ import annotations

import numpy as np
from pyspark.ml import Pipeline
from pyspark.ml.regression import AFTSurvivalRegression
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.ml.model import FeatureColumns, preprocessing


def pipeline(cols: FeatureColumns) -> Pipeline:
    """An unfitted Pipeline: ``preprocessing(cols)`` then AFTSurvivalRegression on ``time`` (days, > 0)
    censored by ``event`` (1 = outcome seen, 0 = censored), adding predicted_time and its median in
    ``quantiles``."""
    aft = AFTSurvivalRegression(
        featuresCol="features",
        labelCol="time",
        censorCol="event",
        predictionCol="predicted_time",
        quantileProbabilities=[0.5],
        quantilesCol="quantiles",
        maxIter=200,
        tol=1e-9,
    )
    return Pipeline(stages=[*preprocessing(cols), aft])


def linear_predictor() -> Column:
    """log of the predicted time (higher = longer expected survival = lower risk)."""
    return F.log(F.col("predicted_time"))


def risk_cuts(train: DataFrame, score: str = "lp", relative_error: float = 1e-4) -> tuple[float, float]:
    """The tertile cut points (1/3 and 2/3 quantiles) of score on the training split, from Spark's
    approxQuantile (exact at relative_error=0). ValueError when score has no value."""
    cuts = train.approxQuantile(score, [1 / 3, 2 / 3], relative_error)
    if len(cuts) != 2:
        raise ValueError(f"no {score} values to cut into risk groups")
    return float(cuts[0]), float(cuts[1])


def risk_group(cuts: tuple[float, float], score: str = "lp") -> Column:
    """'high', 'medium' or 'low' risk by the tertile cuts of ``risk_cuts``: score is the log of the
    predicted time, so a low score (short predicted time) is high risk. A score on a cut goes to
    the higher-risk group; a null score gets a null group."""
    s = F.col(score)
    return (
        F.when(s.isNull(), F.lit(None).cast("string"))
        .when(s <= cuts[0], "high")
        .when(s <= cuts[1], "medium")
        .otherwise("low")
    )


def concordance(
    df: DataFrame, time: str = "time", event: str = "event", score: str = "lp", bins: int = 100_000
) -> tuple[float | None, int]:
    """(Harrell's C, comparable pairs). score: higher = longer predicted survival."""
    lo_hi = df.agg(F.min(score), F.max(score), F.countDistinct(time)).first()
    assert lo_hi is not None
    if lo_hi[0] is None:
        return None, 0
    lo, hi, n_times = float(lo_hi[0]), float(lo_hi[1]), int(lo_hi[2])
    bins = int(max(1_000, min(bins, 400_000_000 // max(n_times, 1))))  # the sweep is O(times x bins)
    width = (hi - lo) / bins if hi > lo else 1.0
    b = F.least(F.floor((F.col(score) - F.lit(lo)) / F.lit(width)).cast("int"), F.lit(bins - 1))
    rows = (
        df.groupBy(F.col(time).cast("double").alias("t"), F.col(event).cast("int").alias("e"), b.alias("b"))
        .count()
        .collect()
    )
    if not rows:
        return None, 0
    t = np.array([r["t"] for r in rows])
    e = np.array([r["e"] for r in rows], dtype=np.int8)
    bb = np.array([r["b"] for r in rows], dtype=np.int64)
    n = np.array([r["count"] for r in rows], dtype=np.float64)
    pool = np.zeros(bins)
    correct = tied = pairs = 0.0
    for tv in np.unique(t)[::-1]:  # latest exit first; pool = everyone who left after tv
        at = t == tv
        cen, ev = at & (e == 0), at & (e == 1)
        np.add.at(pool, bb[cen], n[cen])  # censored at tv are comparable to events at tv
        if ev.any():
            above = np.concatenate([np.cumsum(pool[::-1])[::-1][1:], [0.0]])  # pool with bin > b
            total = pool.sum()
            correct += float(np.sum(n[ev] * above[bb[ev]]))
            tied += float(np.sum(n[ev] * pool[bb[ev]]))
            pairs += float(np.sum(n[ev]) * total)
        np.add.at(pool, bb[ev], n[ev])
    if pairs == 0:
        return None, 0
    return (correct + 0.5 * tied) / pairs, int(pairs)


def kaplan_meier(
    df: DataFrame, group: str, time: str = "time", event: str = "event"
) -> dict[str, dict[str, np.ndarray]]:
    """{group: {"t": times, "s": survival just after each time, "n": at risk}} from one grouped
    aggregation (groups x distinct times rows)."""
    rows = (
        df.groupBy(F.col(group).cast("string").alias("g"), F.col(time).cast("double").alias("t"))
        .agg(F.sum(F.col(event).cast("int")).alias("d"), F.count(F.lit(1)).alias("m"))
        .collect()
    )
    out: dict[str, dict[str, np.ndarray]] = {}
    for g in sorted({r["g"] for r in rows if r["g"] is not None}):
        part = sorted((r["t"], r["d"], r["m"]) for r in rows if r["g"] == g)
        ts = np.array([p[0] for p in part])
        d = np.array([p[1] for p in part], dtype=float)
        m = np.array([p[2] for p in part], dtype=float)
        at_risk = m[::-1].cumsum()[::-1]  # still in follow-up at t (exits at or after t)
        s = np.cumprod(1.0 - d / at_risk)
        out[g] = {"t": ts, "s": s, "n": at_risk}
    return out
