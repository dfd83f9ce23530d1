"""Scale run: build_cohort (and train, cluster, survival) on N copies of a lake's silver layer.

    .venv/bin/python bench/scale.py --source /tmp/big100 --copies 10 --lake /tmp/big1m \
        [--jobs build_cohort,train] [--set key=value ...]

Generating 1,000,000 Synthea-like patients takes hours on a 2-core machine, so this makes the
large silver layer from a generated one: every silver table is written `--copies` times, each
copy's keys (person_key, visit_key, ...) suffixed with the copy number, so copy k is a distinct
set of patients with the same histories. Then every job in `--jobs` runs as its own process
(`omicslake run <job>`), and for each the script prints wall time and peak resident memory of
the whole process tree (the Python driver *and* its JVM, sampled from /proc every 0.5 s; GNU
time only sees the Python process). Timing and memory only: copies share their histories, so
model metrics at this scale say nothing (a patient's copies fall into both splits).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import measured

SILVER = [
    "person",
    "death",
    "visit_occurrence",
    "condition_occurrence",
    "measurement",
    "drug_exposure",
    "procedure_occurrence",
]


def replicate(source: str, lake: str, copies: int, overrides: list[str]) -> None:
    """Every silver EHR table of the lake at ``source`` written ``copies`` times into the lake at ``lake``
    (in a session of its own)."""
    from omicslake.config import load_config
    from omicslake.io.delta import Lake
    from omicslake.session import build_session, stop_session

    cfg = load_config("local", overrides=[f"lake.root={lake}", *overrides])
    spark = build_session(cfg)
    try:
        src = Lake(spark, load_config("local", overrides=[f"lake.root={source}"]))
        replicate_silver(src, Lake(spark, cfg, run_id="scale-replicate"), copies)
    finally:
        stop_session(spark)


def replicate_silver(src: Any, dst: Any, copies: int) -> dict[str, int]:
    """Every silver EHR table of lake ``src`` written to lake ``dst`` with ``copies`` copies of its rows,
    every ``*_key`` column of copy k suffixed ``.k`` (copy k: a new set of patients with the same
    histories); a table ``dst`` already has is kept. Returns the rows of each table in ``dst``, counted
    from what was written."""
    from pyspark.sql import functions as F

    rows: dict[str, int] = {}
    for name in SILVER:
        table = f"silver.{name}"
        if not src.exists(table):
            continue
        if not dst.exists(table):
            base = src.read(table)
            keys = [c for c in base.columns if c.endswith("_key")]
            copy = F.explode(F.sequence(F.lit(0), F.lit(copies - 1))).alias("_copy")
            df = base.select("*", copy).select(
                *[
                    F.when(F.col(c).isNull(), None)
                    .otherwise(F.concat(F.col(c), F.lit("."), F.col("_copy").cast("string")))
                    .alias(c)
                    if c in keys
                    else F.col(c)
                    for c in base.columns
                ]
            )
            t = time.monotonic()
            dst.write(df, table, mode="overwrite")
            print(f"  {table}: written in {time.monotonic() - t:.0f} s", flush=True)
        rows[table] = dst.read(table).count()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="lake root whose silver layer is copied")
    ap.add_argument("--lake", required=True, help="lake root to write (silver is written once, then reused)")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--jobs", default="build_cohort,train", help="comma-separated jobs to time")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="config override for the copy and the jobs, e.g. spark.driver_memory=12g",
    )
    args = ap.parse_args()
    print(f"replicating silver of {args.source} x{args.copies} into {args.lake}", flush=True)
    t = time.monotonic()
    replicate(args.source, args.lake, args.copies, args.set)
    print(f"replicated in {time.monotonic() - t:.0f} s", flush=True)
    exe = Path(sys.executable).with_name("omicslake")
    rows = []
    for job in [j for j in args.jobs.split(",") if j]:
        cmd = [str(exe), "run", job, "--set", f"lake.root={args.lake}"]
        for s in args.set:
            cmd += ["--set", s]
        code, secs, tree, big, _ = measured(cmd, Path(args.lake) / f"scale-{job}.log")
        rows.append((job, code, secs, tree, big))
        print(
            f"{job:14s} exit {code}  {secs:7.0f} s  peak RSS tree {tree / 2**30:5.2f} GiB"
            f"  (largest process {big / 2**30:5.2f} GiB)",
            flush=True,
        )
        if code:
            break
    sys.exit(max((r[1] for r in rows), default=0))


if __name__ == "__main__":
    main()
