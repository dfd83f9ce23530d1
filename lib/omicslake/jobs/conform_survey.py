"""Job conform_survey: bronze REDCap exports -> silver survey values typed by the data dictionary.

Per project, the latest export (the last one landed) is conformed with the dictionary it was
checked against at ingest (``survey.records``: instruments carried per row, branching logic,
typing, rules). Participants get keyed pseudonyms (HMAC of project and record id, the EHR's key)
and link to silver.person's key through the project's latest linkage file. Outputs, rebuilt
whole on each run from bronze (survey data are small; a new export replaces the old):

- silver.survey_values: the long table (participant, event, instrument, instance, field, typed value);
- silver.survey_form_<project>_<instrument>: one wide table per instrument (``wide_tables``);
- silver.survey_participant: participant -> person;
- quarantine.survey_values: values that broke a rule (type, choice, range, required).

With ``jobs.conform_ehr.date_shift`` on, every date and datetime value moves by the linked patient's
EHR offset (``survey.dates``), so a survey date minus an EHR date is unchanged by the shift; a refused
date's raw text is withheld in quarantine (it did not parse as a date, or broke its range, so it
cannot be shifted); bronze keeps it.

Reconciliation: value rows built = rows in silver from this run + rows quarantined, each side
counted from the tables.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from omicslake import quarantine
from omicslake.config import Config
from omicslake.contracts import enforce, load_contract
from omicslake.ehr.silver import rows_of_batch
from omicslake.errors import InputError, ReconciliationError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.survey import dictionary as D
from omicslake.survey.dates import shift_values, survey_shift_days, withhold_dates
from omicslake.survey.records import value_rows

SPEC = JobSpec(
    name="conform_survey",
    description="Bronze REDCap exports -> silver survey values typed by their data dictionary (branching logic, pseudonyms, quarantine).",
    after=("ingest_survey", "conform_ehr"),
    config=("jobs.conform_survey", "jobs.conform_ehr"),  # the pseudonym key settings (the EHR's key)
)
NAME = SPEC.name
log = logging.getLogger(__name__)

VALUES_SCHEMA = T.StructType(
    [
        T.StructField("record_id", T.StringType()),
        T.StructField("event", T.StringType()),
        T.StructField("instrument", T.StringType()),
        T.StructField("instance", T.IntegerType()),
        T.StructField("field", T.StringType()),
        T.StructField("field_type", T.StringType()),
        T.StructField("validation", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("value", T.StringType()),
        T.StructField("value_label", T.StringType()),
        T.StructField("value_number", T.DoubleType()),
        T.StructField("value_date", T.DateType()),
        T.StructField("value_datetime", T.TimestampType()),
        T.StructField("value_codes", T.ArrayType(T.StringType())),
        T.StructField("logic_unknown", T.BooleanType()),
        T.StructField("rule", T.StringType()),
        T.StructField("reason", T.StringType()),
        T.StructField("raw_value", T.StringType()),
        T.StructField("site", T.StringType()),
        T.StructField("_source_file", T.StringType()),
        T.StructField("_line", T.LongType()),
    ]
)


def table_suffix(project: str, instrument: str) -> str:
    """``<project>_<instrument>`` as an identifier (anything but letters, digits and _ becomes _)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{project}_{instrument}").lower()


def dictionary_of(lake: Lake, project: str, digest: str) -> D.Dictionary:
    """The project's dictionary landed with SHA-256 ``digest``, parsed again from bronze."""
    rows = (
        lake.read("bronze.survey_dictionary")
        .where((F.col("project") == project) & (F.col("_file_sha256") == digest))
        .orderBy("_line")
        .collect()  # one row per dictionary field: small
    )
    if not rows:
        raise InputError(
            f"bronze.survey_dictionary has no dictionary {digest[:12]}... of project {project}: run ingest_survey"
        )
    return D.parse(
        [[r[c] or "" for c in D.COLUMNS] for r in rows], rows[0]["_source_file"], first_line=rows[0]["_line"]
    )


