"""Job psychometrics: scale scores and the psychometric evaluation of every scale in conf/scales.

For each scale (``survey.scales``): its items' answered values are read from
silver.survey_values (one scale's item matrix is small: collected), reverse-keyed and scored per
participant, event and instance into gold.scale_scores, each dated by the scale's date field
(``survey.dates``: the day the answers were given, which build_cohort's point-in-time scale features
need). Per scale / subscale and event
(``survey.psychometrics``): Cronbach's alpha with its Feldt interval, McDonald's omega, floor and
ceiling shares, the number of factors by parallel analysis (gold.scale_reliability); per item:
corrected item-total correlation and alpha if deleted (gold.scale_items); the minres loadings
of that many factors, varimax-rotated (gold.scale_loadings); test-retest ICC between two events
(gold.scale_retest). Study QA: completeness by project, event and instrument
(gold.survey_completeness, ``survey.qa``). All gold tables are rebuilt on each run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from omicslake.config import Config
from omicslake.contracts import enforce, load_contract
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.resources import resource_dir
from omicslake.survey import psychometrics as P
from omicslake.survey.scales import ScaleSpec, keyed, load_scales, score

SPEC = JobSpec(
    name="psychometrics",
    description="Scale scores (conf/scales), psychometrics (alpha, omega, item-total, EFA, retest ICC) and survey completeness.",
    after=("conform_survey",),
    config=("jobs.psychometrics",),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
MIN_ROWS = 10  # fewer complete rows than this for a scale at an event: no reliability row


def _f(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def scales_dir(cfg: Config) -> Path:
    d = cfg.jobs.psychometrics.scales_dir
    return Path(d).expanduser() if d else resource_dir("conf") / "scales"


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    c = cfg.jobs.psychometrics
    folder = scales_dir(cfg)
    specs = load_scales(folder)
    for p in sorted(folder.glob("*.yaml")):
        lake.use_file(p)
    if not lake.exists("silver.survey_values"):
        log.warning("silver.survey_values does not exist (no survey conformed): no scale scored")
        return {"scales": 0}
    values = lake.read("silver.survey_values").where(F.col("status") == "answered")
    out: dict[str, list[tuple[Any, ...]]] = {"scores": [], "reliability": [], "items": [], "loadings": [], "retest": []}
    metrics: dict[str, Any] = {"scales": 0}
    for spec in specs:
        rows = values.where(F.col("field").isin(list(spec.items)))
        if spec.project:
            rows = rows.where(F.col("project") == spec.project)
        pdf = rows.select(
            "project", "participant_key", "event", "instance", "field", "value_number"
        ).toPandas()  # one scale
        if pdf.empty:
            log.warning("scale %s: no answered item in silver.survey_values", spec.name)
            continue
        pdf["event"] = pdf["event"].fillna("")
        wide = pdf.pivot_table(
            index=["project", "participant_key", "event", "instance"],
            columns="field",
            values="value_number",
            aggfunc="first",
        ).reindex(columns=list(spec.items))
        x = keyed(wide.to_numpy(), spec)
        keys = list(wide.index)
        metrics["scales"] += 1
        _scale(spec, keys, x, out, c.ci, c.parallel_iterations, c.seed, c.retest_events, lake.run_id)
    tables = {
        "scores": "gold.scale_scores",
        "reliability": "gold.scale_reliability",
        "items": "gold.scale_items",
        "loadings": "gold.scale_loadings",
        "retest": "gold.scale_retest",
    }
    for k, table in tables.items():
        contract = load_contract(table)
        plain = [tuple(v.item() if isinstance(v, np.generic) else v for v in row) for row in out[k]]
        struct = contract.struct()
        if k == "scores":  # the response date comes from the survey's date fields, joined below
            struct = T.StructType([f for f in struct.fields if f.name != "response_date"])
        df = spark.createDataFrame(plain, struct)
        if k == "scores":
            df = _dated(df, values, specs)
        lake.write(df.transform(enforce(contract)), table, mode="overwrite")
        metrics[f"{k}_rows"] = len(out[k])
    # Study QA: completeness by project, event and instrument
    from omicslake.survey.qa import completeness

    all_values = lake.read("silver.survey_values")
    quarantined = lake.read_optional("quarantine.survey_values")
    if quarantined is not None:
        # silver holds each project's latest export only: so do the refused values counted beside it
        current = all_values.select(F.col("_source_file").alias("source_file")).distinct()
        quarantined = quarantined.join(current, "source_file", "left_semi")
    qa = completeness(all_values, quarantined).withColumn("run_id", F.lit(lake.run_id))
    contract = load_contract("gold.survey_completeness")
    metrics["completeness_rows"] = lake.write(
        qa.transform(enforce(contract)), "gold.survey_completeness", mode="overwrite"
    ).rows
    # Study QA: protocol visit windows and enrolment over time
    from omicslake.survey.qa import enrolment, visit_windows

    values = lake.read("silver.survey_values")
    windows = [
        visit_windows(values, w.event, w.field, w.anchor_event, w.anchor_field, w.min_days, w.max_days)
        for w in c.visit_windows
    ]
    if windows:
        dev = windows[0]
        for w in windows[1:]:
            dev = dev.unionByName(w)
        dev = dev.withColumn("run_id", F.lit(lake.run_id))
        contract = load_contract("gold.survey_visit_windows")
        metrics["visit_window_rows"] = lake.write(
            dev.transform(enforce(contract)), "gold.survey_visit_windows", mode="overwrite"
        ).rows
    if c.enrolment_field:
        enrolled = enrolment(values, c.enrolment_field).withColumn("run_id", F.lit(lake.run_id))
        contract = load_contract("gold.survey_enrolment")
        metrics["enrolment_months"] = lake.write(
            enrolled.transform(enforce(contract)), "gold.survey_enrolment", mode="overwrite"
        ).rows
    for r in out["reliability"]:
        if r[1] == "total":
            metrics[f"alpha_{r[0]}_{r[2] or 'all'}"] = r[5]
    return metrics


def _dated(scores: DataFrame, values: DataFrame, specs: list[ScaleSpec]) -> DataFrame:
    """gold.scale_scores rows with ``response_date``: each scale's responses dated by its date_field /
    event_date_fields (``survey.dates.response_dates``); null for a scale that names none."""
    from omicslake.survey.dates import KEYS, response_dates

    parts = []
    for spec in specs:
        if not (spec.date_field or spec.event_date_fields):
            continue
        v = values.where(F.col("project") == spec.project) if spec.project else values
        parts.append(response_dates(v, spec.date_field, spec.event_date_fields).withColumn("scale", F.lit(spec.name)))
    if not parts:
        return scores.withColumn("response_date", F.lit(None).cast("date"))
    dates = parts[0]
    for p in parts[1:]:
        dates = dates.unionByName(p)
    on = [scores[k].eqNullSafe(dates[k]) for k in [*KEYS, "scale"]]
    return scores.join(dates, on, "left").select(*[scores[c] for c in scores.columns], dates["response_date"])


def _scale(
    spec: ScaleSpec,
    keys: list[tuple[str, str, str, int]],
    x: np.ndarray,
    out: dict[str, list[tuple[Any, ...]]],
    ci: float,
    iterations: int,
    seed: int,
    retest_events: tuple[str, ...],
    run_id: str,
) -> None:
    """Append one scale's rows of every gold table to out."""
    events = np.array([k[2] for k in keys])
    lo, hi = spec.range
    scores: dict[str, np.ndarray] = {}
    for part, items in spec.parts().items():
        s, answered = score(x, spec, items)
        scores[part] = s
        for key, v, a in zip(keys, s, answered, strict=True):
            if a > 0:
                out["scores"].append(
                    (key[0], key[1], key[2] or None, int(key[3]), spec.name, part, _f(v), int(a), len(items), run_id)
                )
        for event in sorted(set(events)):
            cols = [spec.items.index(i) for i in items]
            sub = x[events == event][:, cols]
            complete = P.complete_rows(sub)
            if len(complete) < MIN_ROWS:
                continue
            alpha, low, high = P.cronbach_alpha(sub, ci)
            k = len(items)
            lowest, highest = (lo * k, hi * k) if spec.score == "sum" else (lo, hi)
            floor, ceiling = P.floor_ceiling(s[events == event], lowest, highest)
            n_factors = P.parallel_analysis(sub, iterations, seed)[0] if k >= 3 else 1
            omega = P.omega(sub) if k >= 3 else float("nan")
            out["reliability"].append(
                (spec.name, part, event or None, len(complete), k, _f(alpha), _f(low), _f(high), _f(omega),
                 _f(floor), _f(ceiling), n_factors, run_id)
            )  # fmt: skip
            st = P.item_stats(sub)
            for i, item in enumerate(items):
                out["items"].append(
                    (spec.name, part, event or None, item, _f(st.mean[i]), _f(st.sd[i]), _f(st.item_total[i]),
                     _f(st.alpha_if_deleted[i]), run_id)
                )  # fmt: skip
            if part == "total" and k >= 3:
                loadings = P.factor_loadings(sub, min(n_factors, k - 1))
                for i, item in enumerate(items):
                    for f in range(loadings.shape[1]):
                        out["loadings"].append((spec.name, event or None, item, f + 1, _f(loadings[i, f]), run_id))
    ev = list(retest_events) if retest_events else sorted(set(events))[:2]
    if len(ev) == 2:
        for part, s in scores.items():
            by = {}
            for key, v in zip(keys, s, strict=True):
                if key[3] == 1:
                    by.setdefault((key[0], key[1]), {})[key[2]] = v
            pairs = np.array([[d.get(ev[0], np.nan), d.get(ev[1], np.nan)] for d in by.values()], dtype=float)
            n = len(P.complete_rows(pairs)) if len(pairs) else 0
            if n >= MIN_ROWS:
                icc2, icc3 = P.icc(pairs)
                out["retest"].append((spec.name, part, ev[0] or None, ev[1] or None, n, _f(icc2), _f(icc3), run_id))


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
