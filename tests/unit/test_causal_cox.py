"""causal.cox: the Spark Cox fit against lifelines 0.30.3 (CoxPHFitter, Efron) and statsmodels PHReg
(Breslow and Efron) on the same seeded data: ties, strata, case weights with robust variance and
clusters each have a test, coefficients and standard errors to 1e-4."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from statsmodels.duration.hazard_regression import PHReg

from omicslake.causal import cox

TOL = 1e-4
COVS = ["x1", "x2", "x3"]


def make_data(n: int = 1500, seed: int = 7, ties: bool = True) -> pd.DataFrame:
    """Exponential times with hazard exp(0.5 x1 - 0.7 x2 + 0.2 x3) times a per-stratum baseline,
    uniform censoring, times rounded to whole units (many ties) unless ties=False, weights in [0.5, 3)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.binomial(1, 0.4, size=n).astype(float)
    x3 = rng.normal(1.0, 2.0, size=n)
    stratum = rng.integers(0, 3, size=n)
    base = np.array([0.05, 0.1, 0.2])[stratum]
    t = rng.exponential(1 / (base * np.exp(0.5 * x1 - 0.7 * x2 + 0.2 * x3)))
    c = rng.uniform(0, 30, size=n)
    time = np.ceil(np.minimum(t, c)) if ties else np.minimum(t, c)
    event = (t <= c).astype(int)
    cluster = np.arange(n) // 2  # pairs, as matched sets
    w = rng.uniform(0.5, 3.0, size=n)
    return pd.DataFrame(
        {"time": time, "event": event, "x1": x1, "x2": x2, "x3": x3, "stratum": stratum, "w": w, "pair": cluster}
    )


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return make_data()


@pytest.fixture(scope="module")
def untied() -> pd.DataFrame:
    return make_data(ties=False)


@pytest.fixture(scope="module")
def sdf(spark: SparkSession, data: pd.DataFrame) -> DataFrame:
    return spark.createDataFrame(data).repartition(3)


def agree(label: str, got: np.ndarray, ref: object, what: str = "coef") -> None:
    """Assert |got - ref| < TOL elementwise and print the largest difference (for the report)."""
    d = float(np.max(np.abs(np.asarray(got) - np.asarray(ref))))
    print(f"[agreement] {label} {what}: max |d| = {d:.2e}")
    assert d < TOL, (label, what, d)


def lifelines_fit(data: pd.DataFrame, **kw: Any) -> CoxPHFitter:
    extra = [kw.get("weights_col"), *kw.get("strata", []), kw.get("cluster_col")]
    cols = ["time", "event", *COVS, *[c for c in extra if c]]
    f = CoxPHFitter()
    f.fit(data[cols], "time", "event", fit_options={"precision": 1e-12, "max_steps": 200}, **kw)
    return f


@pytest.fixture(scope="module")
def fits() -> dict[tuple[str, tuple[str, ...]], cox.CoxResult]:
    """Fits shared between tests (each fit is a few Spark jobs)."""
    return {}


def test_ties_against_statsmodels_phreg(sdf: DataFrame, data: pd.DataFrame, fits: dict[Any, cox.CoxResult]) -> None:
    ties_seen = data.groupby(["time"])["event"].sum().max()
    assert ties_seen > 5  # the data do have tied events
    for ties in ("breslow", "efron"):
        ref = PHReg(data["time"], data[COVS], status=data["event"], ties=ties).fit()
        got = fits[(ties, ())] = cox.fit(sdf, "time", "event", COVS, ties=ties)
        assert got.converged
        agree(f"statsmodels PHReg {ties}", got.coef, ref.params, "coef")
        agree(f"statsmodels PHReg {ties}", got.se, ref.bse, "se")
        assert abs(got.loglik - ref.llf) < 1e-6 * abs(ref.llf), ties
    # Breslow and Efron differ on these ties by far more than the tolerance
    b, e = fits[("breslow", ())], fits[("efron", ())]
    assert np.max(np.abs(b.coef - e.coef)) > 10 * TOL


def test_efron_against_lifelines(sdf: DataFrame, data: pd.DataFrame, fits: dict[Any, cox.CoxResult]) -> None:
    ref = lifelines_fit(data)
    got = fits.get(("efron", ())) or cox.fit(sdf, "time", "event", COVS, ties="efron")
    agree("lifelines efron", got.coef, ref.params_[COVS].to_numpy(), "coef")
    agree("lifelines efron", got.se, ref.standard_errors_[COVS].to_numpy(), "se")


