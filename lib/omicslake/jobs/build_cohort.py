"""Job build_cohort: cohorts defined in conf/cohorts/*.yaml -> gold.cohort_<name>,
gold.features_<name>, gold.table1_<name>.

For each configured cohort: index dates, criteria, labels and survival fields from the silver
EHR tables (``features.cohort``), point-in-time features from events strictly before the index
date plus genetic PCs and PRS of consented, linked genomes, scale scores of linked survey participants
dated by their response (gold.scale_scores, ``features.cohort.scale_events``) and omics features of
consented, linked, QC-passed samples (silver.omics_<assay>, ``omics.features``) (``features.patient``), and Table 1
by outcome (``features.table1``, also as Markdown under <lake>/reports/). The attrition (persons
left after each criterion) goes to the run's metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.io.files import write_text
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="build_cohort",
    description="Cohorts from conf/cohorts/*.yaml: gold.cohort_<name> (labels, survival), gold.features_<name>, gold.table1_<name>.",
    after=("conform_ehr", "genetic_features", "psychometrics", "omics_qc"),
    config=("jobs.build_cohort",),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
SILVER = {
    "visits": "visit_occurrence",
    "conditions": "condition_occurrence",
    "measurements": "measurement",
    "drugs": "drug_exposure",
    "procedures": "procedure_occurrence",
}


def _uses_scales(spec: Any) -> bool:
    sels = [spec.index, spec.outcome, *spec.include, *spec.exclude]
    return bool(spec.features.scales) or any(e.domain == "scale" and not getattr(e, "age", ()) for e in sels)


def _with_scales(lake: Lake, ev: DataFrame, specs: list[Any]) -> DataFrame:
    """The EHR events plus the dated scale scores of linked participants, when a cohort uses scales."""
    from omicslake.features.cohort import scale_events

    if not any(_uses_scales(s) for s in specs):
        return ev
    missing = [t for t in ("gold.scale_scores", "silver.survey_participant") if not lake.exists(t)]
    if missing:
        raise InputError(
            f"a cohort uses scale scores but {missing} do(es) not exist: run conform_survey and psychometrics"
        )
    return ev.unionByName(scale_events(lake.read("gold.scale_scores"), lake.read("silver.survey_participant")))


def _omics(lake: Lake, specs: list[Any]) -> dict[str, DataFrame]:
    """assay -> the long values of the features the cohorts ask for (``omics.features.long_values``);
    an assay whose silver tables are absent is left out (its features are null, with a warning)."""
    from omicslake.omics.features import long_values, wanted

    asked: dict[str, tuple[set[str], str]] = {}
    for spec in specs:
        for assay, o in spec.features.omics.items():
            ids, key = asked.get(assay, (set(), o.date_key))
            if key != o.date_key:
                raise InputError(f"cohorts read assay {assay} with two date_keys ({key!r}, {o.date_key!r}): use one")
            asked[assay] = (ids | set(wanted(o)), key)
    out = {}
    for assay, (ids, key) in sorted(asked.items()):
        tables = (f"silver.omics_{assay}", f"silver.omics_samples_{assay}")
        if not all(lake.exists(t) for t in tables):
            log.warning(
                "cohort features ask for assay %s but %s do(es) not exist: its features are null", assay, tables
            )
            continue
        omics = lake.read(tables[0])
        found = omics.where(F.col("feature_id").isin(sorted(ids))).select("feature_id").distinct().count()
        if found < len(ids):
            log.warning("assay %s: %d of the %d features asked for are not in %s (absent or failed QC)", assay,
                        len(ids) - found, len(ids), tables[0])  # fmt: skip
        out[assay] = long_values(omics, lake.read(tables[1]), ids, key).cache()
    return out


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.features import cohort as C
    from omicslake.features import patient as P
    from omicslake.features.spec import cohort_sources, load_cohort
    from omicslake.features.table1 import table1, to_markdown

    c = cfg.jobs.build_cohort
    specs = [load_cohort(n) for n in c.cohorts]  # config errors before any work
    for n in c.cohorts:
        for path in cohort_sources(n):
            lake.use_file(path)
    if not lake.exists("silver.person"):
        raise InputError("silver.person does not exist: run conform_ehr first")
    person = lake.read("silver.person")
    ehr = C.events(**{k: lake.read_optional(f"silver.{t}") for k, t in SILVER.items()})
    ev = _with_scales(lake, ehr, specs).cache()
    end = F.to_date(F.lit(c.end_of_data)) if c.end_of_data else None
    if end is None:
        last = ehr.agg(F.max("start_date")).first()[0]  # type: ignore[index]  # the EHR's end, not a survey's
        if last is None:
            raise InputError("the silver event tables are empty: nothing to build a cohort from")
        end = F.lit(last)
        log.info(
            "end of data (censoring) = %s, the latest event in silver; set jobs.build_cohort.end_of_data to fix it",
            last,
        )
    genetics = None
    if lake.exists("silver.sample_link") and (lake.exists("gold.genetic_pcs") or lake.exists("gold.prs")):
        genetics = P.genetics_by_person(
            lake.read("silver.sample_link"),
            lake.read_optional("gold.genetic_pcs"),
            lake.read_optional("gold.prs"),
            max(s.features.n_pcs for s in specs),
        ).cache()
    omics = _omics(lake, specs)
    metrics: dict[str, Any] = {}
    for spec in specs:
        cohort, candidates = C.build_cohort(ev, person, spec, end)
        cohort = cohort.withColumn("cohort", F.lit(spec.name)).withColumn("run_id", F.lit(lake.run_id))
        out = lake.write(cohort, f"gold.cohort_{spec.name}", mode="overwrite", merge_schema=True)
        steps = C.attrition(candidates, spec)
        saved = lake.read(f"gold.cohort_{spec.name}")
        feats = P.features(saved, ev, person, spec.features, genetics, omics).join(
            saved.select("person_key", "label", "time_days", "event"), "person_key"
        )
        feats = feats.withColumn("run_id", F.lit(lake.run_id))
        f_out = lake.write(feats, f"gold.features_{spec.name}", mode="overwrite", merge_schema=True)
        stats = saved.agg(F.count(F.lit(1)), F.sum("label"), F.sum(F.col("complete_followup").cast("int"))).first()
        assert stats is not None
        m = {
            "persons": int(stats[0]),
            "cases": int(stats[1] or 0),
            "complete_followup": int(stats[2] or 0),
            "features": len(feats.columns) - 6,
            "attrition": steps,
            "version": out.version,
            "features_version": f_out.version,
        }
        if c.table1:
            fsaved = lake.read(f"gold.features_{spec.name}")
            variables = list(spec.table1) or [
                v for v in ("age_at_index", "female", "race", "charlson_index") if v in fsaved.columns
            ]
            missing = [v for v in variables if v not in fsaved.columns]
            if missing:
                raise InputError(
                    f"cohort {spec.name}: table1 lists {missing}, which are not feature columns; known: {sorted(fsaved.columns)[:40]}..."
                )
            t1 = table1(spark, fsaved, variables)
            lake.write(
                t1.withColumn("run_id", F.lit(lake.run_id)),
                f"gold.table1_{spec.name}",
                mode="overwrite",
                merge_schema=True,
            )
            report = cfg.layout.reports(f"table1_{spec.name}.md")
            write_text(
                report,
                f"# Table 1: {spec.name}\n\n{spec.description.strip()}\n\n" + to_markdown(t1.orderBy("row").collect()),
                cfg,
            )  # ~50 rows
        metrics[spec.name] = m
        log.info("cohort %s: %d persons, %d with the outcome; attrition %s", spec.name, m["persons"], m["cases"], steps)
    ev.unpersist()
    for df in omics.values():
        df.unpersist()
    if genetics is not None:
        genetics.unpersist()
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
