"""causal.mediation against statsmodels' Mediation (parametric, OLS mediator and outcome models) on
seeded data with a planted indirect effect a*b = 0.5 * 0.4 and direct effect 0.3."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pyspark.sql import SparkSession
from statsmodels.stats.mediation import Mediation

from omicslake.causal import mediation


@pytest.mark.slow  # statsmodels' 1,000 parametric draws take a minute or more on a busy machine
def test_linear_mediation_against_statsmodels(spark: SparkSession) -> None:
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=n)
    t = rng.binomial(1, 1 / (1 + np.exp(-0.5 * x))).astype(float)
    m = 0.5 * t + 0.3 * x + rng.normal(size=n)
    y = 0.3 * t + 0.4 * m + 0.2 * x + rng.normal(size=n)
    data = pd.DataFrame({"t": t, "m": m, "y": y, "x": x})
    got = mediation.mediate(spark.createDataFrame(data), "t", "m", "y", ["x"], n_draws=4000, seed=1)

    out_model = sm.OLS.from_formula("y ~ t + m + x", data)
    med_model = sm.OLS.from_formula("m ~ t + x", data)
    np.random.seed(2)
    ref = Mediation(out_model, med_model, "t", "m").fit(method="parametric", n_rep=1000).summary()
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
