"""Job genetic_features: LD-pruned HWE-normalised PCA -> gold.genetic_pcs; PRS -> gold.prs."""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="genetic_features",
    description="Genetic principal components (gold.genetic_pcs) and a polygenic score (gold.prs) from silver.genotypes.",
    after=("genomic_qc",),
    config=("jobs.genetic_features", "jobs.genomic_qc.reference_genome", "jobs.generate.out", "hail.reference_genome"),
    hail=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def weights_file(cfg: Config) -> Path | None:
    from omicslake.io.layout import landing_folder

    c = cfg.jobs.genetic_features
    if c.prs_weights:
        p = Path(c.prs_weights).expanduser()
        if not p.exists():
            raise InputError(f"PRS weights file {p} (jobs.genetic_features.prs_weights) does not exist")
        return p
    found = sorted(
        glob.glob(str(landing_folder(cfg.layout, cfg.jobs.generate.out) / "prs" / f"{c.prs_name}_weights.tsv"))
    )
    return Path(found[0]) if found else None


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.genomics import features

    c = cfg.jobs.genetic_features
    reference = cfg.jobs.genomic_qc.reference_genome or cfg.hail.reference_genome
    reference = None if reference.lower() == "none" else reference
    samples = [
        r.sample_id for r in lake.read("silver.genotype_samples").orderBy("genotype_index").collect()
    ]  # ids only
    genotypes = lake.read("silver.genotypes")
    mt = features.matrix_from_genotypes(genotypes, samples, reference)
    scores, eigenvalues, n_used = features.genetic_pcs(mt, c.n_pcs, c.ld_r2, c.ld_window_bp, c.min_maf_for_pca)
    pcs = scores.to_spark(flatten=False).withColumnRenamed("s", "sample_id").withColumn("run_id", F.lit(lake.run_id))
    pc_out = lake.write(pcs, "gold.genetic_pcs", mode="overwrite")
    metrics: dict[str, Any] = {
        "samples": pc_out.rows,
        "pca_variants": n_used,
        "eigenvalues": [round(e, 3) for e in eigenvalues],
    }
    wfile = weights_file(cfg)
    if wfile is None:
        log.info("no PRS weights file: gold.prs not written")
        return metrics
    lake.use_file(wfile)
    weights = spark.read.csv(
        str(wfile),
        sep="\t",
        header=True,
        schema="contig string, position int, effect_allele string, other_allele string, weight double",
    )
    aligned = features.align_weights(weights, genotypes).cache()
    n_weights, n_matched, n_flipped = weights.count(), aligned.count(), aligned.where("flipped").count()
    prs = (
        features.polygenic_scores(genotypes, aligned, samples)
        .withColumn("score_name", F.lit(c.prs_name))
        .withColumn("run_id", F.lit(lake.run_id))
    )
    lake.write(prs, "gold.prs", mode="overwrite")
    aligned.unpersist()
    metrics.update(prs_weights=n_weights, prs_matched=n_matched, prs_flipped=n_flipped)
    log.info("PRS %s: %d of %d weights matched (%d flipped)", c.prs_name, n_matched, n_weights, n_flipped)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
