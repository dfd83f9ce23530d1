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
    config=("mlflow", "jobs.gwas.name", "jobs.gwas.plots_dir"),  # where the GWAS plots are
    always_run=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    page, found = build(lake, cfg.layout.root, gwas_plots(cfg, lake.names()), experiment(cfg))
    # under the lake's root, a folder or an object store (each file whole or not at all)
    path = cfg.layout.reports(f"report-{lake.run_id}.html")
    files.write_text(path, page, cfg)
    files.write_text(cfg.layout.reports("report.html"), page, cfg)
    log.info("report: %s (%d KB)", path, len(page) // 1024)
    return {"report": cfg.layout.portable(path), "bytes": len(page), **found}  # <root>/...: ops names no root


def gwas_plots(cfg: Config, tables: list[str]) -> dict[str, dict[str, bytes]]:
    """The PNGs the gwas job left for each ``gold.gwas_<name>`` among ``tables``, read from where it writes
    them (``gwas.plots_location``): GWAS name -> file name -> bytes, for the names whose Manhattan plot is
    there (each file looked up once: on an object store a lookup is a request)."""
    from omicslake.genomics.gwas.plots import PNGS, plots_location

    plots_dirs = {cfg.jobs.gwas.name: cfg.jobs.gwas.plots_dir}
    out: dict[str, dict[str, bytes]] = {}
    for table in tables:
        if not table.startswith("gold.gwas_"):
            continue
        name = table.split(".", 1)[1][len("gwas_") :]
        found: dict[str, bytes] = {}
        for f in PNGS:  # the Manhattan plot first: without it the QQ plot is not looked for
            loc = plots_location(cfg.layout, name, plots_dirs, f)
            if not files.is_file(loc, cfg):
                break
            found[f] = files.read_bytes(loc, cfg)
        if found:
            out[name] = found
    return out


def experiment(cfg: Config) -> str | None:
    """The MLflow experiment of the lake's model runs (MLflow pointed at its store), or None when the lake
    has no MLflow store (``tracking.has_store``)."""
    from omicslake.ml.tracking import has_store, setup

    return str(setup(cfg)) if has_store(cfg) else None


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
