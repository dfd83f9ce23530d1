"""Job conform_ehr: bronze Synthea, FHIR or OMOP tables -> OMOP-shaped, de-identified silver tables.

Per table: type the strings (a value that does not parse is named in _parse_errors), replace
source ids with keyed pseudonyms, normalise units, de-duplicate on the natural key (the latest
delivery wins, so a late correction replaces the earlier row), check the expectations of
``schemas/silver/<table>.yaml`` and MERGE only new or changed rows on the table's key; rows that
break a quarantine rule go to quarantine.<table>; a ``fail`` rule stops before the table is
written. Per-run results of every expectation go to ops.dq_results, and the reconciliation
(rows read = rows in silver from this batch + quarantined + duplicates, each side counted from the
tables themselves) to the run's metrics and ops.dq_results; a mismatch fails the job (see
``conform_table``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake import quarantine
from omicslake.config import Config
from omicslake.contracts import Contract, load_contract
from omicslake.ehr import silver
from omicslake.errors import InputError, ReconciliationError
from omicslake.io.delta import Lake
from omicslake.io.files import remove_tree
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


def _concepts(spark: SparkSession, cfg: Config, lake: Lake) -> DataFrame:
    path = (
        Path(cfg.jobs.conform_ehr.concepts).expanduser()
        if cfg.jobs.conform_ehr.concepts
        else resource_dir("schemas") / "vocab" / "concept.csv"
    )
    if not path.exists():
        raise InputError(f"concept file {path} (jobs.conform_ehr.concepts) does not exist")
    lake.use_file(path)
    schema = (
        "concept_id int, concept_name string, domain_id string, vocabulary_id string, concept_class_id string, "
        "standard_concept string, concept_code string, valid_start_date string, valid_end_date string, invalid_reason string"
    )
    return spark.read.csv(str(path), header=True, schema=schema, multiLine=True, escape='"')


def _units(cfg: Config, lake: Lake) -> dict[str, Any]:
    path = (
        Path(cfg.jobs.conform_ehr.units).expanduser()
        if cfg.jobs.conform_ehr.units
        else resource_dir("schemas") / "vocab" / "units.yaml"
    )
    lake.use_file(path)
    return {str(k): v for k, v in yaml.safe_load(path.read_text()).items()}


def conform_table(
    lake: Lake,
    name: str,
    source: DataFrame,
    build: Callable[[DataFrame], DataFrame],
    contract: Contract,
    dq: list[tuple[Any, ...]],
    now: dt.datetime,
    on_mismatch: str = "fail",
    rows_per_partition: int = silver.ROWS_PER_PARTITION,
) -> dict[str, int]:
    """Conform one table (``ehr.silver.conform``), write its new or changed rows and its new
    quarantine rows, and reconcile; returns the counts, each side counted from what is really there:

    - ``in``: rows of ``source`` (what was read), before anything is built from them;
    - ``duplicates``: rows that lost to a later delivery of the same natural key;
    - ``quarantined``: rows that broke a quarantine rule;
    - ``out``: after the MERGE, the rows of silver.<name> whose keys came from this batch
      (and, checked, the rows of quarantine.<name> from this batch, by its de-duplication key).

    The identities are ``ehr.silver.batch_problems`` and ``write_problems``. When one does not
    hold, on_mismatch="fail" raises ReconciliationError naming the table and the count (before the
    write when the checks lost rows; after it, with the tables restored to their previous
    versions); "record" logs it and records a failed ``reconciliation`` expectation in ops.dq_results.
    """
    stage = _Staging(lake, name)
    try:
        c = silver.conform(source, build, contract, lake.run_id, rows_per_partition=rows_per_partition, stage=stage)
        stage.free_shuffles()
        return _write_and_reconcile(lake, name, contract, c, dq, now, on_mismatch)
    finally:
        stage.remove()


class _Staging:
    """ehr.silver.conform's ``stage`` for one table: a large table's built rows written once as zstd
    Parquet under the run's scratch folder and read back; ``remove`` deletes them whatever happened."""

    def __init__(self, lake: Lake, name: str) -> None:
        self.lake = lake
        self.location = lake.cfg.layout.tmp(f"conform_ehr-{lake.run_id}-{name}.parquet")
        self.used = False

    def __call__(self, rows: DataFrame) -> DataFrame:
        self.used = True
        remove_tree(self.location, self.lake.cfg)  # a killed attempt of this run id left its copy
        # zstd: the row hash and the pseudonyms are hex, which snappy does not shrink
        rows.write.mode("overwrite").option("compression", "zstd").parquet(self.location)
        return self.lake.spark.read.parquet(self.location)

    def free_shuffles(self) -> None:
        """Once conform has returned nothing references the de-duplication's shuffle, but Spark deletes
        a shuffle's files only after the driver's JVM has collected it (at 1M patients 32 GB of them,
        next to the staged copy and before silver is written): collect now, when rows were staged."""
        if self.used:
            self.lake.spark.sparkContext._jvm.System.gc()  # noqa: SLF001

    def remove(self) -> None:
        remove_tree(self.location, self.lake.cfg)


