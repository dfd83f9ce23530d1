"""Job ingest_ehr: raw EHR files (Synthea CSV, FHIR bulk NDJSON, OMOP CDM 5.4 CSV, the biobank's
sample link) into bronze.<source>_<table>, new files only.

Every line of a file becomes one bronze row (values as strings, explicit schemas from
``schemas/bronze``) with _source_file, _line, _batch_id, _ingested_at and _rescued; nothing is
dropped. A file is known by its SHA-256, read back from the bronze table itself, so the
manifest and the data cannot disagree: a run killed before its commit left nothing, and the
rerun reads the file again; a run killed after it finds the file there. A file whose path was
ingested before with other contents is reported and skipped, unless
``jobs.ingest_ehr.reingest_changed``. ops.ingested_files lists every landed file.

Each file is its own unit: a file refused (no header, none of the table's columns, lines lost
between the file and bronze) leaves no row in bronze, is recorded in ops.ingested_files with
status failed and its error, and the other files land; the job then fails naming every refused
file, or succeeds (``jobs.ingest_ehr.on_bad_file: skip``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.contracts import enforce, load_contract
from omicslake.errors import InputError
from omicslake.io import ledger
from omicslake.io.delta import Lake
from omicslake.io.files import blank_lines, first_non_utf8, sha256_and_lines
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="ingest_ehr",
    description="Land Synthea CSV, FHIR bulk NDJSON, OMOP CDM CSV and the sample link in bronze (new files only, every line kept).",
    after=("generate",),
    config=("jobs.ingest_ehr", "jobs.generate.out"),
    always_run=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)

SYNTHEA_TABLES = ("patients", "encounters", "conditions", "observations", "medications", "procedures")
FHIR_RESOURCES = ("Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "Procedure")
FHIR_TYPES = {f"bronze.fhir_{r.lower()}": r for r in FHIR_RESOURCES}  # the resource type each file must hold
OMOP_TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "measurement",
    "observation",
    "drug_exposure",
    "procedure_occurrence",
    "death",
)


def _landing(cfg: Config) -> Path:
    from omicslake.io.layout import landing_folder

    return landing_folder(cfg.layout, cfg.jobs.generate.out)


def planned_files(cfg: Config) -> list[tuple[str, str, str, Path]]:
    """(source, bronze table, format, path) for every file the configured sources hold."""
    c = cfg.jobs.ingest_ehr
    out: list[tuple[str, str, str, Path]] = []
    for source in c.sources:
        if source == "synthea":
            root = Path(c.synthea_dir).expanduser() if c.synthea_dir else _landing(cfg) / "synthea"
            if not root.is_dir():
                raise InputError(
                    f"Synthea folder {root} does not exist (jobs.ingest_ehr.synthea_dir); run `omicslake generate` or set it"
                )
            for t in SYNTHEA_TABLES:
                for p in sorted(root.rglob(f"{t}.csv")):
                    out.append(("synthea", f"bronze.synthea_{t}", "csv", p))
        elif source == "fhir":
            root = Path(c.fhir_dir).expanduser() if c.fhir_dir else _landing(cfg) / "fhir"
            if not root.is_dir():
                raise InputError(f"FHIR folder {root} does not exist (jobs.ingest_ehr.fhir_dir)")
            for r in FHIR_RESOURCES:
                for p in sorted(root.glob(f"{r}.ndjson")) + sorted(root.glob(f"{r}.*.ndjson")):
                    out.append(("fhir", f"bronze.fhir_{r.lower()}", "ndjson", p))
        elif source == "omop":
            if not c.omop_dir:
                raise InputError(
                    "source omop needs jobs.ingest_ehr.omop_dir: the folder of the CDM CSV exports (PERSON.csv, ...)"
                )
            root = Path(c.omop_dir).expanduser()
            if not root.is_dir():
                raise InputError(f"OMOP folder {root} does not exist (jobs.ingest_ehr.omop_dir)")
            by_name: dict[str, list[Path]] = {}
            for p in sorted(root.rglob("*")):
                if p.is_file() and p.suffix.lower() == ".csv":
                    by_name.setdefault(p.stem.lower(), []).append(p)
            if "person" not in by_name:
                raise InputError(
                    f"{root} holds no PERSON.csv: is this an OMOP CDM export? (CSV files there: {sorted(by_name)[:8]})"
                )
            for t in OMOP_TABLES:
                for p in by_name.get(t, []):
                    out.append(("omop", f"bronze.omop_{t}", "csv", p))
        elif source == "sample_link":
            p = Path(c.sample_link).expanduser() if c.sample_link else _landing(cfg) / "sample_link.csv"
            if p.exists():
                out.append(("sample_link", "bronze.sample_link", "csv", p))
            else:
                log.info("no sample link at %s: bronze.sample_link not written", p)
    return out


def _file_rows(spark: SparkSession, source: str, fmt: str, path: Path, columns: list[str], table: str) -> DataFrame:
    from omicslake.ehr import bronze

    bad = first_non_utf8(path)
    if bad:
        line, column, byte = bad
        raise InputError(
            f"{path}, line {line}, column {column}: byte 0x{byte:02X} is not UTF-8 (the file is probably Latin-1 or "
            "Windows-1252). Re-export it as UTF-8 (e.g. iconv -f WINDOWS-1252 -t UTF-8) and put it back in the landing folder"
        )
    lines = bronze.numbered_lines(spark, path)
    if fmt == "ndjson":
        return bronze.parse_ndjson(lines, FHIR_TYPES.get(table))
    header = bronze.csv_header(path)
    if not header or not header[0]:
        raise InputError(f"{path}, line 1: no header line; a CSV export needs its column names first")
    if source == "omop":  # CDM column names are lower case; some exports write them upper case
        from omicslake.ehr import omop

        header = omop.to_cdm54(table.removeprefix("bronze.omop_"), [h.strip().lower() for h in header])
    known = [c for c in columns if not c.startswith("_")]
    if not set(known) & set(header):
        raise InputError(
            f"{path}, line 1: none of the expected columns {known[:5]}... is in the header {header[:5]}...; is this the right file?"
        )
    return bronze.parse_csv(lines, header, known)


def _omop_versions(plan: list[tuple[str, str, str, Path]]) -> list[str]:
    """The OMOP CDM versions the headers of the planned OMOP files show (5.0 and 5.3 exports are read
    as 5.4: omop.to_cdm54), logged so that a mixed folder is seen."""
    from omicslake.ehr import bronze, omop

    found = set()
    for source, table, _fmt, path in plan:
        if source == "omop":
            try:
                header = [h.strip().lower() for h in bronze.csv_header(path)]
            except (OSError, UnicodeDecodeError):
                continue  # the file's own read names the problem
            v = omop.cdm_version(table.removeprefix("bronze.omop_"), header)
            if v:
                found.add(v)
    if found:
        log.info(
            "OMOP CDM version(s) of the export: %s%s",
            ", ".join(sorted(found)),
            " (read as 5.4)" if found - {"5.4"} else "",
        )
    return sorted(found)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    c = cfg.jobs.ingest_ehr
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    plan = planned_files(cfg)
    by_table: dict[str, list[tuple[str, str, Path]]] = {}
    for source, table, fmt, path in plan:
        by_table.setdefault(table, []).append((source, fmt, path))
    stats: dict[str, Any] = {"files_new": 0, "files_known": 0, "files_changed": 0, "rows": 0, "rescued_rows": 0}
    versions = _omop_versions(plan)
    if versions:
        stats["omop_cdm_version"] = versions
    changed: list[str] = []
    manifest_rows = []
    refused: list[tuple[str, str, Path, str, str]] = []  # table, source, path, sha256, error
    for table, files in by_table.items():
        contract = load_contract(table)
        seen: dict[str, set[str]] = {}
        if lake.exists(table):
            for r in lake.read(table).select("_source_file", "_file_sha256").distinct().collect():  # one row per file
                seen.setdefault(r[0], set()).add(r[1])
        known_shas = {s for v in seen.values() for s in v}
        in_ledger = ledger.known(lake, table)
        parts: list[DataFrame] = []
        new_files = []
        backfill = []
        for source, fmt, path in files:
            digest, n_lines = sha256_and_lines(path)
            if digest in known_shas:
                stats["files_known"] += 1
                if digest not in in_ledger:  # a run killed between the rows and the ledger row
                    backfill.append((source, path, digest, path.parent.name, n_lines))
                continue
            if str(path) in seen and not c.reingest_changed:
                stats["files_changed"] += 1
                changed.append(str(path))
                log.warning(
                    "%s changed since it was ingested (new sha256 %s...); skipped. Set jobs.ingest_ehr.reingest_changed=true to read it again",
                    path,
                    digest[:12],
                )
                continue
            batch = path.parent.name
            try:
                rows = _file_rows(spark, source, fmt, path, contract.names, table)
            except InputError as exc:  # each file is its own unit: the others still land
                refused.append((table, source, path, digest, str(exc)))
                continue
            df = rows.select(
                "*",
                F.lit(str(path)).alias("_source_file"),
                F.lit(digest).alias("_file_sha256"),
                F.lit(batch).alias("_batch_id"),
                F.lit(lake.run_id).alias("_run_id"),
                F.lit(now).cast("timestamp").alias("_ingested_at"),
            )
            parts.append(df)
            # data lines, counted in the file itself: the bronze rows must equal them
            expected = n_lines - (blank_lines(path) if fmt == "ndjson" else min(n_lines, 1))
            new_files.append((source, path, digest, batch, expected))
        if backfill:
            counts = {
                r[0]: (int(r[1]), int(r[2]))
                for r in lake.read(table)
                .where(F.col("_file_sha256").isin([b[2] for b in backfill]))
                .groupBy("_file_sha256")
                .agg(F.count("*"), F.count("_rescued"))
                .collect()
            }
            for source, path, digest, batch, n_lines in backfill:
                n, rescued = counts[digest]
                fmt = "ndjson" if table.startswith("bronze.fhir_") else "csv"
                expected = n_lines - (blank_lines(path) if fmt == "ndjson" else min(n_lines, 1))
                if n != expected:
                    # rows of a file a killed run was taking out again (its lines did not all arrive): out
                    # they go, and the file is refused as that run would have refused it
                    lake.delete_where(table, F.col("_file_sha256") == digest)
                    lake.forget_transactions(table)
                    refused.append(
                        (
                            table,
                            source,
                            path,
                            digest,
                            f"{path}: {expected} data lines in the file but {n} rows in bronze (left by an interrupted "
                            f"run); nothing of this file is in {table} now. Check the file and rerun.",
                        )
                    )
                    continue
                manifest_rows.append(
                    ledger.row(
                        table, source, str(path), digest, path.stat().st_size, batch, n, None, rescued, lake.run_id, now
                    )
                )
        if not parts:
            continue
        union = parts[0]
        for p in parts[1:]:
            union = union.unionByName(p)
        out = lake.write(union.transform(enforce(contract)), table, mode="append")
        per_file = {
            r[0]: (int(r[1]), int(r[2]))
            for r in lake.read(table)
            .where(F.col("_file_sha256").isin([f[2] for f in new_files]))
            .groupBy("_file_sha256")
            .agg(F.count("*"), F.count("_rescued"))
            .collect()
        }
        lost = [
            (s, p, d, e, per_file.get(d, (0, 0))[0]) for s, p, d, _, e in new_files if per_file.get(d, (0, 0))[0] != e
        ]
        if lost:
            # the files whose lines did not all arrive are taken out again (a new commit: no row of them stays
            # in the table's current version) and refused; the other files of the batch stay
            bad = [d for _, _, d, _, _ in lost]
            lake.delete_where(table, F.col("_file_sha256").isin(bad))
            lake.forget_transactions(table)  # a retry of this run id writes them again, not "already committed"
            for source, path, digest, expected, n in lost:
                refused.append(
                    (
                        table,
                        source,
                        path,
                        digest,
                        f"{path}: {expected} data lines in the file but {n} rows in bronze; nothing of this file is in "
                        f"{table}. A line the reader splits differently (a lone carriage return inside a field?) is the "
                        "usual cause: fix the file and rerun.",
                    )
                )
            new_files = [f for f in new_files if f[2] not in bad]
        for source, path, digest, batch, expected in new_files:
            n, rescued = per_file.get(digest, (0, 0))
            manifest_rows.append(
                ledger.row(
                    table, source, str(path), digest, path.stat().st_size, batch, n, expected, rescued, lake.run_id, now
                )
            )
            stats["rows"] += n
            stats["rescued_rows"] += rescued
            log.info("%s -> %s: %d rows (%d rescued)", path.name, table, n, rescued)
        stats["files_new"] += len(new_files)
        log.info("%s: %d new file(s), %d rows committed as version %s", table, len(new_files), out.rows, out.version)
    for table, source, path, digest, error in refused:
        log.error("%s refused: %s", path.name, error)
        manifest_rows.append(
            ledger.failed_row(
                table, source, str(path), digest, path.stat().st_size, path.parent.name, lake.run_id, now, error
            )
        )
    ledger.record(lake, manifest_rows)
    if changed:
        stats["changed_files"] = changed[:20]
    stats["failed_files"] = len(refused)
    stats["failed"] = [{"file": str(p), "table": t, "error": e} for t, _, p, _, e in refused]
    if refused and c.on_bad_file == "fail_at_end":
        raise InputError(
            f"{len(refused)} input file(s) refused ({stats['files_new']} landed, {stats['files_known']} already "
            "there); each is in ops.ingested_files with its error, nothing of it is in the lake, and the next run "
            "tries it again. "
            + " | ".join(e for *_, e in refused[:5])
            + " (jobs.ingest_ehr.on_bad_file=skip lets the job succeed with refused files)"
        )
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
