"""Report sections on the models: the latest MLflow run of each model job (train, survival,
cluster) with its parameters, metrics and plots; for the risk model also its held-out metrics by
subgroup and its calibration before and after recalibration; for the survival model its held-out
calibration at the horizon by risk decile."""

from __future__ import annotations

import html
import json
from pathlib import Path

from omicslake.ml.tracking import METRICS, PLOTS
from omicslake.report.render import Section, img, table

SECTIONS = {  # MLflow runs by the job that logged them: title, metrics shown
    "train": ("Risk model", ("test_",)),
    "survival": (
        "Time to event",
        ("test_c_index", "train_c_index", "n_", "events_", "scale", "test_calibration_", "horizon_"),
    ),
    "cluster": ("Patient phenotypes (clusters)", ("silhouette", "size_", "n")),
}


def models(experiment_id: str | None) -> Section:
    """One section per model job in ``SECTIONS`` with a run in the MLflow experiment ``experiment_id`` (of
    the tracking store MLflow is pointed at; its latest run, tagged ``omicslake.job``): cohort and model in
    the heading, the run and its input table version, the metrics with the job's prefixes, every PNG under
    ``plots/``; the risk model adds ``subgroup_table`` and ``calibration_table``. Nothing when
    ``experiment_id`` is None (the lake has no MLflow store). Counts ``model_plots`` (images shown) when
    there is a section."""
    if experiment_id is None:
        return Section()
    import mlflow

    exp = experiment_id
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
        out.append(table([metrics], sorted(metrics)))
        imgs = [
            img(
                Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=a.path)).read_bytes(),
                a.path,
            )
            for a in client.list_artifacts(run.info.run_id, PLOTS)
        ]
        n_imgs += len(imgs)
        out.append("<div class='grid'>" + "".join(imgs) + "</div>")
        if job == "train":
            out.append(subgroup_table(run.info.run_id))
            out.append(calibration_table(run.info.run_id))
        if job == "survival":
            out.append(survival_calibration_table(run.info.run_id))
    html_out = "".join(out)
    return Section(html_out, {"model_plots": n_imgs} if html_out else {})


def subgroup_table(run_id: str) -> str:
    """The held-out AUROC, AUPRC and Brier score by sex, age band and race of the train run ``run_id``
    (its ``metrics/subgroups.json``, rounded to 3 places) under a sub-heading; empty for a run
    without the file."""
    import mlflow

    try:
        subs = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{METRICS}/subgroups.json")
            ).read_text()
        )
        for s in subs:
            for k in ("auroc", "auprc", "brier"):
                s[k] = None if s[k] is None else round(s[k], 3)
        return "<h3>By subgroup (held-out)</h3>" + table(
            subs, ["group", "level", "n", "cases", "auroc", "auprc", "brier"]
        )
    except Exception:  # noqa: BLE001 - an older run without the file
        return ""


def calibration_table(run_id: str) -> str:
    """Held-out calibration (intercept, slope, Brier) of the risk after recalibration beside the model's
    own output, from the train run ``run_id``'s ``metrics/calibration.json``, under a sub-heading; empty
    for a run logged before the recalibration."""
    import mlflow

    try:
        cal = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{METRICS}/calibration.json")
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
        + table(rows, ["output", "intercept", "slope", "brier"])
    )


def survival_calibration_table(run_id: str) -> str:
    """The survival run ``run_id``'s held-out calibration at its horizon (``metrics/survival_calibration.json``):
    per risk decile n, events, mean predicted risk and Kaplan-Meier observed risk with its 95 % CI,
    rounded to 3 places, under a sub-heading; empty for a run without the file."""
    import mlflow

    try:
        cal = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{METRICS}/survival_calibration.json")
            ).read_text()
        )
        cols = ["group", "n", "events", "predicted", "observed", "observed_lower", "observed_upper"]
        rows = [{k: round(g[k], 3) if isinstance(g[k], float) else g[k] for k in cols} for g in cal["groups"]]
        horizon = float(cal["horizon_days"])
    except Exception:  # noqa: BLE001 - a run logged before the calibration
        return ""
    return (
        f"<h3>Calibration at day {horizon:g} (held-out, by decile of predicted risk; observed = 1 - Kaplan-Meier)</h3>"
        + table(rows, cols)
    )
