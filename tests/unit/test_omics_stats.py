"""Omics QC, normalisation and association against references computed by others' code
(statsmodels OLS and multipletests) or by hand in numpy from the published formulas."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import DataFrame, SparkSession

from omicslake.config import OmicsQcConfig
from omicslake.omics import assoc, normalise

SCHEMA = "feature_id string, values array<double>"


def frame(spark: SparkSession, y: np.ndarray) -> DataFrame:
    rows = [(f"f{i}", [None if np.isnan(v) else float(v) for v in row]) for i, row in enumerate(y)]
    return spark.createDataFrame(rows, SCHEMA).repartition(3)


def by_id(df: DataFrame, *cols: str) -> dict[str, tuple]:  # type: ignore[type-arg]
    return {r.feature_id: tuple(r[c] for c in cols) for r in df.collect()}


# ------------------------------------------------------------------------------------ association


def test_ols_equals_statsmodels_per_feature(spark: SparkSession) -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(17)
    n, m = 60, 40
    pheno = rng.integers(0, 2, n).astype(float)
    cov = np.column_stack([rng.normal(50, 10, n), rng.integers(0, 2, n)])
    y = rng.normal(size=(m, n)) + 0.02 * cov[:, 0] + np.outer(rng.normal(0, 1, m), pheno)
    y[3, 5] = np.nan  # features with missing values are fitted on their complete samples
    y[7, [1, 2, 9]] = np.nan
    # the analysed samples are a subset of the array positions, in another order
    positions = list(rng.permutation(n + 5)[:n])
    arrays = np.full((m, n + 5), 99.0)
    arrays[:, positions] = y
    x = assoc.design(pheno, cov)
    out = by_id(
        assoc.associate(frame(spark, arrays), positions, x).select("feature_id", "result.*"), "n", "beta", "se", "p"
    )
    for i in range(m):
        keep = ~np.isnan(y[i])
        fit = sm.OLS(y[i][keep], x[keep]).fit()
        got = out[f"f{i}"]
        assert got[0] == keep.sum()
        np.testing.assert_allclose(got[1], fit.params[1], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(got[2], fit.bse[1], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(got[3], fit.pvalues[1], rtol=1e-6, atol=1e-12)
    assert out["f7"][0] == n - 3


def test_bh_equals_statsmodels_multipletests(spark: SparkSession) -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(size=200), rng.uniform(0, 1e-4, 30), [0.5, 0.5, 0.5, 1e-5, 1e-5]])
    rows = [(f"f{i}", float(v)) for i, v in enumerate(p)] + [("none", None), ("nan", float("nan"))]
    df = spark.createDataFrame(rows, "feature_id string, p double").repartition(4)
    q = {r.feature_id: r.q for r in assoc.bh(df).collect()}
    ref = multipletests(p, method="fdr_bh")[1]
    np.testing.assert_allclose([q[f"f{i}"] for i in range(len(p))], ref, rtol=1e-12, atol=1e-15)
    assert q["none"] is None and q["nan"] is None


# ------------------------------------------------------------------------------------ normalisation


def test_column_medians_exact_on_hard_columns(spark: SparkSession) -> None:
    """The distributed selection against numpy's nanmedian, with brackets forced through several
    passes (limit 4, 8 bins): ties across bin edges, one distinct value, odd and even counts, nulls,
    an empty position, values a few ulps apart, a range of 1e-300 to 1e300 and a null array."""
    rng = np.random.default_rng(5)
    rows = 301
    cols = [
        rng.normal(size=rows),  # odd count
        np.where(np.arange(rows) < 151, 1.0, 2.0),  # 150 and 150 after a null: the middle pair 1.0, 2.0 (1.5)
        np.full(rows, 7.25),  # one distinct value
        np.full(rows, np.nan),  # no value at all: NaN
        np.round(rng.normal(size=rows), 1),  # many ties
        1.0 + np.arange(rows) * np.finfo(float).eps,  # values a few ulps apart
        np.concatenate([[1e-300, -1e300, 1e300], rng.normal(size=rows - 3)]),  # an enormous range
        rng.integers(0, 3, rows).astype(float),  # counts: three values
    ]
    y = np.column_stack(cols)
    y[0, 1] = np.nan
    y[rng.choice(rows, 40, replace=False), 0] = np.nan
    df = frame(spark, y).union(spark.createDataFrame([("null", None)], SCHEMA)).repartition(4)
    want = np.array([np.nan if np.isnan(c).all() else np.nanmedian(c) for c in y.T])
    got = normalise.column_medians(df, y.shape[1], limit=4, bins=8)
    np.testing.assert_array_equal(got, want)  # exact: the same doubles, not close ones
    np.testing.assert_array_equal(normalise.column_medians(df, y.shape[1]), want)  # the default bins and limit


def test_counts_log2cpm_and_median_of_ratios(spark: SparkSession) -> None:
    rng = np.random.default_rng(1)
    counts = rng.negative_binomial(5, 0.05, size=(30, 8)).astype(float)
    counts[0, 3] = 0  # a zero count: that gene is left out of the size factors
    t = OmicsQcConfig(prior_count=0.5)
    lib = counts.sum(axis=0)
    out, extra = normalise.normalise(frame(spark, counts), 8, "rnaseq_counts", t, lib)
    got = by_id(out, "values", "scaled", "mean", "variance")
    # DESeq2's estimateSizeFactors, by hand: genes with no zero, exp(median(log k - mean log k))
    logs = np.log(counts[(counts > 0).all(axis=1)])
    sf = np.exp(np.median(logs - logs.mean(axis=1, keepdims=True), axis=0))
    np.testing.assert_allclose(extra["size_factor"], sf, rtol=1e-12)
    cpm = np.log2((counts + 0.5) / (lib + 1) * 1e6)  # limma::voom
    for i in range(30):
        np.testing.assert_allclose(got[f"f{i}"][0], cpm[i], rtol=1e-12)
        np.testing.assert_allclose(got[f"f{i}"][1], counts[i] / sf, rtol=1e-12)
        np.testing.assert_allclose(got[f"f{i}"][2], cpm[i].mean(), rtol=1e-12)
        np.testing.assert_allclose(got[f"f{i}"][3], cpm[i].var(ddof=1), rtol=1e-9)


def test_methylation_proteomics_microbiome(spark: SparkSession) -> None:
    rng = np.random.default_rng(2)
    t = OmicsQcConfig(beta_offset=1e-6, pseudocount=1.0)
    beta = rng.uniform(0, 1, size=(10, 6))
    beta[0, 0], beta[1, 1] = 0.0, 1.0
    out, _ = normalise.normalise(frame(spark, beta), 6, "methylation_beta", t, beta.sum(axis=0))
    b = np.clip(beta, 1e-6, 1 - 1e-6)
    m = np.log2(b / (1 - b))
    got = by_id(out, "values")
    for i in range(10):
        np.testing.assert_allclose(got[f"f{i}"][0], m[i], rtol=1e-12)

    inten = rng.lognormal(10, 1, size=(9, 5))
    inten[2, 1] = np.nan  # missing not at random: stays missing
    inten[4, 3] = 0.0  # not detected: missing too
    out, extra = normalise.normalise(frame(spark, inten), 5, "proteomics_intensity", t, np.nansum(inten, axis=0))
    lg = np.log2(np.where(inten > 0, inten, np.nan))
    med = np.nanmedian(lg, axis=0)
    np.testing.assert_allclose(extra["median"], med, rtol=1e-12)
    got = by_id(out, "values")
    for i in range(9):
        ref = lg[i] - med
        vals = np.array([np.nan if v is None else v for v in got[f"f{i}"][0]])
        np.testing.assert_allclose(vals, ref, rtol=1e-12)
    assert got["f2"][0][1] is None and got["f4"][0][3] is None

    counts = rng.poisson(20, size=(7, 4)).astype(float)
    out, _ = normalise.normalise(frame(spark, counts), 4, "microbiome_counts", t, counts.sum(axis=0))
    lc = np.log(counts + 1)
    clr = lc - lc.mean(axis=0)
    got = by_id(out, "values", "scaled")
    for i in range(7):
        np.testing.assert_allclose(got[f"f{i}"][0], clr[i], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[f"f{i}"][1], counts[i] / counts.sum(axis=0), rtol=1e-12)


def test_sample_and_feature_qc_rules(spark: SparkSession) -> None:
    nan = np.nan
    y = np.array(
        [
            [10, 0, 5, nan],
            [20, 0, 5, nan],
            [30, 1, nan, nan],
            [0, 0, 0, 4],
        ]
    )
    t = OmicsQcConfig(
        min_library_size=10.0,
        max_sample_missing=0.5,
        min_detected_fraction=0.5,
        max_feature_missing=0.2,
        min_count=5,
        min_expressed_fraction=0.5,
    )
    qc = normalise.sample_qc(frame(spark, y), 4, "rnaseq_counts", t)
    np.testing.assert_array_equal(qc.total, [60, 1, 10, 4])
    np.testing.assert_array_equal(qc.detected, [3, 1, 2, 1])
    np.testing.assert_allclose(qc.missing_fraction, [0, 0, 0.25, 0.75])
    assert qc.rule == [None, "library_size", None, "sample_missing"]
    assert qc.reason[1] == "library size 1 < 10.0" and qc.passing == [0, 2]
    f = frame(spark, y).transform(normalise.subset(qc.passing)).transform(normalise.feature_qc("rnaseq_counts", t))
    got = by_id(f, "values", "missing_fraction", "rule")
    assert got["f0"] == ([10.0, 5.0], 0.0, None)
    assert got["f2"] == ([30.0, None], 0.5, "feature_missing")
    assert got["f3"] == ([0.0, 0.0], 0.0, "low_counts")


@pytest.mark.parametrize("kind", ["rnaseq_counts", "methylation_beta", "proteomics_intensity", "microbiome_counts"])
def test_every_assay_type_normalises(spark: SparkSession, kind: str) -> None:
    y = np.array([[0.2, 0.4, 0.6], [0.3, 0.5, 0.9]]) * (100 if "counts" in kind or "prot" in kind else 1)
    out, _ = normalise.normalise(frame(spark, y), 3, kind, OmicsQcConfig(), y.sum(axis=0))
    assert sorted(out.columns) == ["feature_id", "mean", "scaled", "values", "variance"]
    assert all(all(v is not None and np.isfinite(v) for v in r.values) for r in out.collect())
