"""The lake's report: one self-contained static HTML page (images inline as data URIs).

Sections, in this order, each present when its tables or files exist: pipeline runs (ops.runs), data
quality (ops.dq_results of the latest checking run), quarantine counts by rule (``ops``); sample and
variant QC histograms, PCA scatter coloured by recorded race, GWAS Manhattan and QQ plots
(``genomics``); per omics assay a sample PCA scatter and per association a volcano plot
(``omics``); Table 1 of each cohort (``cohorts``); the latest risk, survival and cluster models'
metrics and plots from MLflow (``models``); each predictions table's risk bands and drift checks
(``predictions``); each comparative effect study's population, hazard ratios, PS overlap, love
plot, Kaplan-Meier, forest and calibration plots and incidence (``study``); study completeness and
the scales' reliability, retest ICC and loading heat maps (``survey``). Only aggregates and per-sample QC/PC numbers are read; no
EHR row reaches the page. ``render`` holds the HTML helpers; the report job writes the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from omicslake.io.delta import Lake
from omicslake.report import cohorts, genomics, models, omics, ops, predictions, study, survey
from omicslake.report.render import Section, document


def build(
    lake: Lake, root: str, gwas_plots: Mapping[str, Mapping[str, bytes]], experiment_id: str | None
) -> tuple[str, dict[str, Any]]:
    """The report of ``lake`` as ``(html, found)``: the page, and what it shows (item -> count: runs,
    dq_rows, quarantine_rules, qc_plots, pca, gwas, table1, model_plots; an item is absent when its
    section is, except table1). ``root`` is the lake's root as the header names it; ``gwas_plots`` the
    PNGs the gwas job left, by GWAS name and file name (``genomics.gwas``); ``experiment_id`` the MLflow
    experiment of the lake's model runs, or None when it has no MLflow store (``models.models``)."""
    header = f"<h1>omicslake report</h1><p><small>lake {html.escape(root)} · run {html.escape(lake.run_id)}</small></p>"
    tables = lake.names()
    sections: list[Section] = [
        ops.runs(lake),
        ops.data_quality(lake),
        ops.quarantine(lake, tables),
        genomics.genotype_qc(lake),
        genomics.principal_components(lake),
        genomics.gwas(gwas_plots),
        omics.omics(lake, tables),
        cohorts.table1(lake, tables),
        models.models(experiment_id),
        predictions.predictions(lake, tables),
        study.studies(lake, tables),
        survey.completeness(lake, tables),
        survey.study_qa(lake, tables),
        survey.scales(lake, tables),
        ops.maintenance(lake, tables),
    ]
    found: dict[str, Any] = {}
    for s in sections:
        found.update(s.found)
    return document([header] + [s.html for s in sections if s.html]), found
