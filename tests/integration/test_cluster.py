"""spark-submit on a real Spark standalone cluster: the session's pipeline lake (tests/pipeline_lake.py:
the demo pipeline through `spark-submit jobs/pipeline.py --env cluster` on a master and a worker
on 127.0.0.1, one job through its own entry script) is checked here: the Delta tables and the
pipeline's report opened in Chromium. The pipeline's skips and its resume after a failed step are
tested on a copy of the lake in test_incremental."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import require_tool


def test_demo_pipeline_through_spark_submit_on_a_standalone_cluster(pipeline: dict[str, Any]) -> None:
    summary = pipeline["summary"]
    for job in (
        "generate",
        "ingest_vcf",
        "ingest_ehr",
        "genomic_qc",
        "conform_ehr",
        "genetic_features",
        "build_cohort",
        "gwas",
        "train",
        "score",
        "cluster",
        "survival",
        "study",
        "report",
    ):
        assert any(line.startswith(job) and "succeeded" in line for line in summary.splitlines()), (job, summary)
    # the work ran on the cluster's executor, not in a local master
    apps = pipeline["apps"]
    assert apps and all(a["state"] == "FINISHED" for a in apps)
    tables = pipeline["tables"]
    assert tables["silver.person"] == 800 and tables["bronze.vcf_samples"] == 200
    assert (
        tables["gold.cohort_t2d_incident"] > 600
        and tables["gold.features_t2d_incident"] == tables["gold.cohort_t2d_incident"]
    )
    assert tables["gold.gwas_t2d"] > 300 and tables["gold.genetic_pcs"] > 150
    assert any(n.startswith("gold.predictions_") for n in tables)
    runs = pipeline["solo"]
    assert len(runs) == 1 and runs[0]["status"] == "succeeded" and runs[0]["env"] == "cluster"
    assert runs[0]["metrics"]["scored"] == "0"
    assert pipeline["report"].exists()


def ancestors(job: str, dag: dict[str, tuple[str, ...]]) -> set[str]:
    """The jobs ``job`` runs after, directly or through others."""
    out: set[str] = set()
    todo = list(dag[job])
    while todo:
        j = todo.pop()
        if j not in out:
            out.add(j)
            todo += dag[j]
    return out


def unordered_reads(runs: list[dict[str, Any]], dag: dict[str, tuple[str, ...]]) -> list[tuple[str, str, list[str]]]:
    """(job, table, the jobs that wrote it) for each table a job read (ops.runs inputs) that a job other
    than it and those it runs after also wrote: that writer may run at the same time, or after it. A
    table found absent (version -1) counts too, when a job of the run wrote it (the reader ran before
    its writer); the shared ops tables (the audit rows, the file ledger) are not data dependencies."""
    writers: dict[str, set[str]] = {}
    for r in runs:
        for o in r["outputs"]:
            writers.setdefault(o["table"], set()).add(r["job"])
    bad = []
    for r in runs:
        for i in r["inputs"]:
            if i["table"].startswith("ops."):
                continue
            others = writers.get(i["table"], set()) - {r["job"]}
            if i["version"] == -1 and not others:
                continue  # optional, and nobody wrote it
            if not others <= ancestors(r["job"], dag) or (i["version"] != -1 and not writers.get(i["table"])):
                bad.append((r["job"], i["table"], sorted(writers.get(i["table"], ()))))
    return bad


def test_every_table_a_job_read_was_written_by_a_job_its_spec_runs_after(pipeline: dict[str, Any]) -> None:
    """The specs' DAG is the order the data needs: what each job of the whole pipeline read, as the lake
    recorded it, came from a job it runs after. The Databricks bundle runs independent tasks at the
    same time, so a job reading a table of a job it is not declared after would race it there."""
    from omicslake.jobs import dag, pipeline_jobs

    runs, graph = pipeline["runs"], dag()
    assert sorted(r["job"] for r in runs) == sorted(pipeline_jobs())
    assert all(r["status"] == "succeeded" for r in runs)
    assert sum(len(r["inputs"]) for r in runs) > 50  # what the check looks at is there
    assert unordered_reads(runs, graph) == []
    # the check can fail: train without its declared dependency on build_cohort
    broken = {**graph, "train": ()}
    assert ("train", "gold.features_t2d_incident", ["build_cohort"]) in unordered_reads(runs, broken)
    # a reader that ran before an undeclared writer (it found the table absent), a second writer not
    # declared before the reader, and a table read that nobody wrote
    runs = [
        {"job": "a", "inputs": [{"table": "gold.t", "version": -1}], "outputs": []},
        {"job": "b", "inputs": [{"table": "gold.u", "version": 0}], "outputs": [{"table": "gold.t"}]},
        {"job": "c", "inputs": [{"table": "gold.v", "version": 3}], "outputs": [{"table": "gold.u"}]},
        {"job": "d", "inputs": [], "outputs": [{"table": "gold.u"}]},
    ]
    assert unordered_reads(runs, {"a": (), "b": ("c",), "c": (), "d": ()}) == [
        ("a", "gold.t", ["b"]),
        ("b", "gold.u", ["c", "d"]),
        ("c", "gold.v", []),
    ]
    assert unordered_reads(runs, {"a": ("b",), "b": ("c", "d"), "c": (), "d": ()}) == [("c", "gold.v", [])]


# The report job's sections as they appear on a full pipeline's lake (this pipeline: one cohort with
# a model, survival and clusters, one GWAS): h2 title -> the images (alt text) Chromium must load
# in it. The QC histograms and the PCA scatter carry no alt text. Quarantine is shown when a
# quarantine table has rows (the generated cohort without --messy has none).
REPORT_SECTIONS = {
    "Pipeline runs": [],
    "Data quality": [],
    "Genotype QC": ["", "", "", ""],  # call rate, het/hom-var ratio, AF, HWE p
    "Genetic principal components": [""],
    "GWAS": ["Manhattan", "QQ"],
    "Risk model: t2d_incident logistic": [
        "plots/calibration.png",
        "plots/feature_weights.png",
        "plots/pr.png",
        "plots/roc.png",
    ],
    "Time to event: t2d_incident cox_ridge": ["plots/km_by_risk.png", "plots/survival_calibration.png"],
    "Patient phenotypes (clusters): t2d_incident kmeans": ["plots/cluster_profiles.png", "plots/silhouette.png"],
    "Risk predictions: omicslake_t2d_incident_logistic": [],
    # the planted drug exposure (PIPELINE_SETS: jobs.generate.exposure_share): one study, two outcomes
    "Study: new_vs_old_drug": [  # sorted, as the check sorts them
        "Kaplan-Meier: modified",
        "Kaplan-Meier: outcome",
        "calibration: iptw",
        "covariate balance (love plot)",
        "forest plot",
        "preference score overlap",
    ],
    "Study completeness": [],
    "Study QA": [],
    "Scales": ["", "", "", ""],  # per scale (2): the loading heat map, the item response distributions
}


def test_full_pipeline_report_has_every_section_and_every_image_loads_in_chromium(
    pipeline: dict[str, Any], tmp_path: Path
) -> None:
    """The report the pipeline wrote (every job's output in the lake), opened in headless Chromium:
    every section the report job can write is there, every image in it loaded (naturalWidth > 0),
    no console error. The expected sections are the report's own headings (read from the source of
    the omicslake.report package, so a section added to the report must be added here), one Table 1
    per gold.table1_* table of the lake."""
    from report_check import chromium, probe

    import omicslake.report
    from omicslake.report import models

    if chromium() is None:
        require_tool("chromium")
    source = "".join(p.read_text() for p in sorted(Path(omicslake.report.__file__).parent.glob("*.py")))
    declared = [t.rstrip(": ") for t in re.findall(r"<h2>([^<{]*)", source) if t] + [
        t for t, _ in models.SECTIONS.values()
    ]
    assert len(declared) >= 10 and "Table 1" in declared, declared
    cohorts = sorted(n.split("table1_", 1)[1] for n in pipeline["tables"] if n.startswith("gold.table1_"))
    assert "t2d_incident" in cohorts
    expected = {**REPORT_SECTIONS, **{f"Table 1: {c}": [] for c in cohorts}}
    quarantined = sum(rows for n, rows in pipeline["tables"].items() if n.startswith("quarantine."))
    if quarantined:
        expected["Quarantine"] = []
    # every heading the report job declares is one the full lake must show (Quarantine: when it has rows;
    # Tables: after a maintain run, which is not part of the pipeline; Omics: when omics were generated,
    # which the pipeline's jobs.generate.omics_features=0 does not, and then it must not be shown)
    assert "Omics" in declared and not any(n.startswith("silver.omics_") for n in pipeline["tables"])
    assert all(
        any(
            title == d or title.startswith(d + ": ")
            for title in {**expected, "Quarantine": [], "Tables": [], "Omics": []}
        )
        for d in declared
    ), (declared, sorted(expected))
    page = pipeline["report"]
    text = page.read_text()
    assert 'src="http' not in text and "<link" not in text  # self-contained
    seen = probe(page, tmp_path)
    h2 = [t for tag, t in seen["headings"] if tag == "h2"]
    assert sorted(h2) == sorted(expected), (h2, sorted(expected))
    h3 = [t.split(" (the first ")[0] for tag, t in seen["headings"] if tag == "h3"]
    queries = ["Data queries"] if "quarantine.survey_values" in pipeline["tables"] else []
    assert h3 == [
        "gwas_t2d",
        "By subgroup (held-out)",
        "Calibration (held-out: intercept 0 and slope 1 are perfect; curve with 95% CIs in the plot)",
        # the survival model's, at the cohort's 365-day horizon (the longest training follow-up)
        "Calibration at day 365 (held-out, by decile of predicted risk; observed = 1 - Kaplan-Meier)",
        "Population",
        "Hazard ratios",
        # conf/studies/new_vs_old_drug.yaml configures the ldl_90d mediator
        "Mediation: natural indirect (nie) and direct (nde) effects, risk difference",
        "Incidence per 1,000 person-years (exact 95% CI)",
        "Visit windows",
        "Enrolment",
        *queries,
        "Test-retest",
    ], h3
    imgs = seen["image_list"]
    assert seen["images"] == len(imgs) == text.count("<img ") == sum(len(v) for v in expected.values()), (
        seen["images"],
        text.count("<img "),
    )
    by_section = {t: sorted(i["alt"] for i in imgs if i["section"] == t) for t in expected}
    assert by_section == expected, by_section
    unloaded = [(i["section"], i["alt"]) for i in imgs if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not unloaded and seen["broken"] == 0, unloaded
    assert seen["errors"] == 0 and not seen["console"], seen


def test_report_probe_catches_a_broken_image_and_a_script_error(tmp_path: Path) -> None:
    from report_check import chromium, probe

    if chromium() is None:
        require_tool("chromium")
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><head></head><body><h2>One</h2><img alt='x' src='data:image/png;base64,AAAA'>"
        "<script>nope()</script></body></html>"
    )
    caught = probe(bad, tmp_path)
    assert caught["broken"] == 1 and caught["errors"] >= 1
    assert caught["headings"] == [("h2", "One")]
    assert [(i["section"], i["alt"], i["width"]) for i in caught["image_list"]] == [("One", "x", 0)]
