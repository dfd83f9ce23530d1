"""causal.mediation against statsmodels' Mediation (parametric) on the same rows: OLS mediator and
outcome models on seeded data with a planted indirect effect a*b = 0.5 * 0.4 and direct effect 0.3;
logistic models on hand-made rows and on the generator's planted mediator (synth.exposure)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from statsmodels.stats.mediation import Mediation

from omicslake.causal import mediation


def test_linear_mediation_against_statsmodels(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=n)
    t = rng.binomial(1, 1 / (1 + np.exp(-0.5 * x))).astype(float)
    m = 0.5 * t + 0.3 * x + rng.normal(size=n)
    y = 0.3 * t + 0.4 * m + 0.2 * x + rng.normal(size=n)
    data = pd.DataFrame({"t": t, "m": m, "y": y, "x": x})
    got = mediation.mediate(spark.createDataFrame(data), "t", "m", "y", ["x"], n_draws=4000, seed=1)

    # array models (columns [1, t, m, x] and [1, t, x]): the same fit and draws as formulas "y ~ t + m + x"
    # and "m ~ t + x", but statsmodels then sets t and m in place instead of re-running patsy per draw
    # (385 s -> a few s on a busy machine)
    one = np.ones(n)
    out_model = sm.OLS(y, np.column_stack([one, t, m, x]))
    med_model = sm.OLS(m, np.column_stack([one, t, x]))
    np.random.seed(2)
    ref = Mediation(out_model, med_model, (1, 1), 2).fit(method="parametric", n_rep=1000).summary()
    acme, ade = ref.loc["ACME (average)"], ref.loc["ADE (average)"]
    total, prop = ref.loc["Total effect"], ref.loc["Prop. mediated (average)"]
    # Monte-Carlo error of statsmodels' 1,000 draws: sd of the ACME draws (~0.02) / sqrt(1000) ~ 0.0006
    # for the means (0.004 is ~6 of those); the bounds are percentiles of 1,000 draws (noisier)
    pairs = {
        "acme": (got["acme"], acme),
        "ade": (got["ade"], ade),
        "total": (got["total"], total),
        "prop": (got["prop_mediated"], prop),
    }
    for name, (ours, theirs) in pairs.items():
        d = [
            abs(ours[k] - theirs[t])
            for k, t in (("estimate", "Estimate"), ("lower", "Lower CI bound"), ("upper", "Upper CI bound"))
        ]
        print(
            f"[mediation] {name}: ours {ours['estimate']:.4f} statsmodels {theirs['Estimate']:.4f}; |d| est/lo/hi {d}"
        )
        assert d[0] < (0.004 if name != "prop" else 0.01), name
        assert max(d[1:]) < 0.01, name
    # the planted effects lie in the intervals
    assert got["acme"]["lower"] < 0.2 < got["acme"]["upper"]
    assert got["ade"]["lower"] < 0.3 < got["ade"]["upper"]
    assert got["prop_mediated"]["lower"] < 0.4 < got["prop_mediated"]["upper"]


def _expit(x: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-x)))


@pytest.mark.parametrize(
    ("m_kind", "y_kind"),
    [
        ("logistic", "logistic"),
        # statsmodels' draws cost ~0.1 s each on a busy machine: the quadrature path in the slow set
        pytest.param("linear", "logistic", marks=pytest.mark.slow),
    ],
)
def test_binary_mediation_against_statsmodels(spark: SparkSession, m_kind: str, y_kind: str) -> None:
    """A binary outcome with a binary mediator (hand-made) and with a linear one (the generator's
    planted LDL mediator and ACS outcome, synth.exposure, on 2,000 people), logistic models: acme, ade, total
    and proportion mediated (estimates and 95 % bounds) agree with statsmodels' Mediation
    (GLM Binomial / OLS, parametric, 300 draws) within Monte-Carlo error (4 of its SEs, from
    statsmodels' own draws); the effects are far from 0, so agreement is not the trivial kind."""
    if m_kind == "logistic":
        rng = np.random.default_rng(11)
        n = 2000
        x = rng.normal(size=n)
        t = rng.binomial(1, _expit(0.5 * x)).astype(float)
        m = rng.binomial(1, _expit(-0.5 + 1.2 * t + 0.5 * x)).astype(float)
        y = rng.binomial(1, _expit(-1.0 + 0.5 * t + 1.0 * m + 0.3 * x)).astype(float)
        covs = ["x"]
        data = pd.DataFrame({"t": t, "m": m, "y": y, "x": x})
        sdf = spark.createDataFrame(data).cache()
    else:  # the generator's planted mediator (LDL at 90 days) and mediated outcome (ACS within a year)
        from omicslake.synth import exposure, people

        sim = exposure.simulate(people.patients_base(spark, 2000, 7, 2), 7)
        covs = ["age", "bmi", "hba1c"]
        sdf = sim.select(
            F.col("treated").cast("double").alias("t"),
            F.col(exposure.MEDIATOR_COLUMN).alias("m"),
            ((F.col("mediated_event") == 1) & (F.col("mediated_days") <= exposure.MEDIATED["window"]))
            .cast("double")
            .alias("y"),
            *covs,
        ).cache()
        data = sdf.toPandas()
        t, m, y = (data[c].to_numpy() for c in ("t", "m", "y"))
        n = len(data)
    xs = [data[c].to_numpy() for c in covs]
    start = time.perf_counter()
    got = mediation.mediate(
        sdf,
        "t",
        "m",
        "y",
        covs,
        n_draws=4000,
        seed=3,
        mediator_model=m_kind,
        outcome_model=y_kind,
    )
    took = time.perf_counter() - start
    one = np.ones(n)
    out_model = sm.GLM(y, np.column_stack([one, t, m, *xs]), family=sm.families.Binomial())
    med_exog = np.column_stack([one, t, *xs])
    med_model = sm.GLM(m, med_exog, family=sm.families.Binomial()) if m_kind == "logistic" else sm.OLS(m, med_exog)
    np.random.seed(4)
    reps = 300
    start = time.perf_counter()
    fitted = Mediation(out_model, med_model, (1, 1), 2).fit(method="parametric", n_rep=reps)
    print(f"[mediation {m_kind}/{y_kind}] statsmodels {time.perf_counter() - start:.1f} s, ours {took:.1f} s")
    ref = fitted.summary()
    draws = {
        "acme": fitted.ACME_avg,
        "ade": fitted.ADE_avg,
        "total": fitted.total_effect,
        "prop_mediated": fitted.prop_med_avg,
    }
    rows = {
        "acme": "ACME (average)",
        "ade": "ADE (average)",
        "total": "Total effect",
        "prop_mediated": "Prop. mediated (average)",
    }
    for name, row in rows.items():
        sd = float(np.std(draws[name]))
        # MC SE of a mean of statsmodels' draws, of a 2.5 % / 97.5 % percentile (normal approximation;
        # ours, from 4,000 draws, add a quarter of that variance)
        se_mean, se_q = sd / np.sqrt(reps), sd * np.sqrt(0.025 * 0.975 / reps) / 0.0584
        ours, theirs = got[name], ref.loc[row]
        d = [
            abs(ours[k] - theirs[c])
            for k, c in (("estimate", "Estimate"), ("lower", "Lower CI bound"), ("upper", "Upper CI bound"))
        ]
        print(
            f"[mediation {m_kind}/{y_kind}] {name}: ours {ours} statsmodels {theirs['Estimate']:.4f} "
            f"({theirs['Lower CI bound']:.4f}, {theirs['Upper CI bound']:.4f}); |d| {np.round(d, 5).tolist()}, "
            f"MC SE mean {se_mean:.5f} bound {se_q:.5f}"
        )
        assert d[0] < 4 * se_mean * (1.5 if name == "prop_mediated" else 1.0), name  # a median: ~1.25 x a mean's SE
        assert max(d[1:]) < 4 * se_q, name
    # planted: both effects clearly there (either sign; the generator's direct effect, about -0.045 on
    # 2,000 people, has a 95 % half-width near 0.04, so its bar is that the interval excludes 0)
    floors = (("acme", 0.02), ("ade", 0.01 if m_kind == "logistic" else 0.0))
    for name, floor in floors:
        lo, hi = got[name]["lower"], got[name]["upper"]
        assert lo * hi > 0 and min(abs(lo), abs(hi)) > floor, name
    with pytest.raises(ValueError, match="mediator_model must be one of"):
        mediation.mediate(sdf, "t", "m", "y", mediator_model="probit")
