"""Job omics_qc: sample and feature QC and normalisation of each omics assay in bronze, linked to
persons through the sample link.

Per assay (``jobs.omics_qc.assays``, default every assay in bronze.omics_samples; the latest file
ingested for it): sample QC (missing share, library size for counts, features detected; after
normalisation, outliers on the first PCs when ``pca_outlier_pcs`` is set, ``omicslake.omics.pca``), then
feature QC on the passing samples (missing share, low counts), normalisation per assay type
(``omicslake.omics.normalise``), then low variance. Writes silver.omics_<assay> (passing features x
passing samples), silver.omics_samples_<assay> (every sample: metrics, pass flag, rule, position in
the arrays, person_key and consent from silver.sample_link as for genomes: analyses use consented
samples only), and the failures to quarantine.omics_sample_qc / omics_feature_qc with rule and reason.
An assay none of whose samples is in silver.sample_link is refused (``require_link``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake import quarantine
from omicslake.config import Config
from omicslake.contracts import enforce, load_contract
from omicslake.errors import InputError
from omicslake.io.delta import Lake, check_identifier
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="omics_qc",
    description="QC and normalise each omics assay: silver.omics_<assay>, silver.omics_samples_<assay>, quarantine.",
    after=("ingest_omics", "conform_ehr"),
    config=("jobs.omics_qc",),
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    if not lake.exists("bronze.omics_samples"):
        log.info("no omics ingested (bronze.omics_samples does not exist); nothing to do")
        return {"assays": 0}
    samples_all = lake.read("bronze.omics_samples")
    assays = list(cfg.jobs.omics_qc.assays) or sorted(r.assay for r in samples_all.select("assay").distinct().collect())
    stats: dict[str, Any] = {"assays": 0}
    for assay in assays:
        check_identifier(assay, "assay name (jobs.omics_qc.assays)")
        stats[assay] = _one_assay(spark, cfg, lake, assay, samples_all)
        stats["assays"] += 1
    return stats


def _link(lake: Lake) -> DataFrame | None:
    if not lake.exists("silver.sample_link"):
        return None
    return lake.read("silver.sample_link").select("sample_id", "person_key", "consent")


def _one_assay(spark: SparkSession, cfg: Config, lake: Lake, assay: str, samples_all: DataFrame) -> dict[str, Any]:
    from omicslake.omics import normalise as N

    t = cfg.jobs.omics_qc
    allowed_meta = set(t.sample_meta_keys)
    latest = (
        samples_all.where(F.col("assay") == assay)
        .orderBy(F.col("_ingested_at").desc(), F.col("source_file").desc())
        .select("file_sha256", "source_file", "assay_type")
        .first()
    )
    if latest is None:
        raise InputError(
            f"assay {assay!r} is not in bronze.omics_samples; ingest it first (omicslake run ingest_omics)"
        )
    digest, source, kind = latest.file_sha256, latest.source_file, latest.assay_type
    srows = (
        samples_all.where(F.col("file_sha256") == digest)
        .orderBy("position")
        .select("sample_id", "position", "sample_meta")
        .collect()
    )  # one row per sample: ids and metadata, no values
    ids = [r.sample_id for r in srows]
    n = len(ids)
    link = _link(lake)
    linked: dict[str, tuple[str, bool]] = {}
    if link is not None:
        found = link.where(F.col("sample_id").isin(ids)).collect()  # the assay's samples only
        linked = {r.sample_id: (r.person_key, bool(r.consent)) for r in found}
        if not linked and t.require_link:
            raise InputError(
                f"assay {assay!r} ({source}): none of its {n} sample ids is in silver.sample_link, so none can be linked "
                "to a person; check that the matrix uses the biobank's sample ids (or set jobs.omics_qc.require_link=false)"
            )
    features = lake.read("bronze.omics_features").where(F.col("file_sha256") == digest)
    qc = N.sample_qc(features, n, kind, t)  # streams Arrow blocks: bronze's large splits are fine here
    # then partitions of bounded size in memory (values x 8 bytes), not of bronze's compressed splits
    nbytes = qc.features * max(n, 1) * 8
    features = features.repartition(
        max(spark.sparkContext.defaultParallelism, math.ceil(nbytes / (t.partition_mib * 2**20)))
    )
    # the two cached frames hold the values twice over (QC'd, normalised): past a GiB of values they go to
    # local disk only, so that they do not compete with the Parquet writers for the heap (an 80,000 x 5,000
    # assay ran a 6 GiB driver out of heap writing silver with both held in memory)
    level = StorageLevel.DISK_ONLY if nbytes > 2**30 else StorageLevel.MEMORY_AND_DISK
    passing = qc.passing
    if not passing:
        raise InputError(
            f"assay {assay!r} ({source}): every one of its {n} samples failed QC; see quarantine.omics_sample_qc"
        )

    def normalised(passing: list[int]) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
        f = (
            features.select("assay", "assay_type", "feature_id", "feature_meta", "values", "line")
            .transform(N.subset(passing))
            .transform(N.feature_qc(kind, t))
            .persist(level)
        )
        kept = f.where(F.col("rule").isNull()).drop("rule", "reason")
        norm, extra = N.normalise(kept, len(passing), kind, t, qc.total[passing])
        norm = norm.withColumn(
            "rule",
            F.when(F.coalesce(F.col("variance"), F.lit(0.0)) < t.min_variance, F.lit("low_variance"))
            if t.min_variance > 0
            else F.lit(None),
        ).persist(level)
        return f, norm, extra

    f, norm, extra = normalised(passing)
    pca_out = 0
    if t.pca_outlier_pcs > 0 and len(passing) > t.pca_outlier_pcs + 2:
        from omicslake.omics import pca

        g = pca.gram(norm.where(F.col("rule").isNull()), t.pca_features)
        flagged = pca.outliers(pca.scores(g, t.pca_outlier_pcs)[0], t.pca_outlier_z) if g.size else []
        if flagged:  # the assay is normalised again without them (size factors, feature QC, means)
            more = {
                passing[o.index]: (
                    "pca_outlier",
                    f"PC{o.pc} score {o.z:+.2f} robust SDs from the median (|z| > {t.pca_outlier_z})",
                )
                for o in flagged
            }
            qc = qc.failing(more)
            passing = qc.passing
            f.unpersist()
            norm.unpersist()
            f, norm, extra = normalised(passing)
            pca_out = len(flagged)
    silver = norm.where(F.col("rule").isNull()).drop("rule").withColumn("run_id", F.lit(lake.run_id))
    out = lake.write(
        silver.transform(enforce(load_contract(f"silver.omics_{assay}"))), f"silver.omics_{assay}", mode="overwrite"
    )

    # features kept out: the QC rules before normalisation, then low variance
    failed = f.where(F.col("rule").isNotNull()).select(
        "feature_id", "line", "rule", "reason", "missing_fraction", F.lit(None).cast("double").alias("variance")
    )
    low_var = norm.where(F.col("rule").isNotNull()).select(
        "feature_id",
        "line",
        "rule",
        F.format_string(f"variance %.6g < {t.min_variance}", F.coalesce("variance", F.lit(0.0))).alias("reason"),
        "missing_fraction",
        "variance",
    )
    bad = failed.unionByName(low_var)
    n_fq = quarantine.write(
        lake,
        "quarantine.omics_feature_qc",
        quarantine.rows(
            bad,
            F.concat_ws(":", F.lit(assay), "feature_id"),
            ["missing_fraction", "variance"],
            F.lit(source),
            "line",
            lake.run_id,
        ),
    )

    position = {j: k for k, j in enumerate(passing)}
    sf = extra.get("size_factor")
    sample_rows = []
    for j, r in enumerate(srows):
        person, consent = linked.get(r.sample_id, (None, False))
        k = position.get(j)
        sample_rows.append(
            (
                r.sample_id,
                k,
                person,
                consent,
                float(qc.total[j]),
                int(qc.detected[j]),
                float(qc.missing_fraction[j]),
                float(sf[k]) if sf is not None and k is not None and np.isfinite(sf[k]) else None,
                k is not None,
                qc.rule[j],
                # sample metadata (GEO !Sample_ lines, AnnData obs, BIOM metadata) often holds donor ids, ages and
                # dates: only the keys config allows leave bronze
                {k: v for k, v in (r.sample_meta or {}).items() if k in allowed_meta},
                source,
                lake.run_id,
            )
        )
    samples_contract = load_contract(f"silver.omics_samples_{assay}")
    sdf = spark.createDataFrame(sample_rows, samples_contract.struct())
    lake.write(sdf, f"silver.omics_samples_{assay}", mode="overwrite")
    reasons = {ids[j]: qc.reason[j] for j in range(n) if qc.rule[j] is not None}
    failed_s = spark.createDataFrame(
        [(f"{assay}:{r[0]}", r[9], reasons[r[0]], r[4], r[5], r[6]) for r in sample_rows if r[9] is not None],
        "row_key string, rule string, reason string, total double, detected bigint, missing_fraction double",
    )
    n_sq = quarantine.write(
        lake,
        "quarantine.omics_sample_qc",
        quarantine.rows(
            failed_s, "row_key", ["total", "detected", "missing_fraction"], F.lit(source), None, lake.run_id
        ),
    )
    f.unpersist()
    norm.unpersist()
    n_linked = sum(1 for r in sample_rows if r[2] is not None)
    log.info("%s: %d of %d samples passed, %d features in silver", assay, len(passing), n, out.rows)
    return {
        "samples": n,
        "samples_passed": len(passing),
        "samples_linked": n_linked,
        "samples_consented": sum(1 for r in sample_rows if r[3]),
        "features_passed": out.rows,
        "features_quarantined": n_fq,
        "samples_quarantined": n_sq,
        "samples_pca_outliers": pca_out,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
