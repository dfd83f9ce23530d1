"""Job conform_ehr: bronze Synthea, FHIR or OMOP tables -> OMOP-shaped, de-identified silver tables.

Per table: type the strings (a value that does not parse is named in _parse_errors), replace
source ids with keyed pseudonyms, normalise units, de-duplicate on the natural key (the latest
delivery wins, so a late correction replaces the earlier row), check the expectations of
``schemas/silver/<table>.yaml`` and MERGE only new or changed rows on the table's key; rows that
break a quarantine rule go to quarantine.<table>; a ``fail`` rule stops before the table is
written. Per-run results of every expectation go to ops.dq_results, and the reconciliation
(rows in = rows out + quarantined + duplicates) to the run's metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.contracts import Contract, check, enforce, load_contract
from omicslake.ehr.conform import dedupe, row_hash
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.resources import resource_dir

SPEC = JobSpec(
    name="conform_ehr",
    description="Bronze EHR -> OMOP-shaped, de-identified silver tables (dedupe, MERGE, units, expectations, quarantine).",
    after=("ingest_ehr",),
    config=("jobs.conform_ehr",),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
NON_DATA = {"_source_file", "_line", "_batch_id", "_row_hash", "run_id"}


def _concepts(spark: SparkSession, cfg: Config, lake: Lake) -> DataFrame:
    path = Path(cfg.jobs.conform_ehr.concepts).expanduser() if cfg.jobs.conform_ehr.concepts else resource_dir("schemas") / "vocab" / "concept.csv"
    if not path.exists():
        raise InputError(f"concept file {path} (jobs.conform_ehr.concepts) does not exist")
    lake.use_file(path)
    schema = "concept_id int, concept_name string, domain_id string, vocabulary_id string, concept_class_id string, standard_concept string, concept_code string, valid_start_date string, valid_end_date string, invalid_reason string"
    return spark.read.csv(str(path), header=True, schema=schema, multiLine=True, escape='"')


def _units(cfg: Config, lake: Lake) -> dict[str, Any]:
    path = Path(cfg.jobs.conform_ehr.units).expanduser() if cfg.jobs.conform_ehr.units else resource_dir("schemas") / "vocab" / "units.yaml"
    lake.use_file(path)
    return {str(k): v for k, v in yaml.safe_load(path.read_text()).items()}


def conform_table(lake: Lake, name: str, rows: DataFrame, contract: Contract, dq: list[tuple[Any, ...]], now: dt.datetime) -> dict[str, int]:
    """Dedupe, check, write new/changed rows and new quarantine rows; returns the reconciliation."""
    key = contract.keys[0]
    data_cols = [c for c in contract.names if c not in NON_DATA]
    rows = dedupe(rows).cache()
    totals = rows.agg(F.count(F.lit(1)), F.sum(F.col("_dup").cast("long"))).first()
    n_in, n_dup = int(totals[0]), int(totals[1] or 0)
    result = check(rows.where("NOT _dup").drop("_dup"), contract)
    kept = result.kept.withColumn("run_id", F.lit(lake.run_id)).withColumn("_row_hash", row_hash(data_cols))
    kept = kept.select(*contract.names).transform(enforce(contract))  # helper columns dropped
    quarantined = result.quarantined.select(
        F.col(key).alias("row_key"), "rule", "reason", F.to_json(F.struct(*data_cols)).alias("row_json"), "_source_file", "_line", F.lit(lake.run_id).alias("run_id")
    ).cache()
    n_q = quarantined.count()
    n_out = n_in - n_dup - n_q
    for e in contract.expectations:
        failed = result.counts.get(e.name, 0)
        outcome = "passed" if failed == 0 else {"warn": "warned", "quarantine": "quarantined", "fail": "failed"}[e.action]
        dq.append((lake.run_id, f"silver.{name}", e.name, e.kind, e.action, n_in - n_dup, failed, outcome, now))
    target = f"silver.{name}"
    if lake.exists(target):
        # Only new or changed rows: a rerun on the same bronze commits nothing.
        changed = kept.join(lake.read(target).select(key, "_row_hash"), [key, "_row_hash"], "left_anti").cache()
        if changed.count():
            lake.write(changed, target, mode="merge", keys=[key])
        changed.unpersist()
    else:
        lake.write(kept, target, mode="merge", keys=[key])
    qtable = f"quarantine.{name}"
    if n_q:
        qnew = quarantined
        if lake.exists(qtable):  # rows quarantined by an earlier run are not added again
            qnew = quarantined.join(lake.read(qtable).select("row_key", "rule"), ["row_key", "rule"], "left_anti").cache()
            n_q_new = qnew.count()
        else:
            n_q_new = n_q
        if n_q_new:
            lake.write(qnew.transform(enforce(load_contract(qtable))), qtable, mode="append")
        qnew.unpersist()
    result.release()
    rows.unpersist()
    quarantined.unpersist()
    log.info("silver.%s: %d rows in = %d out + %d quarantined + %d duplicates", name, n_in, n_out, n_q, n_dup)
    return {"in": n_in, "out": n_out, "quarantined": n_q, "duplicates": n_dup}


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.ehr import conform as C
    from omicslake.ehr.deid import pseudonym_key

    c = cfg.jobs.conform_ehr
    d = C.Deid(pseudonym_key(c), c.date_shift, c.date_shift_max_days, c.reference_date)
    first = {"synthea": "bronze.synthea_patients", "fhir": "bronze.fhir_patient", "omop": "bronze.omop_person"}[c.source]
    if not lake.exists(first):
        raise InputError(f"{first} does not exist: run ingest_ehr first (jobs.conform_ehr.source={c.source})")
    concept_table = _concepts(spark, cfg, lake).cache()
    concepts = F.broadcast(concept_table)
    units = _units(cfg, lake)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    dq: list[tuple[Any, ...]] = []
    recon: dict[str, dict[str, int]] = {}

    def raw(name: str) -> DataFrame | None:
        return lake.read(f"bronze.{c.source}_{name}") if lake.exists(f"bronze.{c.source}_{name}") else None

    def bronze(t: str) -> DataFrame | None:
        """The bronze rows of Synthea table t, or FHIR's / OMOP's in the same shape; None when absent."""
        from omicslake.ehr import fhir, omop

        if c.source == "synthea":
            name, shape = f"bronze.synthea_{t}", None
        else:
            table, shape = {"fhir": fhir.AS_SYNTHEA, "omop": omop.AS_SYNTHEA}[c.source][t]
            name = f"bronze.{table}"
        if not lake.exists(name):
            log.warning("%s does not exist: its silver table is not built in this run", name)
            return None
        df = lake.read(name)
        return shape(df, raw) if shape else df

    patients = bronze("patients")
    assert patients is not None
    person_rows = C.person_rows(patients, d)
    recon["person"] = conform_table(lake, "person", person_rows, load_contract("silver.person"), dq, now)
    person = lake.read("silver.person")
    death = person.where(F.col("death_date").isNotNull()).select("person_key", "death_date", *C.PROVENANCE).withColumn(
        "_malformed", F.lit(False)).withColumn("_parse_errors", F.array().cast("array<string>")).withColumn("_nk", F.col("person_key"))
    recon["death"] = conform_table(lake, "death", death, load_contract("silver.death"), dq, now)
    builders = [
        ("visit_occurrence", "encounters", lambda df: C.visit_rows(df, d)),
        ("condition_occurrence", "conditions", lambda df: C.condition_rows(df, d, concepts)),
        ("measurement", "observations", lambda df: C.measurement_rows(df, d, concepts, units)),
        ("drug_exposure", "medications", lambda df: C.drug_rows(df, d, concepts)),
        ("procedure_occurrence", "procedures", lambda df: C.procedure_rows(df, d, concepts)),
    ]
    facts: list[tuple[str, DataFrame]] = []
    for table, source_table, build in builders:
        src = bronze(source_table)
        if src is not None:
            facts.append((table, build(src)))
    if lake.exists("bronze.sample_link"):
        facts.append(("sample_link", C.sample_link_rows(lake.read("bronze.sample_link"), d)))
    for name, rows in facts:
        recon[name] = conform_table(lake, name, C.with_person(rows, person), load_contract(f"silver.{name}"), dq, now)
    lake.write(spark.createDataFrame(dq, load_contract("ops.dq_results").struct()), "ops.dq_results", mode="append")
    concept_table.unpersist()
    metrics: dict[str, Any] = {f"{t}_{k}": v for t, r in recon.items() for k, v in r.items()}
    metrics["quarantined"] = sum(r["quarantined"] for r in recon.values())
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
