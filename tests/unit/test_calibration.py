"""Recalibration and reasons (omicslake.ml.risk) against statsmodels and scikit-learn on
simulated data with a known truth: Platt's two numbers, calibration-in-the-large with an
offset, the calibration slope, Wilson intervals, isotonic regression, and the logistic model's
contributions against MLlib's own probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from omicslake.ml import risk as R


def _sim(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    """A miscalibrated score: the true logit is 0.7 * logit(p) - 1.5."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    y = rng.binomial(1, R.sigmoid(0.7 * R.logit(p) - 1.5))
    return pd.DataFrame({"p": p, "label": y.astype(float)})


def test_platt_and_calibration_metrics_equal_statsmodels(spark: SparkSession) -> None:
    import statsmodels.api as sm
    from statsmodels.stats.proportion import proportion_confint

    pdf = _sim()
    df = spark.createDataFrame(pdf)
    cal = R.fit_calibration(df, "platt")
    lp = R.logit(pdf["p"].to_numpy())
    glm = sm.GLM(pdf["label"], sm.add_constant(lp), family=sm.families.Binomial()).fit()
    assert cal.a == pytest.approx(glm.params.iloc[0], abs=1e-6) and cal.b == pytest.approx(glm.params.iloc[1], abs=1e-6)
    assert cal.n == len(pdf)
    m = R.calibration_metrics(df)
    citl = sm.GLM(pdf["label"], np.ones((len(pdf), 1)), family=sm.families.Binomial(), offset=lp).fit()
    assert m["intercept"] == pytest.approx(citl.params.iloc[0], abs=1e-8)
    assert m["slope"] == pytest.approx(glm.params.iloc[1], abs=1e-6)
    assert m["brier"] == pytest.approx(float(np.mean((pdf["p"] - pdf["label"]) ** 2)), abs=1e-12)
    assert sum(b["n"] for b in m["curve"]) == len(pdf) and len(m["curve"]) == 10
    for b in m["curve"]:
        lo, hi = proportion_confint(round(b["observed"] * b["n"]), b["n"], method="wilson")
        assert (b["lo"], b["hi"]) == pytest.approx((lo, hi), abs=1e-12)
    # after recalibration the same data is calibrated: intercept 0, slope 1 (in-sample, exactly)
    pdf["r"] = cal.apply(pdf["p"].to_numpy())
    after = R.calibration_metrics(spark.createDataFrame(pdf), p="r")
    assert after["intercept"] == pytest.approx(0, abs=1e-6) and after["slope"] == pytest.approx(1, abs=1e-6)
    # the Spark column and numpy apply the same map
    got = spark.createDataFrame(pdf).select(cal.column(R.F.col("p")).alias("r")).toPandas()["r"].to_numpy()
    assert np.max(np.abs(got - pdf["r"].to_numpy())) < 1e-12


