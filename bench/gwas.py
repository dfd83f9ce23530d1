"""Benchmark: our GWAS against plink2 --glm on the same VCF and phenotype, in one run.

    .venv/bin/python bench/gwas.py [--variants 10000] [--samples 2000] [--keep DIR]

Generates one VCF.bgz with the project's generator (seeded) and a case/control phenotype from
the planted genetic score, then times on the same files: (1) `omicslake gwas` logistic with
plink2's missing-call handling (VCF -> Hail -> per-variant fits on the executors -> Delta ->
plots), (2) the same with Hail's own logistic_regression_rows (mean imputation), (3) `plink2
--vcf ... --glm` (2 threads). Prints wall times, ratios, the largest |delta beta| against
plink2 over the variants both fitted (Wald or Firth), and on how many the kind of fit differs.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", type=int, default=10000)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--keep", help="work folder to keep (default: a temp folder, removed)")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-gwas-"))
    from omicslake.config import load_config
    from omicslake.io.delta import Lake
    from omicslake.jobs.base import execute
    from omicslake.session import build_session, stop_session

    cfg = load_config("local", overrides=[f"lake.root={work / 'lake'}", f"jobs.generate.patients={args.samples}",
                                          f"jobs.generate.samples={args.samples}", f"jobs.generate.variants={args.variants}"])
    spark = build_session(cfg)
    landing = work / "lake" / "landing"
    vcf = landing / "vcf" / "cohort.vcf.bgz"
    if not vcf.exists():
        t = time.monotonic()
        execute(spark, cfg, "generate")
        print(f"generated {args.variants} x {args.samples} in {time.monotonic() - t:.1f} s")
    with (landing / "truth" / "patients.csv").open() as f:
        score = {r["patient_id"]: float(r["genetic_score"]) for r in csv.DictReader(f)}
    with (landing / "sample_link.csv").open() as f:
        link = {r["sample_id"]: r["patient_id"] for r in csv.DictReader(f)}
    rng = np.random.default_rng(5)
    samples = sorted(link)
    s = np.array([score[link[x]] for x in samples])
    case = (s + rng.logistic(0, 0.6, len(s)) > np.median(s)).astype(int)
    pheno = work / "pheno.tsv"
    pheno.write_text("#IID\tY\n" + "".join(f"{x}\t{c + 1}\n" for x, c in zip(samples, case)))  # PLINK 1/2 coding

    base = {"jobs.gwas.vcf": str(vcf), "jobs.gwas.pheno": str(pheno), "jobs.gwas.pheno_col": "Y"}
    times = {}
    for label, extra in (("drop", {"jobs.gwas.name": "bench"}), ("mean", {"jobs.gwas.name": "bench_hail", "jobs.gwas.missing": "mean"})):
        t = time.monotonic()
        r = execute(spark, cfg.replace(**base, **extra), "gwas")
        times[label] = time.monotonic() - t
        assert r.status == "succeeded", r.error
    t = time.monotonic()
    subprocess.run(["plink2", "--vcf", str(vcf), "--max-alleles", "2", "--pheno", str(pheno), "--glm", "allow-no-covars", "cols=+beta,+firth",
                    "--threads", "2", "--out", str(work / "p2")], check=True, capture_output=True)
    times["plink2"] = time.monotonic() - t
    (out,) = work.glob("p2.Y.glm.logistic*")
    with out.open() as f:
        theirs = {(r["#CHROM"], int(r["POS"]), r["REF"], r["ALT"]): r for r in csv.DictReader(f, delimiter="\t")}
    cols = ("contig", "position", "ref", "alt", "beta", "firth", "status")
    ours = Lake(spark, cfg).read("gold.gwas_bench").select(*cols).collect()
    deltas, kind_differs, firth = [], 0, 0
    for r in ours:
        p2 = theirs.get((r.contig.removeprefix("chr"), r.position, r.ref, r.alt))
        if p2 and p2["ERRCODE"] == "." and r.status == "ok":
            sign = 1.0 if p2["A1"] == r.alt else -1.0  # plink2 may test the REF allele (A1 column)
            deltas.append(abs(r.beta - sign * float(p2["BETA"])))
            kind_differs += (p2["FIRTH?"] == "Y") != r.firth
            firth += r.firth
    print(f"variants: {len(ours)} ours, {len(theirs)} plink2 (bi-allelic); compared {len(deltas)} ({firth} by Firth), "
          f"max |delta beta| {max(deltas):.2e}, Wald/Firth choice differs on {kind_differs}")
    print(f"omicslake gwas, missing=drop (plink2's way)   {times['drop']:8.1f} s")
    print(f"omicslake gwas, missing=mean (Hail's method)  {times['mean']:8.1f} s")
    print(f"plink2 --glm (2 threads)                      {times['plink2']:8.1f} s")
    print(f"ratio ours / plink2: {times['drop'] / times['plink2']:.1f} (drop), {times['mean'] / times['plink2']:.1f} (mean)")
    stop_session(spark)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