def latest_exports(records: DataFrame) -> list[tuple[str, str, str, str]]:
    """(project, export file, its digest, its dictionary digest): the last landed export per project."""
    files = records.groupBy("project", "_source_file", "_file_sha256", "_dictionary_sha256").agg(
        F.max("_ingested_at").alias("at")
    )
    w = Window.partitionBy("project").orderBy(F.col("at").desc(), F.col("_source_file").desc())
    latest = files.withColumn("_n", F.row_number().over(w)).where("_n = 1").collect()  # one row per project
    return [(r.project, r._source_file, r._file_sha256, r._dictionary_sha256) for r in latest]


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.ehr.deid import pseudonym, pseudonym_key

    c = cfg.jobs.conform_survey
    if not lake.exists("bronze.survey_records"):
        if c.projects:
            raise InputError("bronze.survey_records does not exist: run ingest_survey first")
        log.warning("bronze.survey_records does not exist (no survey landed): nothing to conform")
        return {"projects": 0}
    key = pseudonym_key(cfg.jobs.conform_ehr)
    ehr = cfg.jobs.conform_ehr
    records = lake.read("bronze.survey_records")
    exports = [e for e in latest_exports(records) if not c.projects or e[0] in c.projects]
    values_parts: list[DataFrame] = []
    forms: list[tuple[str, str, list[str]]] = []  # project, instrument, its field columns in order
    for project, path, digest, d_digest in exports:
        d = dictionary_of(lake, project, d_digest)
        rows = records.where((F.col("project") == project) & (F.col("_file_sha256") == digest))
        repeating = {
            r[0] for r in rows.select("redcap_repeat_instrument").distinct().collect() if r[0]
        }  # a handful of instrument names
        unknown = sorted(repeating - set(d.forms))
        if unknown:
            raise InputError(
                f"{path}: redcap_repeat_instrument names instrument(s) {unknown} that the dictionary lacks"
            )
        rdd = rows.select("raw_values", "_source_file", "_line").rdd.flatMap(
            lambda r, d=d, rep=frozenset(repeating): [
                (*v, r["_source_file"], r["_line"]) for v in value_rows(d, r["raw_values"], rep)
            ]
        )
        df = spark.createDataFrame(rdd, VALUES_SCHEMA)
        if ehr.date_shift:  # the linked patient's EHR offset (survey.dates), before the record id is dropped
            link = _linkage(lake, project)
            df = (
                df.join(F.broadcast(link), "record_id", "left")
                if link is not None
                else df.withColumn("patient_id", F.lit(None).cast("string"))
            )
            days = survey_shift_days(key, project, F.col("record_id"), F.col("patient_id"), ehr.date_shift_max_days)
            df = shift_values(df, days)
        df = df.select(
            F.lit(project).alias("project"),
            pseudonym(key, f"survey:{project}", F.col("record_id")).alias("participant_key"),
            *[F.col(n) for n in VALUES_SCHEMA.names if n != "record_id"],
        )
        values_parts.append(df)
        for form in d.forms:
            cols = [f.name for f in d.form_fields(form) if not f.stops_at_bronze and f.name != d.record_id]
            forms.append((project, form, [*cols, f"{form}_complete"]))
        if d.fields and any(f.logic_error for f in d.fields):
            log.warning(
                "%s: %d branching logic(s) not evaluable, counted as shown",
                project,
                sum(1 for f in d.fields if f.logic_error),
            )
    if not values_parts:
        return {"projects": 0}
    built = values_parts[0]
    for p in values_parts[1:]:
        built = built.unionByName(p)
    built = built.cache()
    n_built = built.count()
    bad = built.where(F.col("rule").isNotNull())
    if ehr.date_shift:  # a refused date cannot be shifted: its text stays in bronze only
        bad = withhold_dates(bad)
    kept = (
        built.where(F.col("rule").isNull()).drop("rule", "reason", "raw_value").withColumn("run_id", F.lit(lake.run_id))
    )
    qrows = quarantine.rows(
        bad,
        F.concat_ws(
            "|",
            "participant_key",
            F.coalesce("event", F.lit("")),
            "instrument",
            F.col("instance").cast("string"),
            "field",
        ),
        ["project", "event", "instrument", "instance", "field", "field_type", "validation", "raw_value", "site"],
        "_source_file",
        "_line",
        lake.run_id,
    )
    contract = load_contract("silver.survey_values")
    with lake.undo_on_error(("silver.survey_values", "quarantine.survey_values")):
        lake.write(kept.transform(enforce(contract)), "silver.survey_values", mode="overwrite")
        n_q_new = quarantine.write(lake, "quarantine.survey_values", qrows)
        # Counted again from the tables: silver rows of this run, quarantine rows of this batch.
        n_out = lake.read("silver.survey_values").where(F.col("run_id") == lake.run_id).count()
        n_q = (
            rows_of_batch(lake.read("quarantine.survey_values"), qrows, list(quarantine.DEDUP_KEY)).count()
            if lake.exists("quarantine.survey_values")
            else 0
        )
        if n_out + n_q != n_built:
            raise ReconciliationError(
                f"silver.survey_values: {n_built} values built but {n_out} in silver + {n_q} quarantined; tables put back"
            )
    metrics: dict[str, Any] = {
        "projects": len(exports),
        "values_in": n_built,
        "values_out": n_out,
        "quarantined": n_q,
        "quarantined_new": n_q_new,
    }
    for r in built.groupBy("status").count().collect():  # a handful of statuses
        metrics[f"status_{r[0]}"] = int(r[1])
    for r in bad.groupBy("rule").count().collect():
        metrics[f"rule_{r[0]}"] = int(r[1])
    _participants(spark, lake, key, exports)
    if c.wide_tables:
        silver = lake.read("silver.survey_values")
        for project, form, cols in forms:
            sub = silver.where((F.col("project") == project) & (F.col("instrument") == form))
            wide = (
                sub.groupBy("project", "participant_key", "event", "instance")
                .pivot("field", cols)
                .agg(F.first("value"))
            )
            wide = wide.select(
                "project", "participant_key", "event", "instance", *[F.col(f"`{x}`").cast("string") for x in cols]
            )
            lake.write(wide, f"silver.survey_form_{table_suffix(project, form)}", mode="overwrite")
    built.unpersist()
    log.info("silver.survey_values: %d values in = %d out + %d quarantined", n_built, n_out, n_q)
    return metrics


