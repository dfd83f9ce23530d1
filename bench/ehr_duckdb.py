"""The DuckDB peer of conform_ehr: ``bench/ehr_conform.sql`` on a Synthea landing folder.

    python -m bench.ehr_duckdb --synthea <landing>/synthea --out <folder> --key <hex> \
        [--ref-date 2026-01-01] [--threads 2] [--json counts.json]

Reads every ``<batch>/<table>.csv`` under the Synthea folder (one ``read_csv`` per file, all
strings, lines with the wrong number of fields kept as DuckDB's rejects), runs the conform
script and writes the silver tables and their quarantine as Parquet under ``--out``. Prints (and
with ``--json`` writes) the seconds and, per silver table, the rows written, quarantined (rules
broken, plus the rejected lines) and dropped as duplicates. Run as its own process by
``bench/ehr.py`` so that its peak memory is measured apart from Spark's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from string import Template
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
TABLES = {  # Synthea file -> the silver table its rows go to
    "patients": "person",
    "encounters": "visit_occurrence",
    "conditions": "condition_occurrence",
    "observations": "measurement",
    "medications": "drug_exposure",
    "procedures": "procedure_occurrence",
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def raw_sql(files: dict[str, list[Path]]) -> str:
    """CREATE TABLE raw_<table> for each Synthea table: one ``read_csv`` per file (all strings, its own
    rejects table ``rej_<table>_<i>``), with _file, _batch (the file's folder, as ingest_ehr names a
    batch) and _line (the row's position among the file's accepted rows), unioned by column name."""
    out = []
    for table, paths in files.items():
        parts = []
        for i, p in enumerate(paths):
            parts.append(
                f"SELECT *, {_quote(str(p))} AS _file, {_quote(p.parent.name)} AS _batch, row_number() OVER () AS _line "
                f"FROM read_csv({_quote(str(p))}, header = true, delim = ',', quote = '\"', escape = '\"', all_varchar = true, "
                f"store_rejects = true, "
                f"rejects_table = 'rej_{table}_{i}', rejects_scan = 'scan_{table}_{i}')"
            )
        out.append(f"CREATE TABLE raw_{table} AS\n" + "\nUNION ALL BY NAME\n".join(parts) + ";")
    return "\n".join(out)


def units_values(units: dict[str, Any]) -> str:
    """schemas/vocab/units.yaml as SQL VALUES rows: (code, name, canonical unit, from unit, factor)."""
    rows = [
        f"({_quote(str(code))}, {_quote(u['name'])}, {_quote(u['unit'])}, {_quote(str(src))}, {float(f)!r})"
        for code, u in units.items()
        for src, f in u["from"].items()
    ]
    return ",\n    ".join(rows)


def script(
    files: dict[str, list[Path]], units: dict[str, Any], concepts: Path, key: str, ref_date: str, out: Path
) -> str:
    """The whole conform script for these files (``bench/ehr_conform.sql`` with its blanks filled)."""
    missing = [t for t in TABLES if not files.get(t)]
    if missing:
        raise ValueError(f"no Synthea file for {missing}: the DuckDB peer needs all of {list(TABLES)}")
    if not all(c in "0123456789abcdefABCDEF" for c in key):
        raise ValueError("the pseudonym key must be hex (it is pasted into the SQL)")
    return Template((HERE / "ehr_conform.sql").read_text()).substitute(
        raw=raw_sql(files),
        units=units_values(units),
        concepts=str(concepts).replace("'", "''"),
        key=key,
        ref_date=dt.date.fromisoformat(ref_date).isoformat(),
        out=str(out).replace("'", "''"),
    )


def synthea_files(folder: Path) -> dict[str, list[Path]]:
    """Every <table>.csv under folder, by table, in batch order (as ingest_ehr plans them)."""
    return {t: sorted(folder.rglob(f"{t}.csv")) for t in TABLES}


def run(
    synthea: Path, out: Path, key: str, ref_date: str, threads: int | None = None, memory_limit: str | None = None
) -> dict[str, Any]:
    """Run the conform script; returns seconds, settings and the counts per silver table."""
    import duckdb

    from omicslake.resources import resource_dir

    vocab = resource_dir("schemas") / "vocab"
    units = {str(k): v for k, v in yaml.safe_load((vocab / "units.yaml").read_text()).items()}
    files = synthea_files(synthea)
    out.mkdir(parents=True, exist_ok=True)
    sql = script(files, units, vocab / "concept.csv", key, ref_date, out)
    t = time.monotonic()
    (out / "work.duckdb").unlink(missing_ok=True)
    con = duckdb.connect(str(out / "work.duckdb"))  # a file: DuckDB may spill to disk as Spark does
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_quote(memory_limit)}")
    row = con.execute("SELECT current_setting('threads'), current_setting('memory_limit')").fetchone()
    settings = {"threads": row[0], "memory_limit": row[1]} if row else {}
    con.execute(sql)
    counts = {
        r[0]: {"silver": int(r[1]), "quarantined": int(r[2]), "duplicates": int(r[3])}
        for r in con.execute("SELECT * FROM counts").fetchall()
    }
    for table, silver in TABLES.items():
        for i in range(len(files[table])):
            (n,) = con.execute(f"SELECT count(DISTINCT line) FROM rej_{table}_{i}").fetchone() or (0,)
            # one reject row per error: a line short of 3 fields is 3 rows; conform_ehr quarantines the line (well_formed)
            counts[silver]["quarantined"] += int(n)
    seconds = time.monotonic() - t
    con.close()
    (out / "work.duckdb").unlink(missing_ok=True)
    return {
        "seconds": round(seconds, 3),
        "duckdb": duckdb.__version__,
        "settings": settings,
        "files": {t: len(v) for t, v in files.items()},
        "counts": counts,
    }


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); prints the result as JSON."""
    ap = argparse.ArgumentParser(prog="python -m bench.ehr_duckdb", description=__doc__)
    ap.add_argument("--synthea", required=True, help="the Synthea landing folder (batch_*/<table>.csv)")
    ap.add_argument("--out", required=True, help="folder for the Parquet output")
    ap.add_argument("--key", default=os.environ.get("OMICSLAKE_PSEUDONYM_KEY", ""), help="pseudonym key (hex)")
    ap.add_argument("--ref-date", default=dt.date.today().isoformat(), help="reference date of the 90+ top-coding")
    ap.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    ap.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 6GB (default: DuckDB's, 80 %% of RAM)")
    ap.add_argument("--json", help="write the result here too")
    args = ap.parse_args(argv)
    result = run(Path(args.synthea), Path(args.out), args.key, args.ref_date, args.threads, args.memory_limit)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