def test_strata(sdf: DataFrame, data: pd.DataFrame, fits: dict[Any, cox.CoxResult]) -> None:
    for ties in ("breslow", "efron"):
        ref = PHReg(data["time"], data[COVS], status=data["event"], ties=ties, strata=data["stratum"]).fit()
        got = fits[(ties, ("stratum",))] = cox.fit(sdf, "time", "event", COVS, ties=ties, strata=["stratum"])
        agree(f"statsmodels PHReg {ties} strata", got.coef, ref.params, "coef")
        agree(f"statsmodels PHReg {ties} strata", got.se, ref.bse, "se")
    ll = lifelines_fit(data, strata=["stratum"])
    agree("lifelines efron strata", got.coef, ll.params_[COVS].to_numpy(), "coef")
    agree("lifelines efron strata", got.se, ll.standard_errors_[COVS].to_numpy(), "se")
    # ignoring the strata gives other estimates (the baselines differ by stratum)
    flat = fits.get(("efron", ())) or cox.fit(sdf, "time", "event", COVS, ties="efron")
    assert np.max(np.abs(flat.coef - got.coef)) > 10 * TOL


def test_weights_robust_against_lifelines(spark: SparkSession, untied: pd.DataFrame) -> None:
    # lifelines' score residuals ignore ties (its code says so: rows are taken in sorted order), so
    # it is the oracle for weights on untied times, where Efron and Breslow coincide
    assert untied["time"].duplicated().sum() == 0
    sdf = spark.createDataFrame(untied).repartition(3)
    ref = lifelines_fit(untied, weights_col="w", robust=True)
    got = cox.fit(sdf, "time", "event", COVS, ties="efron", weight="w", robust=True)
    assert got.robust_se is not None
    agree("lifelines weights robust (untied)", got.coef, ref.params_[COVS].to_numpy(), "coef")
    agree("lifelines weights robust (untied)", got.robust_se, ref.standard_errors_[COVS].to_numpy(), "robust_se")
    # the robust SEs are not the model-based ones
    assert np.max(np.abs(got.robust_se - got.se)) > 10 * TOL
    ref = lifelines_fit(untied, weights_col="w", strata=["stratum"], cluster_col="pair")
    got = cox.fit(sdf, "time", "event", COVS, ties="breslow", weight="w", strata=["stratum"], cluster="pair")
    assert got.robust_se is not None
    agree("lifelines weights strata cluster (untied)", got.coef, ref.params_[COVS].to_numpy(), "coef")
    agree(
        "lifelines weights strata cluster (untied)", got.robust_se, ref.standard_errors_[COVS].to_numpy(), "robust_se"
    )


def test_weighted_efron_with_ties_against_lifelines(sdf: DataFrame, data: pd.DataFrame) -> None:
    # lifelines' weighted Efron likelihood handles ties (R's convention: tied events share their
    # mean weight); its model-based variance is the inverse information
    ref = lifelines_fit(data, weights_col="w")
    got = cox.fit(sdf, "time", "event", COVS, ties="efron", weight="w")
    agree("lifelines weighted efron (tied)", got.coef, ref.params_[COVS].to_numpy(), "coef")
    agree("lifelines weighted efron (tied)", got.se, ref.standard_errors_[COVS].to_numpy(), "se")


def test_robust_with_ties_against_statsmodels(sdf: DataFrame, data: pd.DataFrame) -> None:
    # statsmodels' score residuals are Breslow's, tie-aware, unweighted; groups = clusters
    for groups, cluster in ((np.arange(len(data)), None), (data["pair"].to_numpy(), "pair")):
        ref = PHReg(data["time"], data[COVS], status=data["event"], ties="breslow", strata=data["stratum"]).fit(
            groups=groups
        )
        got = cox.fit(sdf, "time", "event", COVS, ties="breslow", strata=["stratum"], robust=True, cluster=cluster)
        assert got.robust_se is not None
        agree(f"statsmodels PHReg breslow strata robust cluster={cluster}", got.coef, ref.params, "coef")
        agree(f"statsmodels PHReg breslow strata robust cluster={cluster}", got.robust_se, ref.bse, "robust_se")


def test_efron_score_residuals_add_up_to_the_score(sdf: DataFrame, data: pd.DataFrame) -> None:
    # away from the estimate, the Efron score residuals of all rows add up to statsmodels' Efron score
    beta = np.array([0.3, -0.2, 0.1])
    frame, _, _, _ = cox.prepare(sdf, "time", "event", COVS)
    resid = cox.score_residuals(frame, beta, efron=True)
    row = resid.agg(*[F.sum(f"wU_{j}").alias(f"u{j}") for j in range(3)]).first()
    assert row is not None
    total = np.array([row[f"u{j}"] for j in range(3)])
    ref = PHReg(data["time"], data[COVS], status=data["event"], ties="efron").score(beta)
    assert np.max(np.abs(total - ref)) < 1e-6 * np.max(np.abs(ref))
    # and the Breslow residuals do not (the ties matter)
    resid_b = cox.score_residuals(frame, beta, efron=False)
    row_b = resid_b.agg(*[F.sum(f"wU_{j}").alias(f"u{j}") for j in range(3)]).first()
    assert row_b is not None
    assert np.max(np.abs(np.array([row_b[f"u{j}"] for j in range(3)]) - ref)) > 1e-3 * np.max(np.abs(ref))


