"""Job cluster: patient phenotypes by k-means or bisecting k-means on gold.features_<cohort>.

Features go through the same imputation, encoding and scaling as the classifiers (genetics left
out by default: these are clinical phenotypes); every k in config is fitted and scored by
silhouette, the best k is kept. Writes ``gold.clusters_<cohort>`` (person_key, index_date,
cluster, k, algorithm, input_version, mlflow_run_id, run_id) and ``gold.cluster_profiles_<cohort>``
(per cluster and numeric feature: n, share, outcome rate, mean, cohort mean, standardised
difference). MLflow gets the parameters, the silhouette of every k, the cluster sizes, the fitted
pipeline and two PNGs (silhouette by k, profile heat map).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="cluster",
    description="Cluster the persons of gold.features_<cohort> into phenotypes (k-means / bisecting, k by silhouette) -> gold.clusters_<cohort>.",
    after=("build_cohort",),
    config=("jobs.cluster", "mlflow"),
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    import mlflow

    from omicslake.ml import model as M
    from omicslake.ml import phenotypes as P
    from omicslake.ml.plots import cluster_plots
    from omicslake.ml.tracking import log_files, log_model, setup, tracked_run

    c = cfg.jobs.cluster
    table = f"gold.features_{c.cohort}"
    if not lake.exists(table):
        raise InputError(f"{table} does not exist: run build_cohort (cohort {c.cohort}) first")
    version = lake.version(table)
    df = lake.read(table, version=version).cache()
    cols, empty = M.drop_empty(df, M.feature_columns(df, c.include, c.exclude))
    if not cols.all:
        raise InputError(
            f"no feature columns left in {table} after include {list(c.include)} and exclude {list(c.exclude)}"
        )
    n = df.count()
    if n < max(c.k) * 2:
        raise InputError(f"{table} has {n} persons: too few for k up to {max(c.k)}")
    fit = P.fit(df, cols, c.algorithm, list(c.k), c.seed, c.max_iter)
    assigned = fit.model.transform(df).select(
        "person_key", "index_date", "label", *cols.numeric, F.col("cluster").cast("int")
    )
    profile = P.profiles(assigned, list(cols.numeric), "label" if "label" in df.columns else None)
    experiment = setup(cfg)
    with tracked_run(
        experiment, f"{c.cohort}-{c.algorithm}-{lake.run_id}", lake.run_id, NAME, cohort=c.cohort, table=table
    ) as r:
        mlflow.log_params(
            {
                "algorithm": c.algorithm,
                "k_candidates": json.dumps(list(c.k)),
                "k": fit.k,
                "seed": c.seed,
                "max_iter": c.max_iter,
                "table": table,
                "table_version": version,
                "n_features": len(cols.all),
                "exclude": json.dumps(list(c.exclude)),
            }
        )
        mlflow.log_metrics(
            {f"silhouette_k{k}": s for k, s in fit.silhouettes.items()}
            | {"silhouette": fit.silhouettes[fit.k], "n": float(n)}
            | {f"size_cluster{k}": float(v) for k, v in fit.sizes.items()}
        )
        log_files(
            plots=lambda folder: cluster_plots(
                fit.silhouettes, fit.k, profile, folder, f"{c.cohort} {c.algorithm}"
            ).values(),
            metrics={"profiles.json": profile},
        )
        log_model(fit.model)
        run_id = r.info.run_id
    meta = [
        F.lit(fit.k).alias("k"),
        F.lit(c.algorithm).alias("algorithm"),
        F.lit(version).cast("bigint").alias("input_version"),
        F.lit(run_id).alias("mlflow_run_id"),
        F.lit(lake.run_id).alias("run_id"),
    ]
    w = lake.write(
        assigned.select("person_key", "index_date", "cluster", *meta),
        f"gold.clusters_{c.cohort}",
        mode="overwrite",
        merge_schema=True,
    )
    prof = spark.createDataFrame(
        profile,
        "cluster int, n long, share double, outcome_rate double, feature string, mean double, overall_mean double, smd double",
    )
    lake.write(prof.select("*", *meta), f"gold.cluster_profiles_{c.cohort}", mode="overwrite", merge_schema=True)
    df.unpersist()
    log.info(
        "%s: %d persons in %d %s clusters (silhouette %.3f; by k %s)",
        table,
        n,
        fit.k,
        c.algorithm,
        fit.silhouettes[fit.k],
        {k: round(s, 3) for k, s in fit.silhouettes.items()},
    )
    return {
        "k": fit.k,
        "silhouette": round(fit.silhouettes[fit.k], 4),
        "silhouettes": {k: round(s, 4) for k, s in fit.silhouettes.items()},
        "sizes": fit.sizes,
        "persons": w.rows,
        "table_version": version,
        "n_features": len(cols.all),
        "n_empty_features_dropped": len(empty),
        "mlflow_run_id": run_id,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
