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
from omicslake.io import files
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
    # under the lake's root, a folder or an object store (each file whole or not at all)
    path = cfg.layout.reports(f"report-{lake.run_id}.html")
    files.write_text(path, page, cfg)
    files.write_text(cfg.layout.reports("report.html"), page, cfg)
    log.info("report: %s (%d KB)", path, len(page) // 1024)
    return {"report": cfg.layout.portable(path), "bytes": len(page), **found}  # <root>/...: ops names no root


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