def test_bad_inputs(spark: SparkSession, sdf: DataFrame, data: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in the data"):
        cox.fit(sdf, "time", "event", ["x1", "nope"])
    with pytest.raises(ValueError, match="no events in event"):
        cox.fit(sdf.withColumn("event", sdf.event * 0), "time", "event", COVS)
    with pytest.raises(ValueError, match="singular"):
        cox.fit(sdf.withColumn("x4", sdf.x1 * 2), "time", "event", ["x1", "x4"])
    with pytest.raises(ValueError, match="ties must be one of"):
        cox.fit(sdf, "time", "event", COVS, ties="exact")
    # a covariate that separates: every event has x = 1, nobody else
    small = data.head(300)
    sep = spark.createDataFrame(small.assign(sep=small["event"].astype(float)))
    res = cox.fit(sep, "time", "event", ["sep"])
    assert not res.converged
    assert any("monotone likelihood" in d for d in res.diagnostics)


def test_the_driver_path_and_the_spark_path_agree(sdf: DataFrame) -> None:
    """fit iterates on the driver over the compressed groups when they are few (the oracle tests
    above without a cluster take that path: continuous covariates, one group per row); the Spark
    path (one narrow stage per Newton step, residuals on the executors) gives the same fit and robust
    variance, with binary covariates (real compression), weights, strata and both ties."""
    binary = sdf.withColumn("b1", (sdf.x1 > 0).cast("double")).withColumn("b2", (sdf.x2 > 0.3).cast("double"))
    binary = binary.withColumn("w", F.when(sdf.x3 > 0, 2.5).otherwise(1.0))
    for ties in ("efron", "breslow"):
        kw: dict[str, Any] = {"ties": ties, "weight": "w", "strata": ["stratum"], "robust": True}
        local = cox.fit(binary, "time", "event", ["b1", "b2"], **kw)
        spark_path = cox.fit(binary, "time", "event", ["b1", "b2"], local_max_groups=0, **kw)
        assert np.max(np.abs(local.coef - spark_path.coef)) < 1e-10, ties
        assert np.max(np.abs(local.var - spark_path.var)) < 1e-10, ties
        assert local.robust_var is not None and spark_path.robust_var is not None
        assert np.max(np.abs(local.robust_var - spark_path.robust_var)) < 1e-10, ties
        assert abs(local.loglik - spark_path.loglik) < 1e-8 and local.iterations == spark_path.iterations
    # a continuous covariate with too many groups for the driver falls back to Spark, same answer
    a = cox.fit(sdf, "time", "event", COVS, ties="efron", local_max_groups=10)
    b = cox.fit(sdf, "time", "event", COVS, ties="efron")
    assert np.max(np.abs(a.coef - b.coef)) < 1e-10


def test_ridge_penalizer_against_lifelines(sdf: DataFrame, data: pd.DataFrame) -> None:
    """lifelines' CoxPHFitter(penalizer=p, l1_ratio=0) on tied data: coefficients, SEs (its
    variance is the inverse penalised information) and the penalised log-likelihood, on the raw
    covariates (lifelines penalises them divided by their SDs) and on the driver and Spark paths;
    the penalty shrinks the fit away from the unpenalised one."""
    pen = 0.05
    ref = CoxPHFitter(penalizer=pen, l1_ratio=0.0)
    ref.fit(data[["time", "event", *COVS]], "time", "event", fit_options={"precision": 1e-12, "max_steps": 200})
    flat = cox.fit(sdf, "time", "event", COVS, ties="efron")
    for groups in (cox.LOCAL_MAX_GROUPS, 0):
        got = cox.fit(sdf, "time", "event", COVS, ties="efron", penalizer=pen, local_max_groups=groups)
        assert got.converged
        agree(f"lifelines penalizer={pen} groups={groups}", got.coef, ref.params_[COVS].to_numpy(), "coef")
        agree(f"lifelines penalizer={pen} groups={groups}", got.se, ref.standard_errors_[COVS].to_numpy(), "se")
    assert np.all(np.abs(got.coef) < np.abs(flat.coef) - 10 * TOL)  # shrunk towards 0
    with pytest.raises(ValueError, match="penalties must be >= 0"):
        cox.fit(sdf, "time", "event", COVS, penalizer=-1.0)
