"""Job ingest_survey: REDCap records exports, their data dictionaries and linkage files into
bronze.survey_records, bronze.survey_dictionary and bronze.survey_linkage, new files only.

A project is a folder under ``jobs.ingest_survey.root`` (default ``<landing>/redcap``) holding its
data dictionary (``dictionary_glob``), one or more records exports (every other ``*.csv``: a
project exports again over time) and optionally its linkage file. A file is known by its
SHA-256, read back from its bronze table and ops.ingested_files, as the other ingests do.

Every export row is kept, with its file and the line it starts on (a quoted value may span
lines, so the CSV is read with Python's csv module on the driver: REDCap exports are small).
Before anything is written every new file is checked: the dictionary parses; the export's header
has exactly the dictionary's fields (checkboxes as ``field___code``); each row has the header's
number of fields; no record / event / repeat instrument / instance key appears twice. Any
failure is an InputError naming the file and line, and the lake is left as it was.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.contracts import enforce, load_contract
from omicslake.errors import InputError, ReconciliationError
from omicslake.io import ledger
from omicslake.io.delta import Lake
from omicslake.io.files import sha256_and_lines
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec
from omicslake.survey import dictionary as D
from omicslake.survey.records import row_key

SPEC = JobSpec(
    name="ingest_survey",
    description="Land REDCap records exports, data dictionaries and linkage files in bronze (new files only, checked against the dictionary).",
    after=("generate",),
    config=("jobs.ingest_survey", "jobs.generate.out"),
    always_run=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)

DICTIONARY, RECORDS, LINKAGE = "bronze.survey_dictionary", "bronze.survey_records", "bronze.survey_linkage"


def _root(cfg: Config) -> Path:
    from omicslake.io.layout import landing_folder

    c = cfg.jobs.ingest_survey
    return Path(c.root).expanduser() if c.root else landing_folder(cfg.layout, cfg.jobs.generate.out) / "redcap"


def project_files(cfg: Config) -> dict[str, tuple[Path, list[Path], Path | None]]:
    """project -> (its dictionary, its records exports in name order, its linkage file or None)."""
    c = cfg.jobs.ingest_survey
    root = _root(cfg)
    if not root.is_dir():
        if not c.root and not c.projects:  # the default folder: a landing without surveys
            log.info("no REDCap folder at %s: nothing to land", root)
            return {}
        raise InputError(f"REDCap folder {root} does not exist (jobs.ingest_survey.root)")
    names = list(c.projects) or sorted(p.name for p in root.iterdir() if p.is_dir())
    out: dict[str, tuple[Path, list[Path], Path | None]] = {}
    for name in names:
        folder = root / name
        if not folder.is_dir():
            raise InputError(f"REDCap project folder {folder} does not exist (jobs.ingest_survey.projects)")
        dicts = sorted(folder.glob(c.dictionary_glob))
        if not dicts:
            raise InputError(
                f"{folder}: no data dictionary ({c.dictionary_glob}, jobs.ingest_survey.dictionary_glob); "
                "export it from REDCap (Project Setup > Data Dictionary) next to the records"
            )
        linkage = folder / c.linkage
        exports = sorted(p for p in folder.glob("*.csv") if p not in dicts and p != linkage)
        out[name] = (dicts[-1], exports, linkage if linkage.exists() else None)
    return out


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(start line, fields)]) of a CSV file; rows of only empty fields are kept too."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: the file is empty; a REDCap export needs its header line") from None
        rows, start = [], reader.line_num + 1
        for fields in reader:
            rows.append((start, fields))
            start = reader.line_num + 1
    return header, rows


def check_export(d: D.Dictionary, path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and rows of an export, after every check of the module docstring."""
    header, rows = _csv_rows(path)
    D.check_header(d, header, str(path))
    idx = {h: i for i, h in enumerate(header)}
    seen: dict[str, int] = {}
    for line, fields in rows:
        if len(fields) != len(header):
            raise InputError(
                f"{path}, line {line}: {len(fields)} fields, the header has {len(header)}; is a quote left open?"
            )
        key = row_key(
            fields[0],
            fields[idx["redcap_event_name"]] if "redcap_event_name" in idx else None,
            fields[idx["redcap_repeat_instrument"]] if "redcap_repeat_instrument" in idx else None,
            fields[idx["redcap_repeat_instance"]] if "redcap_repeat_instance" in idx else None,
        )
        if not fields[0].strip():
            raise InputError(f"{path}, line {line}: the record id ({d.record_id}) is empty")
        if key in seen:
            raise InputError(
                f"{path}, line {line}: the same record / event / repeat instrument / instance as line {seen[key]}; "
                "a REDCap export has one row per key: export again, or remove the duplicate"
            )
        seen[key] = line
    return header, rows


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    known = {t: _known(lake, t) for t in (DICTIONARY, RECORDS, LINKAGE)}
    batches: dict[str, list[tuple[Any, ...]]] = {DICTIONARY: [], RECORDS: [], LINKAGE: []}
    landed: list[tuple[str, str, Path, str, int]] = []  # table, project, path, digest, rows
    stats: dict[str, Any] = {"files_new": 0, "files_known": 0, "records": 0}
    # 1. Read and check every new file; nothing is written before all of them passed.
    for project, (dict_path, exports, linkage) in project_files(cfg).items():
        d_digest, _ = sha256_and_lines(dict_path)
        dictionary = D.read(dict_path.read_text(encoding="utf-8-sig"), str(dict_path))
        if (project, d_digest) in known[DICTIONARY]:
            stats["files_known"] += 1
        else:
            header, rows = _csv_rows(dict_path)
            for line, fields in rows:
                if any(v.strip() for v in fields):
                    batches[DICTIONARY].append(
                        (project, *fields, str(dict_path), d_digest, line, None, lake.run_id, now)
                    )
            landed.append((DICTIONARY, project, dict_path, d_digest, len(dictionary.fields)))
        for path in exports:
            digest, _ = sha256_and_lines(path)
            if (project, digest) in known[RECORDS]:
                stats["files_known"] += 1
                continue
            header, rows = check_export(dictionary, path)
            idx = {h: i for i, h in enumerate(header)}

            def get(fields: list[str], col: str, idx: dict[str, int] = idx) -> str | None:
                return (fields[idx[col]] or None) if col in idx else None

            for line, fields in rows:
                values = {h: v for h, v in zip(header, fields, strict=True) if v != ""}
                batches[RECORDS].append(
                    (
                        project,
                        fields[0],
                        get(fields, "redcap_event_name"),
                        get(fields, "redcap_repeat_instrument"),
                        get(fields, "redcap_repeat_instance"),
                        values,
                        d_digest,
                        str(path),
                        digest,
                        line,
                        None,
                        lake.run_id,
                        now,
                    )
                )
            landed.append((RECORDS, project, path, digest, len(rows)))
        if linkage is not None:
            digest, _ = sha256_and_lines(linkage)
            if (project, digest) in known[LINKAGE]:
                stats["files_known"] += 1
                continue
            header, rows = _csv_rows(linkage)
            if header[:2] != ["record_id", "patient_id"]:
                raise InputError(
                    f"{linkage}, line 1: a linkage file's columns are record_id,patient_id; found {header[:2]}"
                )
            for line, fields in rows:
                if len(fields) < 2:
                    raise InputError(f"{linkage}, line {line}: {len(fields)} field(s), expected record_id,patient_id")
                batches[LINKAGE].append(
                    (project, fields[0] or None, fields[1] or None, str(linkage), digest, line, None, lake.run_id, now)
                )
            landed.append((LINKAGE, project, linkage, digest, len(rows)))
    # 2. Write, then count each file's rows back from bronze; a mismatch puts the tables back.
    manifest = []
    with lake.undo_on_error(batches):
        for table, rows in batches.items():
            if rows:
                contract = load_contract(table)
                df = spark.createDataFrame(rows, contract.struct())
                lake.write(df.transform(enforce(contract)), table, mode="append")
        for table, project, path, digest, expected in landed:
            n = lake.read(table).where((F.col("_file_sha256") == digest) & (F.col("project") == project)).count()
            if n != expected:
                raise ReconciliationError(
                    f"{table}: {path} has {expected} rows but {n} reached bronze; the survey tables were put back"
                )
            manifest.append(
                ledger.row(
                    table, "redcap", str(path), digest, path.stat().st_size, project, n, expected, 0, lake.run_id, now
                )
            )
            stats["files_new"] += 1
            if table == RECORDS:
                stats["records"] += n
            log.info("%s -> %s: %d rows", path.name, table, n)
    ledger.record(lake, manifest)
    return stats


def _known(lake: Lake, table: str) -> set[tuple[str, str]]:
    """(project, digest) of the files already in ``table``, read from the table itself: two projects may
    deliver the same file (a shared data dictionary), and each needs its copy."""
    if not lake.exists(table):
        return set()
    rows = lake.read(table).select("project", "_file_sha256").distinct().collect()  # one row per file and project
    return {(r[0], r[1]) for r in rows}


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
