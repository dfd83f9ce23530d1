"""Job generate: a synthetic cohort (Synthea CSV, FHIR NDJSON, VCF.bgz) with planted truth."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.io.layout import landing_folder
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="generate",
    description="Write a synthetic cohort whose truth is known: Synthea-style CSV, FHIR R4 bulk NDJSON, a "
    "multi-sample VCF.bgz, a sample link file and manifest.json (default folder <lake.root>/landing).",
    after=(),
    config=("jobs.generate", "hail.reference_genome"),
    hail=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.synth.cohort import generate

    g = cfg.jobs.generate
    out = landing_folder(cfg.layout, g.out)
    log.info(
        "generating %d patients, %d samples x %d variants (seed %d) into %s",
        g.patients,
        g.samples,
        g.variants,
        g.seed,
        out,
    )
    manifest = generate(
        spark, g, out, cfg.hail.reference_genome, cfg.layout.local_scratch("_tmp", f"generate-{lake.run_id}")
    )
    rows = sum(int(f["rows"]) for f in manifest["files"].values())
    lake.use_file(out / "manifest.json", role="wrote")  # the pipeline skips generate only while it is in place
    return {
        "out": str(out),
        "ehr_rows": rows,
        "patients": g.patients,
        "genotypes": g.samples * g.variants,
        "seconds": manifest["seconds"],
        "t2d_oracle_auroc": manifest["outcomes"]["t2d_incident_365d"]["oracle_auroc"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
