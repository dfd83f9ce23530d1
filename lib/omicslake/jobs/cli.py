"""The ``omicslake`` command: run one job, the whole pipeline, or look at the lake."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.jobs import DAG, available_jobs
from omicslake.jobs.base import common_args, run_from_args, with_session

_EPILOG = """examples:
  omicslake pipeline                          whole demo pipeline, local mode, ./lakehouse
  omicslake run generate --set jobs.generate.patients=10000
  omicslake generate --out /data/raw --patients 100000 --samples 2000 --variants 20000 --seed 7
  omicslake tables --set lake.root=/data/lake
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omicslake",
        description="Genomic (Hail) and EHR data into Delta Lake bronze/silver/gold, "
        "and Spark MLlib models tracked in MLflow.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p_run = sub.add_parser("run", help="run one job", description="Run one job, audited in ops.runs.")
    p_run.add_argument("job", choices=available_jobs(), help="the job to run")
    common_args(p_run)

    p_pipe = sub.add_parser(
        "pipeline", help="run the jobs of the DAG in dependency order", description="Run the DAG: "
        + " -> ".join(DAG) + ". Jobs not implemented yet are skipped."
    )
    p_pipe.add_argument("--only", help="comma-separated jobs to run (in DAG order)")
    p_pipe.add_argument("--from", dest="start", help="start at this job")
    p_pipe.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    common_args(p_pipe)

    p_tab = sub.add_parser("tables", help="list lake tables with version and row count")
    common_args(p_tab)

    p_gen = sub.add_parser(
        "generate",
        help="write a synthetic cohort (Synthea CSV, FHIR NDJSON, VCF.bgz) with planted truth",
        description="Write raw source files for a synthetic cohort whose truth is known "
        "(manifest.json). Deterministic for a seed.",
    )
    p_gen.add_argument("--out", help="output folder (default: <lake.root>/landing)")
    p_gen.add_argument("--patients", type=int)
    p_gen.add_argument("--samples", type=int, help="genotyped samples")
    p_gen.add_argument("--variants", type=int)
    p_gen.add_argument("--seed", type=int)
    p_gen.add_argument("--messy", action="store_true", help="turn on the messy-data knobs (duplicates, malformed lines, mixed units, a second batch with corrections and schema drift)")
    common_args(p_gen)

    sub.add_parser("fetch-jars", help="download Delta Lake's jars into the local cache (for offline use)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_from_args(args.job, args)
    if args.command == "generate":
        for key in ("out", "patients", "samples", "variants", "seed"):
            value = getattr(args, key)
            if value is not None:
                args.overrides.append(f"jobs.generate.{key}={value}")
        if args.messy:
            args.overrides.append("jobs.generate.messy=true")
        return run_from_args("generate", args)
    if args.command == "fetch-jars":
        from omicslake.config import load_config
        from omicslake.jars import delta_jars

        cfg = load_config("local")
        for path in delta_jars(cfg.delta.version, cfg.delta.scala):
            print(path)
        return 0
    if args.command == "tables":
        return _tables(args)
    if args.command == "pipeline":
        from omicslake.pipeline import run_pipeline_from_args

        return run_pipeline_from_args(args)
    raise AssertionError(args.command)


def _tables(args: argparse.Namespace) -> int:
    from omicslake.io.delta import Lake

    def action(spark: SparkSession, cfg: Config) -> int:
        rows = Lake(spark, cfg).tables()
        print(f"{'table':<36}{'version':>8}{'rows':>14}")
        for name, version, count in rows:
            print(f"{name:<36}{version:>8}{count:>14}")
        if not rows:
            print(f"(no tables under {cfg.lake_root})")
        return 0

    return with_session(args, "tables", action)


if __name__ == "__main__":
    sys.exit(main())
