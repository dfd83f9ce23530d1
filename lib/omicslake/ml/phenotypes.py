"""Patient phenotype clusters: k-means or bisecting k-means on the standardised features, k
chosen by silhouette, and a profile of every cluster (pure functions; MLflow lives in the job).

Silhouette is MLlib's ``ClusteringEvaluator`` (squared Euclidean distance, computed exactly from
per-cluster sums: linear in the number of patients, no pairwise distances). Profiles come from
one grouped aggregation (k rows) plus one overall aggregation: no patient rows leave Spark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import BisectingKMeans, KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from omicslake.frames import canonical
from omicslake.ml.model import FeatureColumns, preprocessing


@dataclass(frozen=True)
class Clustering:
    """What ``fit`` gives: the fitted pipeline (predicts ``cluster``), the chosen k, the silhouette of every
    candidate k and the persons in each cluster at the chosen k."""

    model: PipelineModel  # preprocessing + the chosen clusterer (predicts ``cluster``)
    k: int
    silhouettes: dict[int, float]  # candidate k -> silhouette
    sizes: dict[int, int]  # cluster -> persons (chosen k)


def clusterer(algorithm: str, k: int, seed: int, max_iter: int) -> Any:
    """An unfitted MLlib KMeans ("kmeans") or BisectingKMeans ("bisecting") on ``features``, predicting
    ``cluster``; ValueError naming the two for any other ``algorithm``."""
    if algorithm == "kmeans":
        return KMeans(k=k, seed=seed, maxIter=max_iter, featuresCol="features", predictionCol="cluster")
    if algorithm == "bisecting":
        return BisectingKMeans(k=k, seed=seed, maxIter=max_iter, featuresCol="features", predictionCol="cluster")
    raise ValueError(f"unknown clustering algorithm {algorithm!r}: kmeans or bisecting")


def fit(
    df: DataFrame, cols: FeatureColumns, algorithm: str, ks: list[int], seed: int, max_iter: int = 50
) -> Clustering:
    """Fit the preprocessing once, then one clusterer per candidate k on the cached feature
    vectors; keep the k with the highest silhouette (ties: the smaller k). k-means' seeded
    initialisation draws per partition: it runs on df's canonical layout (``frames.canonical``, on
    person_key when df has one), so the same rows give the same clusters."""
    if not ks or min(ks) < 2:
        raise ValueError(f"k must list numbers of clusters >= 2, got {ks}")
    df = canonical(df, [k for k in ("person_key",) if k in df.columns])
    # scaled, not centred: distances do not change, and bisecting k-means splits a cluster by
    # moving its centre by +-1e-4 of itself, which cannot split a cluster centred at 0
    prep = Pipeline(stages=preprocessing(cols, center=False)).fit(df)
    x = prep.transform(df).select("features").cache()
    evaluator = ClusteringEvaluator(
        featuresCol="features", predictionCol="cluster", metricName="silhouette", distanceMeasure="squaredEuclidean"
    )
    fitted: dict[int, Any] = {}
    sil: dict[int, float] = {}
    for k in sorted(set(ks)):
        m = clusterer(algorithm, k, seed, max_iter).fit(x)
        fitted[k] = m
        sil[k] = float(evaluator.evaluate(m.transform(x)))
    best = max(sil, key=lambda k: (sil[k], -k))
    sizes = {int(r[0]): int(r[1]) for r in fitted[best].transform(x).groupBy("cluster").count().collect()}  # k rows
    x.unpersist()
    return Clustering(PipelineModel(stages=[*prep.stages, fitted[best]]), best, sil, sizes)


def profiles(assigned: DataFrame, numeric: list[str], outcome: str | None = "label") -> list[dict[str, Any]]:
    """Long rows (cluster, n, share, outcome_rate, feature, mean, overall_mean, smd): every numeric
    feature's mean in the cluster against the whole cohort, as a standardised difference
    (cluster mean - overall mean) / overall SD."""
    per = (
        assigned.groupBy("cluster")
        .agg(
            F.count(F.lit(1)).alias("_n"),
            (F.avg(F.col(outcome).cast("double")) if outcome else F.lit(None).cast("double")).alias("_outcome"),
            *[F.avg(F.col(c).cast("double")).alias(c) for c in numeric],
        )
        .collect()
    )  # k rows
    overall = assigned.agg(
        *[F.avg(F.col(c).cast("double")).alias(f"m_{i}") for i, c in enumerate(numeric)],
        *[F.stddev(F.col(c).cast("double")).alias(f"s_{i}") for i, c in enumerate(numeric)],
    ).first()
    assert overall is not None
    total = sum(int(r["_n"]) for r in per)
    out = []
    for r in sorted(per, key=lambda r: int(r["cluster"])):
        for i, c in enumerate(numeric):
            m, om, sd = r[c], overall[f"m_{i}"], overall[f"s_{i}"]
            out.append(
                {
                    "cluster": int(r["cluster"]),
                    "n": int(r["_n"]),
                    "share": int(r["_n"]) / total,
                    "outcome_rate": None if r["_outcome"] is None else float(r["_outcome"]),
                    "feature": c,
                    "mean": None if m is None else float(m),
                    "overall_mean": None if om is None else float(om),
                    "smd": None if m is None or om is None or not sd else (float(m) - float(om)) / float(sd),
                }
            )
    return out
