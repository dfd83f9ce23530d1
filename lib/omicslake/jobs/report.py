"""Job report: one self-contained static HTML file per run (images inline as data URIs).

What the page holds and how each section is read is ``omicslake.report``; this job writes it to
``<lake>/reports/report-<run>.html`` and ``<lake>/reports/report.html`` (the latest).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.report import build

SPEC = JobSpec(
    name="report",
    description="A self-contained HTML report of the lake: runs, data quality, QC, PCA, GWAS, Table 1, model metrics.",
    after=("gwas", "score", "cluster", "survival", "psychometrics", "omics_assoc", "study"),
    config=("mlflow",),
    always_run=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    page, found = build(spark, cfg, lake)
    out_dir = cfg.lake_root / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"report-{lake.run_id}.html"
    path.write_text(page)
    (out_dir / "report.html").write_text(page)
    log.info("report: %s (%d KB)", path, len(page) // 1024)
    return {"report": str(path), "bytes": len(page), **found}


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
