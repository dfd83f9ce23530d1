"""Job report: one self-contained static HTML file per run (images inline as data URIs).

Sections, each present when its tables exist: pipeline runs (ops.runs), data quality
(ops.dq_results of the latest conform run, quarantine counts by rule), sample and variant QC
histograms, PCA scatter coloured by recorded race, GWAS Manhattan and QQ plots, Table 1 of each
cohort, and the latest model's held-out ROC / PR / calibration plots and subgroup metrics from
MLflow. Only aggregates and per-sample QC/PC numbers are read; no EHR row reaches the page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="report",
    description="A self-contained HTML report of the lake: runs, data quality, QC, PCA, GWAS, Table 1, model metrics.",
    after=("gwas", "score", "cluster", "survival"),
    config=("mlflow",),
    always_run=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f3f5f8}.ok{color:#1e7b34}.bad{color:#b03a2e}img{max-width:100%;border:1px solid #eee;margin:.3rem}
.grid{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-start}.grid img{max-width:48%;height:auto}small{color:#666}"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return _img(buf.getvalue())


def _img(data: bytes, alt: str = "") -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _table(rows: list[dict[str, Any]] | list[Any], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        get = r.get if isinstance(r, dict) else (lambda k, r=r: r[k])
        cells = []
        for c in columns:
            v = get(c)
            cls = (
                ' class="ok"'
                if v in ("succeeded", "passed")
                else ' class="bad"'
                if v in ("failed", "quarantined")
                else ""
            )
            cells.append(f"<td{cls}>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hist(values: list[float], title: str, xlabel: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist([v for v in values if v is not None], bins=40, color="#1f4e79")
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    fig.tight_layout()
    return _png(fig)


def build(spark: SparkSession, cfg: Config, lake: Lake) -> tuple[str, dict[str, Any]]:
    """The report's HTML and what it contains (section -> count of items)."""
    parts: list[str] = [
        f"<h1>omicslake report</h1><p><small>lake {html.escape(str(cfg.lake_root))} · run {html.escape(lake.run_id)}</small></p>"
    ]
    found: dict[str, Any] = {}
    if lake.exists("ops.runs"):
        runs = (
            lake.read("ops.runs")
            .orderBy(F.col("started_at").desc())
            .limit(40)
            .select("run_id", "job", "status", F.round("seconds", 1).alias("seconds"), "started_at", "error")
            .collect()
        )
        found["runs"] = len(runs)
        parts.append(
            "<h2>Pipeline runs</h2>" + _table(runs, ["started_at", "run_id", "job", "status", "seconds", "error"])
        )
    if lake.exists("ops.dq_results"):
        dq = lake.read("ops.dq_results")
        last = dq.agg(F.max_by("run_id", "checked_at")).first()[0]  # type: ignore[index]
        rows = dq.where(F.col("run_id") == last).orderBy("table_name", "expectation").collect()
        found["dq_rows"] = len(rows)
        parts.append(
            f"<h2>Data quality</h2><p>Expectations of run {html.escape(str(last))}.</p>"
            + _table(rows, ["table_name", "expectation", "action", "rows_checked", "rows_failed", "outcome"])
        )
    tables = lake.names()
    q = []
    for name in tables:
        if name.startswith("quarantine."):
            for r in lake.read(name).groupBy("rule").count().orderBy("rule").collect():  # no rows when empty
                q.append({"table": name, "rule": r["rule"], "rows": r["count"]})
    if q:
        found["quarantine_rules"] = len(q)
        parts.append("<h2>Quarantine</h2>" + _table(q, ["table", "rule", "rows"]))
    qc_imgs = []
    if lake.exists("silver.sample_qc"):
        s = lake.read("silver.sample_qc").select("call_rate", "r_het_hom_var").toPandas()  # one row per sample
        qc_imgs += [
            _hist(list(s["call_rate"]), "Sample call rate", "call rate"),
            _hist(list(s["r_het_hom_var"]), "Het/hom-var ratio", "ratio"),
        ]
    if lake.exists("silver.variant_qc"):
        v = lake.read("silver.variant_qc").select("af", "hwe_p").sample(fraction=1.0, seed=1).limit(200_000).toPandas()
        qc_imgs += [_hist(list(v["af"]), "Variant allele frequency", "AF"), _hist(list(v["hwe_p"]), "HWE p-value", "p")]
    if qc_imgs:
        found["qc_plots"] = len(qc_imgs)
        parts.append("<h2>Genotype QC</h2><div class='grid'>" + "".join(qc_imgs) + "</div>")
    if lake.exists("gold.genetic_pcs"):
        pcs = lake.read("gold.genetic_pcs").select("sample_id", "pc1", "pc2")
        if lake.exists("silver.sample_link") and lake.exists("silver.person"):
            race = (
                lake.read("silver.sample_link")
                .join(lake.read("silver.person").select("person_key", "race_source_value"), "person_key")
                .select("sample_id", F.coalesce("race_source_value", F.lit("unknown")).alias("group"))
            )
            pcs = pcs.join(race, "sample_id", "left")
        else:
            pcs = pcs.withColumn("group", F.lit("all"))
        p = pcs.fillna({"group": "not linked"}).toPandas()  # one row per sample: two numbers and a label
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for g, part in p.groupby("group"):
            ax.scatter(part["pc1"], part["pc2"], s=8, label=str(g), alpha=0.8)
        ax.set(title="Genetic PCs coloured by recorded race (a proxy for ancestry)", xlabel="PC1", ylabel="PC2")
        ax.legend(fontsize=7)
        fig.tight_layout()
        found["pca"] = 1
        parts.append("<h2>Genetic principal components</h2>" + _png(fig))
    reports = cfg.lake_root / "reports"
    gw = sorted(reports.glob("gwas_*/manhattan.png"))
    if gw:
        found["gwas"] = len(gw)
        parts.append("<h2>GWAS</h2>")
        for m in gw:
            parts.append(
                f"<h3>{html.escape(m.parent.name)}</h3><div class='grid'>"
                + _img(m.read_bytes(), "Manhattan")
                + (_img((m.parent / "qq.png").read_bytes(), "QQ") if (m.parent / "qq.png").exists() else "")
                + "</div>"
            )
    t1 = [n for n in tables if n.startswith("gold.table1_")]
    for name in t1:
        rows = lake.read(name).orderBy("row").collect()
        shown = [
            {
                "variable": r.variable if r.level is None else f"{r.variable}: {r.level}",
                "overall": r.overall,
                "outcome 0": r.outcome_0,
                "outcome 1": r.outcome_1,
                "SMD": "" if r.smd is None else f"{r.smd:.3f}",
            }
            for r in rows
        ]
        parts.append(
            f"<h2>Table 1: {html.escape(name.split('table1_', 1)[1])}</h2>"
            + _table(shown, ["variable", "overall", "outcome 0", "outcome 1", "SMD"])
        )
    found["table1"] = len(t1)
    model_html, n_model = _model_section(cfg)
    if model_html:
        found["model_plots"] = n_model
        parts.append(model_html)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>omicslake report</title><style>{CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    )
    return page, found


