"""Benchmark: our VCF -> bronze.variants against Hail's own MatrixTable write and bcftools.

    .venv/bin/python bench/ingest_vcf.py [--variants 20000] [--samples 2000] [--keep DIR]

Generates one VCF.bgz with the project's generator (seeded), then times, on the same file in
the same run: (1) `omicslake run ingest_vcf` (Hail import -> checks -> Delta), (2)
`hl.import_vcf(...).write(...)` with the same partitioning, (3) `bcftools view -Ou` (single
thread, BCF out). Prints wall times and ratios.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", type=int, default=20000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--keep", help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-ingest-"))
    import hail as hl

    from omicslake.config import load_config
    from omicslake.jobs.base import execute
    from omicslake.session import build_session, stop_session

    cfg = load_config("local", overrides=[f"lake.root={work / 'lake'}", f"jobs.generate.patients={args.samples}",
                                          f"jobs.generate.samples={args.samples}", f"jobs.generate.variants={args.variants}"])
    spark = build_session(cfg)
    vcf = work / "lake" / "landing" / "vcf" / "cohort.vcf.bgz"
    if not vcf.exists():
        t = time.monotonic()
        execute(spark, cfg, "generate")
        print(f"generated {args.variants} x {args.samples} in {time.monotonic() - t:.1f} s: {vcf.stat().st_size / 1e6:.1f} MB")
    parts = 2 * spark.sparkContext.defaultParallelism

    t = time.monotonic()
    r = execute(spark, cfg.replace(**{"jobs.ingest_vcf.paths": [str(vcf)]}), "ingest_vcf")
    ours = time.monotonic() - t
    t = time.monotonic()
    r2 = execute(spark, cfg.replace(**{"jobs.ingest_vcf.paths": [str(vcf)], "jobs.ingest_vcf.text_checks": False,
                                         "lake.root": str(work / "lake2")}), "ingest_vcf")
    ours_nocheck = time.monotonic() - t
    t = time.monotonic()
    hl.import_vcf(str(vcf), reference_genome="GRCh38", force_bgz=True, min_partitions=parts).write(str(work / "hail.mt"), overwrite=True)
    hail_mt = time.monotonic() - t
    bcf = None
    if shutil.which("bcftools"):
        t = time.monotonic()
        subprocess.run(["bcftools", "view", "-Ou", "-o", str(work / "out.bcf"), str(vcf)], check=True)
        bcf = time.monotonic() - t
    print(f"records: {r.metrics['variants']} (and {r2.metrics['variants']})")
    print(f"omicslake ingest_vcf (with text checks)    {ours:8.1f} s")
    print(f"omicslake ingest_vcf (text_checks=false)   {ours_nocheck:8.1f} s")
    print(f"hail import_vcf().write() MatrixTable      {hail_mt:8.1f} s")
    if bcf is not None:
        print(f"bcftools view -Ou                          {bcf:8.1f} s")
    print(f"ratio ours / hail MT write: {ours / hail_mt:.2f} (text checks), {ours_nocheck / hail_mt:.2f} (no text checks)")
    if bcf is not None:
        print(f"ratio bcftools / ours: {bcf / ours:.2f} (above 1: ours is faster)")
    stop_session(spark)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
