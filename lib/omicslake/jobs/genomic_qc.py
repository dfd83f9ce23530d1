"""Job genomic_qc: split multi-allelics, Hail sample_qc and variant_qc with thresholds from config.

Writes silver.sample_qc (every sample, pass flag, rule), silver.variant_qc (every split variant
of the passing samples), silver.genotypes (passing variants x passing samples, dosages in the
sample order of silver.genotype_samples), and the failures to quarantine.sample_qc /
quarantine.variant_qc with the rule they failed (omicslake.quarantine: one shape, a rerun adds nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake import quarantine
from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.io.files import remove_tree
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="genomic_qc",
    description="Split multi-allelic sites and run Hail sample/variant QC: silver.sample_qc, variant_qc, genotypes.",
    after=("ingest_vcf",),
    config=("jobs.genomic_qc", "hail.reference_genome"),
    hail=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.genomics import qc

    t = cfg.jobs.genomic_qc
    reference = t.reference_genome or cfg.hail.reference_genome
    reference = None if reference.lower() == "none" else reference
    samples_df = lake.read("bronze.vcf_samples")
    files = list(t.source_files)
    if not files:
        latest = samples_df.orderBy(F.col("_ingested_at").desc(), F.col("source_file").desc()).first()
        if latest is None:
            raise InputError("bronze.vcf_samples is empty: run ingest_vcf first")
        files = [latest.source_file]
    order = (
        samples_df.where(F.col("source_file").isin(files))
        .groupBy("file_sha256", "source_file")
        .agg(F.sort_array(F.collect_list(F.struct("sample_index", "sample_id"))).alias("s"))
        .collect()
    )  # one row per file: the sample lists, not genotype data
    if not order:
        raise InputError(f"none of {files} is in bronze.vcf_samples; ingest it first (omicslake run ingest_vcf)")
    sample_lists = {tuple(x.sample_id for x in r.s) for r in order}
    if len(sample_lists) != 1:
        raise InputError(f"files {files} do not share one sample list in one order; run QC on them separately")
    samples = list(next(iter(sample_lists)))
    shas = [r.file_sha256 for r in order]
    variants = lake.read("bronze.variants").where(F.col("file_sha256").isin(shas) & F.col("_invalid_rule").isNull())

    # Checkpointed once: sample QC, variant QC and the genotype table all read this matrix, and
    # rebuilding it from Delta rows three times cost more than writing it once.
    tmp = cfg.layout.tmp(f"genomic_qc-{lake.run_id}.mt")
    mt = qc.split(qc.matrix_from_bronze(variants, samples, reference)).checkpoint(tmp, overwrite=True)
    result = qc.run_qc(mt, t)
    sample_df = qc.sample_rows(result.samples).to_spark(flatten=False).withColumn("run_id", F.lit(lake.run_id))
    s_out = lake.write(sample_df, "silver.sample_qc", mode="overwrite")
    source = ";".join(sorted(r.source_file for r in order))
    quarantine.write(
        lake, "quarantine.sample_qc", qc.quarantine_samples(lake.read("silver.sample_qc"), source, lake.run_id)
    )
    variant_df = qc.variant_rows(result.variants).to_spark(flatten=False).withColumn("run_id", F.lit(lake.run_id))
    v_out = lake.write(variant_df, "silver.variant_qc", mode="overwrite")
    quarantine.write(
        lake, "quarantine.variant_qc", qc.quarantine_variants(lake.read("silver.variant_qc"), source, lake.run_id)
    )
    # The column order of the QC'd matrix is the order of the dosage arrays (sample ids only).
    passing = result.genotypes.s.collect()
    gsamples = spark.createDataFrame([(s, i) for i, s in enumerate(passing)], "sample_id string, genotype_index int")
    lake.write(gsamples, "silver.genotype_samples", mode="overwrite")
    g_out = lake.write(qc.genotype_rows(result.genotypes).to_spark(flatten=False), "silver.genotypes", mode="overwrite")
    n_pass_s = len(passing)
    remove_tree(tmp, cfg)
    return {
        "samples": s_out.rows,
        "samples_passed": n_pass_s,
        "variants_split": v_out.rows,
        "variants_passed": g_out.rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
