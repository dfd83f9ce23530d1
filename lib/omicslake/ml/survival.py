"""Time-to-event models: a penalised Cox model (``causal.cox`` on the shared preprocessing's
vector) or MLlib's accelerated failure time model (Weibull AFT) with censoring, Harrell's
concordance index, Kaplan-Meier curves by predicted risk group and calibration at a horizon
(pure functions).

- ``CoxPredictor``: the Cox model as the last stage of a Spark ML PipelineModel (saved and loaded
  with it, so MLflow logs and serves it like any Spark model): ``lp = features . beta``,
  the predicted risk by the horizon ``1 - exp(-H0(h) exp(lp))`` and the predicted median time from
  the Breslow baseline cumulative hazard ``H0`` of the training split (``breslow``).
- ``aft_risk``: the AFT model's risk by the horizon, ``1 - exp(-exp((log h - log predicted_time) / scale))``.
- ``calibration``: predicted against Kaplan-Meier observed risk at the horizon by risk decile.

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

from typing import Any

import numpy as np
import pandas as pd
from pyspark import keyword_only
from pyspark.ml import Pipeline, Transformer
from pyspark.ml.functions import vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.regression import AFTSurvivalRegression
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from scipy import stats

from omicslake.frames import approx_quantiles
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
    cuts = approx_quantiles(train, [score], [1 / 3, 2 / 3], relative_error)[0]
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
        out[g] = {"t": ts, "s": s, "n": at_risk, "d": d}
    return out


def km_at(curve: dict[str, np.ndarray], horizon: float) -> tuple[float, float]:
    """(Kaplan-Meier survival at ``horizon``, its Greenwood standard error) from a ``kaplan_meier``
    curve: the step at the last time <= horizon (1 and 0 before the first)."""
    keep = curve["t"] <= horizon
    if not keep.any():
        return 1.0, 0.0
    s = float(curve["s"][keep][-1])
    n, d = curve["n"][keep], curve["d"][keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n > d, d / (n * (n - d)), 0.0)
    return s, float(s * np.sqrt(terms.sum()))


def breslow(
    train: DataFrame, time: str = "time", event: str = "event", lp: str = "lp"
) -> tuple[np.ndarray, np.ndarray]:
    """(event times, Breslow baseline cumulative hazard just after each) of a Cox model from the
    training rows' linear predictors: ``H0(t) = sum_{t_i <= t} d_i / sum_{j: t_j >= t_i} exp(lp_j)``
    (lifelines' ``baseline_cumulative_hazard_`` at lp relative to the same centring); one grouped
    aggregation (a row per distinct time) reaches the driver."""
    rows = (
        train.groupBy(F.col(time).cast("double").alias("t"))
        .agg(F.sum(F.col(event).cast("double")).alias("d"), F.sum(F.exp(F.col(lp))).alias("r"))
        .collect()
    )
    part = sorted((float(r["t"]), float(r["d"]), float(r["r"])) for r in rows)
    t = np.array([p[0] for p in part])
    d = np.array([p[1] for p in part])
    risk = np.array([p[2] for p in part])[::-1].cumsum()[::-1]  # exits at or after t
    ev = d > 0
    return t[ev], np.cumsum(d[ev] / risk[ev])


class CoxPredictor(Transformer, DefaultParamsReadable["CoxPredictor"], DefaultParamsWritable):
    """The last stage of the survival job's Cox PipelineModel: from ``featuresCol`` (the shared
    preprocessing's vector) adds ``lp`` (the linear predictor ``features . coefficients``, higher =
    higher risk), ``predicted_risk`` (``1 - exp(-H0(horizon) exp(lp))``) and
    ``predicted_median_days`` (the first event time where ``H0 exp(lp) >= log 2``; null when the
    predicted survival stays above 1/2). Parameters are plain lists, so Spark ML saves and loads
    it with the pipeline."""

    featuresCol: Param[str] = Param(
        Params._dummy(), "featuresCol", "features vector column", typeConverter=TypeConverters.toString
    )
    coefficients: Param[list[float]] = Param(
        Params._dummy(), "coefficients", "log hazard ratios per vector slot", typeConverter=TypeConverters.toListFloat
    )
    times: Param[list[float]] = Param(
        Params._dummy(), "times", "event times of the baseline hazard", typeConverter=TypeConverters.toListFloat
    )
    cumhaz: Param[list[float]] = Param(
        Params._dummy(), "cumhaz", "baseline cumulative hazard at times", typeConverter=TypeConverters.toListFloat
    )
    horizon: Param[float] = Param(
        Params._dummy(), "horizon", "time of predicted_risk (days)", typeConverter=TypeConverters.toFloat
    )

    @keyword_only
    def __init__(
        self,
        *,
        featuresCol: str = "features",
        coefficients: list[float] | None = None,
        times: list[float] | None = None,
        cumhaz: list[float] | None = None,
        horizon: float = 365.0,
    ) -> None:
        super().__init__()
        self._setDefault(featuresCol="features", coefficients=[], times=[], cumhaz=[], horizon=365.0)
        self._set(**self._input_kwargs)

    def baseline_at(self, horizon: float) -> float:
        """H0 at ``horizon`` (0 before the first event time)."""
        t, h = np.asarray(self.getOrDefault(self.times)), np.asarray(self.getOrDefault(self.cumhaz))
        k = int(np.searchsorted(t, horizon, side="right"))
        return float(h[k - 1]) if k else 0.0

    def _transform(self, dataset: DataFrame) -> DataFrame:
        beta = [float(b) for b in self.getOrDefault(self.coefficients)]
        x = vector_to_array(F.col(self.getOrDefault(self.featuresCol)))
        lp = F.aggregate(
            F.zip_with(x, F.array(*[F.lit(b) for b in beta]), lambda a, b: a * b), F.lit(0.0), lambda acc, v: acc + v
        )
        h0 = self.baseline_at(float(self.getOrDefault(self.horizon)))
        t = np.asarray(self.getOrDefault(self.times), dtype=float)
        h = np.asarray(self.getOrDefault(self.cumhaz), dtype=float)

        @F.pandas_udf("double")  # type: ignore[call-overload]
        def median(eta: pd.Series) -> pd.Series:
            k = np.searchsorted(h, np.log(2.0) * np.exp(-eta.to_numpy(dtype=float)), side="left")
            out = np.where(k < len(t), t[np.minimum(k, len(t) - 1)] if len(t) else np.nan, np.nan)
            return pd.Series(out)

        return (
            dataset.withColumn("lp", lp)
            .withColumn("predicted_risk", 1.0 - F.exp(-F.lit(h0) * F.exp(F.col("lp"))))
            .withColumn("predicted_median_days", median(F.col("lp")))
        )


def aft_risk(horizon: float, scale: float, predicted_time: str = "predicted_time") -> Column:
    """The Weibull AFT model's probability of the event by ``horizon``: ``1 - S(h)``,
    ``S(h) = exp(-exp((log h - log predicted_time) / scale))`` (MLlib's prediction is exp of the
    location)."""
    z = (F.lit(float(np.log(horizon))) - F.log(F.col(predicted_time))) / F.lit(float(scale))
    return 1.0 - F.exp(-F.exp(z))


def calibration(
    df: DataFrame,
    horizon: float,
    risk: str = "predicted_risk",
    time: str = "time",
    event: str = "event",
    groups: int = 10,
) -> list[dict[str, Any]]:
    """Calibration at ``horizon`` by risk group (deciles of ``risk`` on df, cut by approxQuantile;
    equal cuts merge groups): per group n, events by the horizon, the mean predicted risk and the
    Kaplan-Meier observed risk ``1 - S(h)`` with a 95 % Greenwood CI (clipped to [0, 1])."""
    cuts = sorted(set(approx_quantiles(df, [risk], [i / groups for i in range(1, groups)], 1e-4)[0]))
    g = sum(((F.col(risk) > c).cast("int") for c in cuts), F.lit(1))
    framed = df.withColumn("_g", g)
    agg = {
        int(r["_g"]): r
        for r in framed.groupBy("_g")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.avg(risk).alias("predicted"),
            F.sum(F.when(F.col(time) <= horizon, F.col(event).cast("int")).otherwise(0)).alias("events"),
        )
        .collect()
    }
    km = kaplan_meier(framed, "_g", time, event)
    z = float(stats.norm.ppf(0.975))
    out = []
    for k in sorted(agg):
        s, se = km_at(km[str(k)], horizon)
        out.append(
            {
                "group": k,
                "n": int(agg[k]["n"]),
                "events": int(agg[k]["events"]),
                "predicted": float(agg[k]["predicted"]),
                "observed": 1.0 - s,
                "observed_lower": max(0.0, 1.0 - s - z * se),
                "observed_upper": min(1.0, 1.0 - s + z * se),
            }
        )
    return out