def _write_and_reconcile(
    lake: Lake,
    name: str,
    contract: Contract,
    c: silver.Conformed,
    dq: list[tuple[Any, ...]],
    now: dt.datetime,
    on_mismatch: str,
) -> dict[str, int]:
    key = contract.keys[0]
    target, qtable = f"silver.{name}", f"quarantine.{name}"
    _reconcile(name, silver.batch_problems(c), on_mismatch, lake, None)
    n_checked = c.n_built - c.n_duplicates
    for e in contract.expectations:
        failed = c.checked.counts.get(e.name, 0)
        outcome = (
            "passed" if failed == 0 else {"warn": "warned", "quarantine": "quarantined", "fail": "failed"}[e.action]
        )
        dq.append((lake.run_id, target, e.name, e.kind, e.action, n_checked, failed, outcome, now))
    before = lake.version(target)
    if before is not None:
        # Only new or changed rows: a rerun on the same bronze commits nothing.
        changed = silver.changed_rows(c.kept, lake.read(target), key).cache()
        if changed.count():
            lake.write(changed, target, mode="merge", keys=[key])
        changed.unpersist()
    else:
        lake.write(c.kept, target, mode="merge", keys=[key])
    qbefore = lake.version(qtable)
    if c.n_quarantined:
        quarantine.write(lake, qtable, c.quarantined)  # rows an earlier run quarantined are not added again
    # Counted again from the tables as written, independently of the counts above.
    n_out = silver.rows_of_batch(lake.read(target), c.kept, [key]).count()
    n_q_out = (
        silver.rows_of_batch(lake.read(qtable), c.quarantined, list(quarantine.DEDUP_KEY)).count()
        if c.n_quarantined
        else 0
    )
    _reconcile(
        name,
        silver.write_problems(target, qtable, c.n_kept, n_out, c.n_quarantined, n_q_out),
        on_mismatch,
        lake,
        {target: before, qtable: qbefore},
    )
    n_read, n_q, n_dup = c.n_read, c.n_quarantined, c.n_duplicates
    dq.append(
        (
            lake.run_id,
            target,
            "reconciliation",
            "reconciliation",
            "fail" if on_mismatch == "fail" else "warn",
            n_read,
            abs(n_read - n_out - n_q - n_dup),
            "passed" if n_read == n_out + n_q + n_dup else "failed",
            now,
        )
    )
    c.release()
    log.info("%s: %d rows in = %d out + %d quarantined + %d duplicates", target, n_read, n_out, n_q, n_dup)
    return {"in": n_read, "out": n_out, "quarantined": n_q, "duplicates": n_dup}


