"""Concordance, Kaplan-Meier and clustering on small data, against lifelines and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession

from omicslake.ml import phenotypes as P
from omicslake.ml import survival as S
from omicslake.ml.model import FeatureColumns, preprocessing


def _survival_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(1, 60, n).astype(float)  # integer days: many tied times
    e = (rng.random(n) < 0.4).astype(int)
    # scores: half from 12 distinct values (tied predictions), half continuous; correlated with time
    s = np.where(rng.random(n) < 0.5, rng.integers(0, 12, n) / 3.0, rng.normal(0, 2, n)) + 0.05 * t
    return t, e, s


@pytest.mark.parametrize("seed", [1, 2])
def test_concordance_equals_lifelines_with_tied_times_and_scores(spark: SparkSession, seed: int) -> None:
    from lifelines.utils import concordance_index

    t, e, raw = _survival_data(700, seed)
    # scores on a 0.001 grid: equal scores are exactly equal, distinct ones are more than a bin apart
    s = np.round(raw, 3)
    df = spark.createDataFrame(
        [(float(a), int(b), float(c)) for a, b, c in zip(t, e, s, strict=True)], "time double, event int, lp double"
    )
    c, pairs = S.concordance(df)
    assert c == pytest.approx(concordance_index(t, s, e), abs=1e-12)
    # raw scores: near-equal sums in the same 1/100,000 bin count as ties (documented), a tiny difference
    c_raw, _ = S.concordance(
        spark.createDataFrame(
            [(float(a), int(b), float(c)) for a, b, c in zip(t, e, raw, strict=True)],
            "time double, event int, lp double",
        )
    )
    assert c_raw == pytest.approx(concordance_index(t, raw, e), abs=1e-4)
    # the comparable pairs, counted by brute force with lifelines' definition
    brute = sum(int(((t > t[i]) | ((t == t[i]) & (e == 0))).sum()) for i in range(len(t)) if e[i] == 1)
    assert pairs == brute
    # a score that ignores time is near 0.5; the reversed score gives 1 - C
    c_rev, _ = S.concordance(df.selectExpr("time", "event", "-lp AS lp"))
    assert c_rev == pytest.approx(1 - c, abs=1e-9)


def test_kaplan_meier_equals_lifelines(spark: SparkSession) -> None:
    from lifelines import KaplanMeierFitter

    t, e, _ = _survival_data(400, 3)
    g = np.where(np.arange(400) % 2 == 0, "a", "b")
    df = spark.createDataFrame(
        [(float(a), int(b), str(c)) for a, b, c in zip(t, e, g, strict=True)], "time double, event int, grp string"
    )
    curves = S.kaplan_meier(df, "grp")
    assert set(curves) == {"a", "b"}
    for level in ("a", "b"):
        m = g == level
        km = KaplanMeierFitter().fit(t[m], e[m])
        expected = km.survival_function_at_times(curves[level]["t"]).to_numpy()
        np.testing.assert_allclose(curves[level]["s"], expected, atol=1e-12)
        assert curves[level]["n"][0] == m.sum()


MAX_ITER = 10


def _blobs(spark: SparkSession) -> tuple[object, np.ndarray]:
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 6.0, 6.0]])
    truth = np.repeat([0, 1, 2], 120)
    x = centres[truth] + rng.normal(0, 0.7, (360, 3))
    x[::17, 1] = np.nan  # a few missing values: imputed by the median
    rows = [(f"p{i}", *[None if np.isnan(v) else float(v) for v in x[i]], int(truth[i] == 1)) for i in range(360)]
    return spark.createDataFrame(rows, "person_key string, a double, b double, c double, label int"), truth


@pytest.mark.parametrize("algorithm", ["kmeans", "bisecting"])
def test_clusters_recover_planted_groups_and_silhouette_equals_sklearn(spark: SparkSession, algorithm: str) -> None:
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    from omicslake.frames import canonical

    df, truth = _blobs(spark)
    cols = FeatureColumns(("a", "b", "c"), ())
    # 10 iterations, not the job's 50: MLlib's bisecting k-means runs every one of them at each split
    # (16 s against 5 s here, the fast tier's budget: issue 20), and these blobs settle in fewer
    fit = P.fit(df, cols, algorithm, [2, 3, 4], seed=7, max_iter=MAX_ITER)
    assert fit.k == 3 and sum(fit.sizes.values()) == 360
    assert fit.silhouettes[3] == max(fit.silhouettes.values())
    out = (
        fit.model.transform(df)
        .select("person_key", vector_to_array("features").alias("x"), "cluster")
        .orderBy("person_key")
        .collect()
    )
    order = np.argsort([f"p{i}" for i in range(360)])
    complete = np.arange(360)[order] % 17 != 0  # rows without an imputed value: recovered exactly
    assert adjusted_rand_score(truth[order][complete], np.array([r.cluster for r in out])[complete]) == 1.0
    x = np.array([r.x for r in out])
    # the chosen k's silhouette from the fitted model's own labels; one other k refitted (each bisecting
    # fit is a few seconds: the fast tier's budget, issue 20)
    chosen = [r.cluster for r in out]
    assert fit.silhouettes[3] == pytest.approx(silhouette_score(x, chosen, metric="sqeuclidean"), abs=1e-9)
    same = canonical(df, ["person_key"])  # the layout fit draws k-means' initial centres on
    xs = Pipeline(stages=preprocessing(cols, center=False)).fit(same).transform(same)
    labels = (
        P.clusterer(algorithm, 2, 7, MAX_ITER).fit(xs).transform(xs).orderBy("person_key").select("cluster").collect()
    )
    assert fit.silhouettes[2] == pytest.approx(
        silhouette_score(x, [r.cluster for r in labels], metric="sqeuclidean"), abs=1e-9
    )
    prof = P.profiles(fit.model.transform(df), ["a", "b", "c"])
    assert sum(r["n"] for r in prof if r["feature"] == "a") == 360
    # blob 1's cluster (label 1) has the highest outcome rate and sits far above the mean on a
    blob1 = max((r for r in prof if r["feature"] == "a"), key=lambda r: r["outcome_rate"])
    assert blob1["outcome_rate"] > 0.9 and blob1["smd"] > 1.0


def test_clustering_settings_are_checked(spark: SparkSession) -> None:
    df, _ = _blobs(spark)
    with pytest.raises(ValueError, match="k must list"):
        P.fit(df, FeatureColumns(("a",), ()), "kmeans", [1, 2], seed=1)
    with pytest.raises(ValueError, match="kmeans or bisecting"):
        P.clusterer("dbscan", 3, 1, 10)
