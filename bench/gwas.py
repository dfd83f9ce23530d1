"""Benchmark: our GWAS against plink2 --glm and Hail's logistic_regression_rows, one VCF, one run.

On one seeded VCF.bgz (see :func:`bench.common.generate_vcf`) with a case/control phenotype and two
covariates, in an already started session, times: (1) ``omicslake gwas`` logistic with plink2's
missing-call handling (VCF -> Hail -> Spark -> blocked NumPy fits on the executors -> Delta ->
plots), with the job's own per-stage times; (2) the same in Hail mode (mean imputation, Hail's own
logistic_regression_rows, Firth refits); (3) ``plink2 --vcf ... --glm --threads 2``; (4) Hail's
``import_vcf`` -> ``split_multi_hts`` -> ``logistic_regression_rows`` (Wald) -> ``write``. Records
the ratios of ours to each peer and the agreement with plink2 on every variant both fitted.
"""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path
from typing import Any

from bench.common import Timer, generate_vcf, ratio


def _plink2(work: Path, data: dict[str, Any]) -> Path:
    out = work / "p2"
    subprocess.run(
        [
            "plink2",
            "--vcf",
            data["vcf"],
            "--max-alleles",
            "2",
            "--pheno",
            data["pheno"],
            "--covar",
            data["covar"],
            "--glm",
            "hide-covar",
            "cols=+a1freq,+beta,+nobs,+firth",
            "--threads",
            "2",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = [p for p in work.glob("p2.Y.glm.logistic*") if not p.name.endswith(".id")]
    return path


def _hail_peer(work: Path, data: dict[str, Any], parts: int) -> int:
    """Hail's own GWAS on the same file: what a Hail user would write."""
    import hail as hl

    mt = hl.import_vcf(data["vcf"], reference_genome=data["reference"], force_bgz=True, min_partitions=parts)
    mt = hl.split_multi_hts(mt, permit_shuffle=True)
    pheno = hl.import_table(data["pheno"], key="#IID", types={"Y": hl.tint32})
    covar = hl.import_table(data["covar"], key="#IID", types={"age": hl.tfloat64, "sex": hl.tfloat64})
    mt = mt.annotate_cols(y=pheno[mt.s].Y - 1, c=covar[mt.s])
    ht = hl.logistic_regression_rows(test="wald", y=mt.y, x=mt.GT.n_alt_alleles(), covariates=[1.0, mt.c.age, mt.c.sex])
    ht.write(str(work / "hail_gwas.ht"), overwrite=True)
    return hl.read_table(str(work / "hail_gwas.ht")).count()


def _agreement(ours: list[Any], plink2_file: Path) -> dict[str, Any]:
    """|delta beta| and |delta log10 p| against plink2 over the variants both fitted (status ok),
    and on how many the Wald/Firth choice or n differs."""
    with plink2_file.open() as f:
        theirs = {(r["#CHROM"], int(r["POS"]), r["REF"], r["ALT"]): r for r in csv.DictReader(f, delimiter="\t")}
    d_beta, d_logp, kind, n_diff, firth, missing = [], [], 0, 0, 0, 0
    for key, p2 in theirs.items():
        if p2["ERRCODE"] != ".":
            continue
        r = ours.get(key)
        if r is None or r.status != "ok":
            missing += 1
            continue
        sign = 1.0 if p2["A1"] == r.alt else -1.0
        d_beta.append(abs(r.beta - sign * float(p2["BETA"])))
        d_logp.append(abs(r.neg_log10_p + math.log10(float(p2["P"]))))
        kind += (p2.get("FIRTH?", "N") == "Y") != r.firth
        n_diff += int(p2["OBS_CT"]) != r.n
        firth += bool(r.firth)
    return {
        "plink2_fitted": sum(r["ERRCODE"] == "." for r in theirs.values()),
        "compared": len(d_beta),
        "plink2_fitted_we_did_not": missing,
        "by_firth": firth,
        "max_abs_d_beta": max(d_beta, default=None),
        "max_abs_d_log10_p": max(d_logp, default=None),
        "wald_firth_choice_differs": kind,
        "n_differs": n_diff,
        "within_bars": bool(d_beta)
        and max(d_beta) <= 1e-3
        and max(d_logp) <= 0.01
        and not missing
        and not kind
        and not n_diff,
    }


def run(
    spark: Any, cfg: Any, work: Path, variants: int, samples: int, seed: int = 7, peers: bool = True
) -> dict[str, Any]:
    """Times and ratios at one size (a dict for the JSON)."""
    from omicslake.io.delta import Lake
    from omicslake.jobs.base import execute

    timer = Timer()
    with timer("generate_inputs"):
        data = generate_vcf(work, variants, samples, seed)
    folder = Path(data["folder"])
    parts = 2 * spark.sparkContext.defaultParallelism
    base = {
        "lake.root": str(work / "lake"),
        "jobs.gwas.vcf": data["vcf"],
        "jobs.gwas.pheno": data["pheno"],
        "jobs.gwas.pheno_col": "Y",
        "jobs.gwas.covar": data["covar"],
        "jobs.gwas.covar_cols": ["age", "sex"],
        "jobs.gwas.reference_genome": data["reference"],
    }
    stages: dict[str, Any] = {}
    for label, extra in (
        ("ours_drop", {"jobs.gwas.name": "bench"}),
        ("ours_mean", {"jobs.gwas.name": "bench_hail", "jobs.gwas.missing": "mean"}),
    ):
        with timer(label):
            r = execute(spark, cfg.replace(**base, **extra), "gwas")
        stages[label] = {
            "stages": r.metrics.get("seconds"),
            "variants": r.metrics["variants"],
            "firth_fits": r.metrics["firth_fits"],
            "status_counts": r.metrics["status_counts"],
        }
    record: dict[str, Any] = {"inputs": data, "ours": stages}
    if peers:
        with timer("plink2"):
            p2 = _plink2(folder, data)
        with timer("hail_logistic_regression_rows"):
            hail_rows = _hail_peer(folder, data, parts)
        cols = ("contig", "position", "ref", "alt", "n", "beta", "neg_log10_p", "firth", "status")
        rows = (
            Lake(spark, cfg.replace(**base)).read("gold.gwas_bench").select(*cols).collect()
        )  # a few numbers per variant
        ours = {(r.contig.removeprefix("chr"), r.position, r.ref, r.alt): r for r in rows}
        record["agreement_with_plink2"] = _agreement(ours, p2)
        record["hail_peer_variants"] = hail_rows
    t = timer.seconds
    record["seconds"] = t
    record["ratios"] = {
        "ours_drop_vs_plink2": ratio(t["ours_drop"], t.get("plink2")),
        "ours_drop_vs_hail": ratio(t["ours_drop"], t.get("hail_logistic_regression_rows")),
        "ours_mean_vs_plink2": ratio(t["ours_mean"], t.get("plink2")),
        "ours_mean_vs_hail": ratio(t["ours_mean"], t.get("hail_logistic_regression_rows")),
    }
    return record