def _reconcile(
    name: str, problems: list[str], on_mismatch: str, lake: Lake, restore: dict[str, int | None] | None
) -> None:
    """Act on reconciliation problems: raise (restoring the tables written, if any), or log."""
    if not problems:
        return
    msg = f"silver.{name}: rows lost or invented: " + "; ".join(problems)
    if on_mismatch != "fail":
        log.error("%s (jobs.conform_ehr.on_mismatch=record: recorded as a failed expectation)", msg)
        return
    restored = []
    for table, version in (restore or {}).items():
        now = lake.version(table)
        if now is not None and now != version:
            if version is None:  # created by this run: emptied (a table's first version cannot be undone)
                lake.truncate(table)
                restored.append(f"{table} (new) emptied")
            else:
                lake.restore(table, version)
                restored.append(f"{table} restored to version {version}")
    raise ReconciliationError(
        msg
        + (f". {', '.join(restored)}." if restored else ". Nothing was written.")
        + " This is a bug in omicslake or in a custom rule: report it with the run id; "
        "set jobs.conform_ehr.on_mismatch=record to write and record it instead."
    )


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.ehr import conform as C
    from omicslake.ehr.deid import pseudonym_key

    c = cfg.jobs.conform_ehr
    d = C.Deid(pseudonym_key(c), c.date_shift, c.date_shift_max_days, c.reference_date)
    first = {"synthea": "bronze.synthea_patients", "fhir": "bronze.fhir_patient", "omop": "bronze.omop_person"}[
        c.source
    ]
    if not lake.exists(first):
        raise InputError(f"{first} does not exist: run ingest_ehr first (jobs.conform_ehr.source={c.source})")
    concept_table = _concepts(spark, cfg, lake).cache()
    concepts = F.broadcast(concept_table)
    units = _units(cfg, lake)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    dq: list[tuple[Any, ...]] = []
    recon: dict[str, dict[str, int]] = {}

    def bronze(t: str) -> DataFrame | None:
        """The bronze rows of Synthea table t, or FHIR's / OMOP's in the same shape; None when absent."""
        from omicslake.ehr import fhir, omop

        if c.source == "synthea":
            name, shape, needs = f"bronze.synthea_{t}", None, ()
        else:
            table, shape, needs = {"fhir": fhir.AS_SYNTHEA, "omop": omop.AS_SYNTHEA}[c.source][t]
            name = f"bronze.{table}"
        if not lake.exists(name):
            log.warning("%s does not exist: its silver table is not built in this run", name)
            return None
        df = lake.read(name)
        if shape is None:
            return df
        # the other bronze tables the shape takes (OMOP's PERSON for the patient ids), None when absent
        return shape(df, *(lake.read_optional(f"bronze.{n}") for n in needs))

    patients = bronze("patients")
    assert patients is not None
    mismatch = c.on_mismatch
    per = c.rows_per_partition
    if per < 1:
        raise InputError(f"jobs.conform_ehr.rows_per_partition must be >= 1, got {per}")
    recon["person"] = conform_table(
        lake,
        "person",
        patients,
        lambda df: C.person_rows(df, d),
        load_contract("silver.person"),
        dq,
        now,
        mismatch,
        per,
    )
    person = lake.read("silver.person")
    died = person.where(F.col("death_date").isNotNull())
    recon["death"] = conform_table(
        lake, "death", died, C.death_rows, load_contract("silver.death"), dq, now, mismatch, per
    )
    builders = [
        ("visit_occurrence", "encounters", lambda df: C.visit_rows(df, d)),
        ("condition_occurrence", "conditions", lambda df: C.condition_rows(df, d, concepts)),
        ("measurement", "observations", lambda df: C.measurement_rows(df, d, concepts, units)),
        ("drug_exposure", "medications", lambda df: C.drug_rows(df, d, concepts)),
        ("procedure_occurrence", "procedures", lambda df: C.procedure_rows(df, d, concepts)),
    ]
    facts: list[tuple[str, DataFrame, Callable[[DataFrame], DataFrame]]] = []
    for table, source_table, build in builders:
        src = bronze(source_table)
        if src is not None:
            facts.append((table, src, build))
    if lake.exists("bronze.sample_link"):
        facts.append(("sample_link", lake.read("bronze.sample_link"), lambda df: C.sample_link_rows(df, d)))
    for name, src, build in facts:
        recon[name] = conform_table(
            lake,
            name,
            src,
            lambda df, b=build: C.with_person(b(df), person),  # type: ignore[misc]
            load_contract(f"silver.{name}"),
            dq,
            now,
            mismatch,
            per,
        )
    lake.write(spark.createDataFrame(dq, load_contract("ops.dq_results").struct()), "ops.dq_results", mode="append")
    concept_table.unpersist()
    metrics: dict[str, Any] = {f"{t}_{k}": v for t, r in recon.items() for k, v in r.items()}
    metrics["quarantined"] = sum(r["quarantined"] for r in recon.values())
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