def _linkage(lake: Lake, project: str) -> DataFrame | None:
    """(record_id, patient_id) of the project's latest linkage file; None when none was landed."""
    if not lake.exists("bronze.survey_linkage"):
        return None
    lp = lake.read("bronze.survey_linkage").where(F.col("project") == project)
    last = lp.agg(F.max("_ingested_at")).first()[0]  # one value
    if last is None:
        return None
    return lp.where(F.col("_ingested_at") == last).select("record_id", "patient_id").dropDuplicates(["record_id"])


def _participants(spark: SparkSession, lake: Lake, key: bytes, exports: list[tuple[str, str, str, str]]) -> None:
    from omicslake.ehr.deid import pseudonym

    parts = []
    records = lake.read("bronze.survey_records")
    for project, _path, digest, _d in exports:
        ids = (
            records.where((F.col("project") == project) & (F.col("_file_sha256") == digest))
            .select("record_id")
            .distinct()
        )
        lp = _linkage(lake, project)
        if lp is not None:
            ids = ids.join(lp, "record_id", "left")
        else:
            ids = ids.withColumn("patient_id", F.lit(None).cast("string"))
        parts.append(
            ids.select(
                F.lit(project).alias("project"),
                pseudonym(key, f"survey:{project}", F.col("record_id")).alias("participant_key"),
                F.when(F.col("patient_id").isNotNull(), pseudonym(key, "person", F.col("patient_id"))).alias(
                    "person_key"
                ),
                F.lit(lake.run_id).alias("run_id"),
            )
        )
    df = parts[0]
    for p in parts[1:]:
        df = df.unionByName(p)
    lake.write(
        df.transform(enforce(load_contract("silver.survey_participant"))), "silver.survey_participant", mode="overwrite"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
