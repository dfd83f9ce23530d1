"""Job gwas: per-variant regression on a phenotype -> gold.gwas_<name>, Manhattan and QQ plots.

Genotypes come from a VCF (``vcf``), a PLINK fileset (``bfile``) or silver.genotypes; the
phenotype and covariates from files (PLINK .fam/.pheno/.cov, TSV, CSV) or, for covariates, a
lake table keyed by sample_id such as gold.genetic_pcs. Without a phenotype file the phenotype is
a cohort's label (gold.cohort_<jobs.gwas.cohort>) of consented samples linked in
silver.sample_link, with the first four genetic PCs as covariates. See omicslake.genomics.gwas for the
statistics and the two ways of treating missing calls.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config, GwasConfig
from omicslake.errors import InputError
from omicslake.io import files
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="gwas",
    description="Genome-wide association (linear/logistic, covariates, plink2-style or Hail-style missing calls) -> gold.gwas_<name>.",
    after=("build_cohort", "genomic_qc"),
    config=("jobs.gwas", "hail.reference_genome"),
    hail=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)
_TABLE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def _reference(cfg: Config) -> str | None:
    ref = cfg.jobs.gwas.reference_genome or cfg.hail.reference_genome
    return None if ref.lower() == "none" else ref


def _from_hail(mt: Any, reference: str | None) -> tuple[Any, int]:
    """Bi-allelic rows: split with Hail when there is a reference genome, else multi-allelic
    sites are left out (and counted)."""
    import hail as hl

    if reference is not None:
        return hl.split_multi_hts(mt, permit_shuffle=True), 0
    multi = mt.aggregate_rows(hl.agg.count_where(hl.len(mt.alleles) != 2))
    return mt.filter_rows(hl.len(mt.alleles) == 2), int(multi)


def load_genotypes(
    spark: SparkSession, cfg: Config, lake: Lake, c: GwasConfig
) -> tuple[DataFrame | None, Any, list[str], dict[str, Any]]:
    """(rows with calls or dosage arrays, or None; MatrixTable or None, sample ids in array order, metrics)."""

    from omicslake.genomics import features, vcf
    from omicslake.genomics.gwas.hail_mode import genotype_calls

    reference = _reference(cfg)
    need_mt = c.missing == "mean"
    if c.vcf or c.bfile:
        if c.vcf:
            path = Path(c.vcf).expanduser()
            if not path.exists():
                raise InputError(f"VCF {path} does not exist")
            kind = vcf.sniff(path)
            if kind == "gzip":
                raise InputError(
                    f"{path} is plain gzip, which cannot be read in parallel; recompress it: zcat {path.name} | bgzip > {path.stem}.bgz"
                )
            try:
                mt = vcf.import_vcf(path, kind, reference, {}, spark.sparkContext.defaultParallelism)
            except Exception as exc:  # noqa: BLE001 - Hail raises plain Java errors
                raise (vcf.hail_error(path, kind, exc) or exc) from exc
            source = str(path)
            lake.use_file(path)
        else:
            prefix = Path(c.bfile).expanduser()
            parts = {ext: Path(f"{prefix}.{ext}") for ext in ("bed", "bim", "fam")}
            absent = [str(p) for p in parts.values() if not p.exists()]
            if absent:
                raise InputError(f"PLINK fileset {prefix}: missing {', '.join(absent)}")
            # the one PLINK import path, shared with ingest_vcf (A2 as REF, as plink2 writes it)
            mt = vcf.import_plink(parts["bed"], reference, spark.sparkContext.defaultParallelism)
            source = str(prefix)
            for p in parts.values():
                lake.use_file(p)
        try:
            mt, skipped = _from_hail(mt, reference)
            samples = mt.s.collect()  # sample ids only
            rows = None
            if not need_mt:
                # Materialised first: when a Python worker fails under a Hail-backed DataFrame,
                # Hail 0.2.139 spins in empty task contexts (gigabytes of hail.log) instead of failing.
                tmp = cfg.layout.tmp(f"gwas-{lake.run_id}.parquet")
                # one byte per call (genotype_calls): far cheaper through Hail -> Spark -> Parquet than int arrays
                genotype_calls(mt).to_spark(flatten=False).write.mode("overwrite").parquet(tmp)
                rows = spark.read.parquet(tmp)
        except Exception as exc:  # noqa: BLE001 - Hail's errors are Java exceptions
            # a VCF on another reference fails at the first action: say which contigs and what to set
            err = vcf.reference_error(Path(c.vcf), vcf.sniff(Path(c.vcf)), exc, reference, {}) if c.vcf else None
            if err is None:
                raise
            raise err from None
        return rows, mt if need_mt else None, samples, {"genotypes": source, "multiallelic_skipped": skipped}
    samples = [
        r.sample_id for r in lake.read("silver.genotype_samples").orderBy("genotype_index").collect()
    ]  # ids only
    rows = lake.read("silver.genotypes")
    mt = features.matrix_from_genotypes(rows, samples, reference) if need_mt else None
    return (None if need_mt else rows), mt, samples, {"genotypes": "silver.genotypes"}


def _sample_table(lake: Lake, spec: str, id_col: str | None) -> Any:
    from omicslake.genomics.gwas import SampleTable, read_sample_table

    if _TABLE.match(spec) and not Path(spec).exists():
        frame = lake.read(spec).drop("run_id").toPandas()  # one row per sample: ids and a few numbers
        key = id_col or "sample_id"
        if key not in frame.columns:
            raise InputError(f"lake table {spec} has no sample id column {key!r}; columns are {list(frame.columns)}")
        frame = frame.astype({k: str for k in frame.columns}).set_index(key)
        return SampleTable(Path(spec), frame, plink=False)
    table = read_sample_table(spec, id_col)  # clear errors for a missing or malformed file first
    lake.use_file(spec)
    return table


def cohort_phenotype(lake: Lake, cohort: str) -> Any:
    """The label of gold.cohort_<cohort> per consented, linked sample (silver.sample_link)."""
    from omicslake.genomics.gwas import SampleTable

    table = f"gold.cohort_{cohort}"
    if not lake.exists(table):
        raise InputError(
            f"no phenotype: set jobs.gwas.pheno (or pass --pheno) to a .fam, .pheno, TSV or CSV file, or build {table} first (build_cohort)"
        )
    if not lake.exists("silver.sample_link"):
        raise InputError(
            "a cohort phenotype needs silver.sample_link (samples to persons): ingest and conform the sample link first"
        )
    link = lake.read("silver.sample_link").where("consent").select("sample_id", "person_key")
    frame = (
        link.join(lake.read(table).select("person_key", "label"), "person_key")
        .select("sample_id", F.col("label").cast("string"))
        .toPandas()
    )  # ids and labels of genotyped people
    return SampleTable(Path(table), frame.set_index("sample_id"), plink=False)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.genomics import gwas

    c = cfg.jobs.gwas
    if c.pheno:
        pheno, pheno_col = _sample_table(lake, c.pheno, c.id_col), c.pheno_col
        covar = _sample_table(lake, c.covar, c.id_col) if c.covar else None
        covar_cols = list(c.covar_cols)
    else:
        pheno, pheno_col = cohort_phenotype(lake, c.cohort), "label"
        # default covariates for a cohort phenotype: the first four genetic PCs
        covar_spec = c.covar or ("gold.genetic_pcs" if lake.exists("gold.genetic_pcs") else None)
        covar = _sample_table(lake, covar_spec, None) if covar_spec else None
        covar_cols = list(c.covar_cols) or (["pc1", "pc2", "pc3", "pc4"] if covar_spec == "gold.genetic_pcs" else [])
    seconds: dict[str, float] = {}
    t = time.monotonic()
    rows, mt, samples, metrics = load_genotypes(spark, cfg, lake, c)
    seconds["genotypes"] = time.monotonic() - t
    design = gwas.build_design(samples, pheno, pheno_col, c.model == "logistic", covar, covar_cols)
    rep = design.report
    log.info(
        "GWAS %s: %d of %d genotyped samples used (%d without a phenotype row, %d without a covariate row, "
        "%d with a missing value); %d phenotyped samples have no genotypes",
        c.name,
        rep["used"],
        rep["genotyped"],
        rep["no_phenotype_row"],
        rep["no_covariate_row"],
        rep["missing_value"],
        rep["phenotyped_not_genotyped"],
    )
    t = time.monotonic()  # Spark is lazy: the fits run in the write (Hail mode: the regression runs here)
    if c.missing == "mean":
        ht = gwas.regress_hail(mt, design, c.model, c.firth)  # Hail persists its regression's result
        results = gwas.hail_results(ht.filter(~ht.refit))
        flagged = ht.filter(ht.refit)
        if flagged.count():
            # Firth refits (separating or unconverged variants), materialised first as in drop mode
            tmp = cfg.layout.tmp(f"gwas-{lake.run_id}-firth.parquet")
            gwas.refit_rows(mt, flagged).to_spark(flatten=False).write.mode("overwrite").parquet(tmp)
            refits = gwas.regress(spark.read.parquet(tmp), design, "logistic", "mean", "always")
            results = results.unionByName(refits)
    else:
        results = gwas.regress(rows, design, c.model, c.missing, c.firth)
    table = f"gold.gwas_{c.name}"
    out = lake.write(
        results.withColumn("model", F.lit(c.model))
        .withColumn("missing_calls", F.lit(c.missing))
        .withColumn("run_id", F.lit(lake.run_id)),
        table,
        mode="overwrite",
    )
    seconds["fit_and_write"] = time.monotonic() - t
    t = time.monotonic()
    # One read of the results (a few numbers per variant) serves the plots, the status counts and the top hit.
    summary: pd.DataFrame = (
        lake.read(table).select("contig", "position", "ref", "alt", "p", "neg_log10_p", "firth", "status").toPandas()
    )
    status = {str(k): int(v) for k, v in summary["status"].value_counts().items()}
    lam = gwas.lambda_gc(10.0 ** -summary["neg_log10_p"].to_numpy())
    plots_dirs = {c.name: c.plots_dir}
    plots_dir = gwas.plots_location(cfg.layout, c.name, plots_dirs)  # a folder or an object store
    for file_name, png in gwas.plots(summary, f"{c.name} ({c.model}, n={rep['used']})").items():
        files.write_bytes(gwas.plots_location(cfg.layout, c.name, plots_dirs, file_name), png, cfg)
    recorded = [  # <root>/...: no root
        cfg.layout.portable(gwas.plots_location(cfg.layout, c.name, plots_dirs, f)) for f in gwas.PNGS
    ]
    ok = summary[summary["status"] == "ok"]
    top = ok.loc[ok["neg_log10_p"].idxmax()] if len(ok) else None
    for tmp in (f"gwas-{lake.run_id}.parquet", f"gwas-{lake.run_id}-firth.parquet"):
        files.remove_tree(cfg.layout.tmp(tmp), cfg)
    seconds["summary_and_plots"] = time.monotonic() - t
    metrics.update(
        seconds={k: round(v, 3) for k, v in seconds.items()},
        variants=out.rows,
        samples_used=rep["used"],
        samples_no_phenotype=rep["no_phenotype_row"],
        samples_missing_value=rep["missing_value"],
        lambda_gc=round(lam, 4),
        status_counts=status,
        firth_fits=int(summary["firth"].fillna(False).astype(bool).sum()),
        top_variant=f"{top.contig}:{top.position}:{top.ref}:{top.alt} p={top.p:.3g}" if top is not None else None,
        manhattan=recorded[0],
        qq=recorded[1],
    )
    log.info("GWAS %s: %d variants, lambda GC %.3f, plots in %s", c.name, out.rows, lam, plots_dir)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