def test_separated_outcomes_give_no_platt_map_and_no_slope(
    spark: SparkSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A split whose every case scores above every control has no maximum-likelihood Platt map: the
    output is kept (method none) and the slope is not reported, instead of the huge coefficients an
    iterative fit stops at."""
    pdf = pd.DataFrame({"p": [0.1, 0.2, 0.3, 0.35, 0.6, 0.9], "label": [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]})
    df = spark.createDataFrame(pdf)
    with caplog.at_level("WARNING", logger="omicslake.ml.risk"):
        cal = R.fit_calibration(df, "platt")
        m = R.calibration_metrics(df)
    assert cal.method == "none" and cal.n == 6
    assert np.array_equal(cal.apply(pdf["p"].to_numpy()), pdf["p"].to_numpy())
    assert m["slope"] is None and m["n"] == 6
    # calibration-in-the-large has its maximum all the same: statsmodels' offset-only GLM
    import statsmodels.api as sm

    lp = R.logit(pdf["p"].to_numpy())
    citl = sm.GLM(pdf["label"], np.ones((6, 1)), family=sm.families.Binomial(), offset=lp).fit()
    assert m["intercept"] == pytest.approx(citl.params.iloc[0], abs=1e-8)
    assert "separates" in caplog.text
    # one control above the lowest case: not separated, a finite fit
    pdf.loc[3, "p"] = 0.7
    assert R.fit_calibration(spark.createDataFrame(pdf), "platt").method == "platt"


def test_isotonic_equals_scikit_learn(spark: SparkSession) -> None:
    from sklearn.isotonic import IsotonicRegression

    pdf = _sim(1500, seed=9)
    cal = R.fit_calibration(spark.createDataFrame(pdf), "isotonic")
    iso = IsotonicRegression(out_of_bounds="clip").fit(pdf["p"], pdf["label"])
    grid = np.linspace(0, 1, 501)
    assert np.max(np.abs(cal.apply(grid) - iso.predict(grid))) < 1e-9
    df = spark.createDataFrame(pd.DataFrame({"p": grid}))
    spark_values = df.select(cal.column(R.F.col("p")).alias("r")).toPandas()["r"].to_numpy()
    assert np.max(np.abs(spark_values - iso.predict(grid))) < 1e-9
    with pytest.raises(ValueError, match="unknown calibration 'beta'.*jobs.train.calibration"):
        R.fit_calibration(spark.createDataFrame(pdf), "beta")


def test_bands_and_words() -> None:
    t, names = (0.05, 0.15), ("low", "moderate", "high")
    assert [R.band(v, t, names) for v in (0.0, 0.0499, 0.05, 0.1499, 0.15, 1.0, None)] == [
        "low",
        "low",
        "moderate",
        "moderate",
        "high",
        "high",
        None,
    ]
    w = R.feature_words("lab_hba1c_last_1095d", {"hba1c": "%"})
    assert R.reason_text(w, 6.3, 5.6, 0.4) == "HbA1c (last, 3 y) 6.3 % (cohort median 5.6 %) raises risk"
    assert (
        R.reason_text(R.feature_words("cond_hypertension", {}), 0.0, 0.0, -0.1)
        == "History of hypertension: no (most patients: no) lowers risk"
    )
    assert (
        R.reason_text(R.feature_words("age_at_index", {}), 61.0, 52.0, 0.2)
        == "Age 61 years (cohort median 52 years) raises risk"
    )
    assert (
        R.reason_text(w, None, 5.6, -0.01) == "HbA1c (last, 3 y) not recorded (cohort median 5.6 % assumed) lowers risk"
    )


def test_logistic_contributions_sum_to_mllibs_logit(spark: SparkSession) -> None:
    """LinearRisk from a fitted MLlib pipeline: per patient the contributions add up to MLlib's own
    logit minus the intercept (missing values imputed, an unseen level, a constant column)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.functions import vector_to_array

    from omicslake.ml.model import FeatureColumns, preprocessing

    rng = np.random.default_rng(1)
    n = 600
    x1 = rng.normal(5.6, 0.6, n)
    x1[rng.random(n) < 0.1] = np.nan
    x2 = rng.normal(50, 10, n)
    cat = rng.choice(["a", "b", "c"], n)
    y = rng.binomial(1, R.sigmoid(1.2 * (np.nan_to_num(x1, nan=5.6) - 5.6) + 0.03 * (x2 - 50) + (cat == "b")))
    pdf = pd.DataFrame({"x1": x1, "x2": x2, "const": 1.0, "cat": cat, "label": y.astype(float)})
    df = spark.createDataFrame(pdf)
    cols = FeatureColumns(("x1", "x2", "const"), ("cat",))
    model = Pipeline(stages=[*preprocessing(cols), LogisticRegression(regParam=0.01, standardization=False)]).fit(df)
    lin = R.LinearRisk.from_pipeline(model)
    assert lin.levels[0] and set(lin.levels[0]) == {"a", "b", "c"}
    new = pd.DataFrame(
        {
            "x1": [np.nan, 6.3, 5.0],
            "x2": [40.0, 61.0, 50.0],
            "const": [1.0, 1.0, 1.0],
            "cat": ["b", "zzz", None],
            "label": [0.0, 1.0, 0.0],
        }
    )
    both = pd.concat([pdf, new], ignore_index=True)
    p = (
        model.transform(spark.createDataFrame(both))
        .select(vector_to_array("probability").getItem(1).alias("p"))
        .toPandas()["p"]
        .to_numpy()
    )
    contrib = lin.contributions(both)
    assert contrib.shape == (len(both), 4)
    assert np.max(np.abs(lin.intercept + contrib.sum(axis=1) - R.logit(p))) < 1e-9
    assert np.max(np.abs(R.sigmoid(lin.margin(both)) - p)) < 1e-12
    reasons = lin.reasons(both.tail(3).reset_index(drop=True), contrib[-3:], k=2)
    assert all(len(r) == 2 for r in reasons)
    top = reasons[1][0]
    assert abs(top["contribution"]) == pytest.approx(np.max(np.abs(contrib[-2])))
    assert top["direction"] == ("raises" if top["contribution"] > 0 else "lowers")
    # round trip through the model's metadata
    assert R.LinearRisk.from_dict(lin.to_dict()) == lin


def test_psi_by_hand_and_drift_of_a_shifted_batch(spark: SparkSession) -> None:
    """PSI of two hand-made distributions; a batch whose HbA1c moved up by 1 % drifts, the same
    population does not."""
    from omicslake.ml.risk import drift_metrics

    assert R.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(-0.25 * np.log(0.5) + 0.25 * np.log(1.5), abs=1e-12)
    assert R.psi([0.2] * 5, [0.2] * 5) == 0.0
    rng = np.random.default_rng(4)
    n = 3000
    train = pd.DataFrame(
        {
            "hba1c": rng.normal(5.6, 0.5, n),
            "age": rng.normal(50, 10, n),
            "race": rng.choice(["a", "b"], n),
            "risk": rng.beta(1, 12, n),
        }
    )
    train.loc[:299, "hba1c"] = np.nan
    ref_df = spark.createDataFrame(train)
    ref = {
        "features": R.drift_reference(ref_df, ["hba1c", "age"], ["race"]),
        "risk": R.drift_reference(ref_df, ["risk"], [])["risk"],
    }
    assert len(ref["features"]["hba1c"]["p"]) == 11 and ref["features"]["hba1c"]["p"][-1] == pytest.approx(
        0.1
    )  # 10 bins + missing
    assert sum(ref["features"]["race"]["p"]) == pytest.approx(1.0)
    # every bin's share against numpy on the same edges (a value equal to an edge falls in the lower bin)
    x = train["hba1c"].to_numpy()
    edges = ref["features"]["hba1c"]["edges"]
    ok = ~np.isnan(x)
    want = np.bincount((x[ok, None] > np.asarray(edges)[None, :]).sum(axis=1), minlength=len(edges) + 1) / n
    assert ref["features"]["hba1c"]["p"][:-1] == pytest.approx(list(want), abs=1e-12)
    assert ref["features"]["race"]["p"] == pytest.approx(
        [float((train["race"] == lv).mean()) for lv in ref["features"]["race"]["levels"]] + [0.0, 0.0], abs=1e-12
    )
    same = spark.createDataFrame(train.sample(frac=1.0, random_state=1))
    calm = drift_metrics(same, same, ref, 0.2)
    assert calm["drift_warnings"] == [] and calm["psi_max"] < 1e-9
    moved = train.assign(hba1c=train["hba1c"] + 1.0)
    m = drift_metrics(spark.createDataFrame(moved), spark.createDataFrame(moved), ref, 0.2)
    assert m["psi_max_feature"] == "hba1c" and m["psi"]["hba1c"] > 1 and m["psi"]["age"] < 1e-9
    assert m["drift_warnings"] == [f"feature hba1c: PSI {m['psi']['hba1c']:.3f} > 0.2"]


def test_drift_bins_at_awkward_edges_and_names(spark: SparkSession) -> None:
    """The bins of a numeric feature (its SQL text) and the most frequent levels of a categorical one,
    by hand: a value equal to an edge falls in the lower bin; edges in exponent notation and below
    zero; null and NaN in the missing bin; a column name with a space and a backtick."""
    name = "odd `name"
    rows = [(-1e-05, "b"), (0.0, "a"), (1e-05, "b"), (2.5, None), (1e20, "c"), (None, "a"), (float("nan"), "b")]
    df = spark.createDataFrame(rows, f"`{name.replace('`', '``')}` double, kind string")
    shares = R.bin_shares(df, {name: {"edges": [-1e-05, 1e-05, 1e20]}})
    assert shares[name] == pytest.approx([1 / 7, 2 / 7, 2 / 7, 0.0, 2 / 7], abs=1e-15)
    # infinite edges (a feature holding infinities): -inf is above none, inf above -inf only
    inf = spark.createDataFrame([(float("-inf"),), (0.0,), (float("inf"),)], "x double")
    assert R.bin_shares(inf, {"x": {"edges": [float("-inf"), float("inf")]}})["x"] == pytest.approx(
        [1 / 3, 2 / 3, 0.0, 0.0], abs=1e-15
    )
    # the two most frequent kinds (b three times; a and c tie, a first); nulls never a level
    ref = R.drift_reference(df, [], ["kind"], bins=10)
    assert R._top_levels(df, ["kind"], 2) == {"kind": ["b", "a"]} and ref["kind"]["levels"] == ["b", "a", "c"]
    assert ref["kind"]["p"] == pytest.approx([3 / 7, 2 / 7, 1 / 7, 0.0, 1 / 7], abs=1e-15)
    # a tie at the cut is broken by value; a null takes one of the k places and is then left out
    kinds = spark.createDataFrame([(k,) for k in [None] * 3 + ["b", "b", "a", "a", "c"]], "kind string")
    assert R._top_levels(kinds, ["kind"], 2) == {"kind": ["a"]} and R._top_levels(kinds, ["kind"], 3) == {
        "kind": ["a", "b"]
    }


def test_a_split_with_one_outcome_is_named_before_any_fit(spark: SparkSession) -> None:
    """train refuses a training or test split whose patients all share one label (at 80 generated
    patients the default seed's test split had no case: the plots failed with a TypeError)."""
    from omicslake.ml.model import one_outcome, outcome_counts

    both = spark.createDataFrame([(1.0,), (0.0,), (0.0,)], ["label"])
    assert outcome_counts(both) == (3, 1) and not one_outcome(*outcome_counts(both))
    assert outcome_counts(both.where("label = 0")) == (2, 0) and one_outcome(2, 0)
    assert one_outcome(*outcome_counts(both.where("label = 1")))  # every row a case
    assert one_outcome(*outcome_counts(both.limit(0)))