SECTIONS = {  # MLflow runs by the job that logged them: title, metrics shown
    "train": ("Risk model", ("test_",)),
    "survival": ("Time to event (AFT)", ("test_c_index", "train_c_index", "n_", "events_", "scale")),
    "cluster": ("Patient phenotypes (clusters)", ("silhouette", "size_", "n")),
}


def _model_section(cfg: Config) -> tuple[str, int]:
    """The latest MLflow run of each model job: parameters, metrics and its PNGs."""
    if not cfg.mlflow.tracking_uri and not (cfg.lake_root / "mlflow" / "mlflow.db").exists():
        return "", 0
    import mlflow

    from omicslake.ml.tracking import setup

    exp = setup(cfg)
    client = mlflow.MlflowClient()
    out: list[str] = []
    n_imgs = 0
    for job, (title, prefixes) in SECTIONS.items():
        runs = mlflow.search_runs(
            experiment_ids=[exp],
            filter_string=f"tags.`omicslake.job` = '{job}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        if not runs:
            continue
        run = runs[0]
        p = run.data.params
        out += [
            f"<h2>{title}: {html.escape(p.get('cohort', run.data.tags.get('omicslake.cohort', '')))} "
            f"{html.escape(p.get('model', p.get('algorithm', '')))}</h2>",
            f"<p>MLflow run {html.escape(run.info.run_id)} · table {html.escape(p.get('table', ''))} version "
            f"{html.escape(p.get('table_version', ''))}</p>",
        ]
        metrics = {k: round(v, 4) for k, v in run.data.metrics.items() if k.startswith(prefixes)}
        out.append(_table([metrics], sorted(metrics)))
        imgs = [
            _img(
                Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=a.path)).read_bytes(),
                a.path,
            )
            for a in client.list_artifacts(run.info.run_id, "plots")
        ]
        n_imgs += len(imgs)
        out.append("<div class='grid'>" + "".join(imgs) + "</div>")
        if job == "train":
            try:
                subs = json.loads(
                    Path(
                        mlflow.artifacts.download_artifacts(
                            run_id=run.info.run_id, artifact_path="metrics/subgroups.json"
                        )
                    ).read_text()
                )
                for s in subs:
                    for k in ("auroc", "auprc", "brier"):
                        s[k] = None if s[k] is None else round(s[k], 3)
                out.append(
                    "<h3>By subgroup (held-out)</h3>"
                    + _table(subs, ["group", "level", "n", "cases", "auroc", "auprc", "brier"])
                )
            except Exception:  # noqa: BLE001 - an older run without the file
                pass
            out.append(_calibration_table(run.info.run_id))
    return "".join(out), n_imgs


def _calibration_table(run_id: str) -> str:
    """Held-out calibration of the risk (after recalibration) beside the model's own output."""
    import mlflow

    try:
        cal = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="metrics/calibration.json")
            ).read_text()
        )
        rows = [
            {
                "output": f"risk ({cal['map']['method']})" if k == "calibrated" else "model output (uncalibrated)",
                **{m: None if cal[k].get(m) is None else round(cal[k][m], 3) for m in ("intercept", "slope", "brier")},
            }
            for k in ("calibrated", "uncalibrated")
        ]
    except Exception:  # noqa: BLE001 - a run logged before the recalibration
        return ""
    return (
        "<h3>Calibration (held-out: intercept 0 and slope 1 are perfect; curve with 95% CIs in the plot)</h3>"
        + _table(rows, ["output", "intercept", "slope", "brier"])
    )


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
