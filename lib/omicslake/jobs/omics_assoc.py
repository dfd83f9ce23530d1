"""Job omics_assoc: per-feature association (differential expression / abundance / methylation) of
one QC'd assay with a phenotype, into gold.omics_assoc_<name>.

The phenotype comes from a TSV/CSV file (``pheno``: a sample id column, the phenotype, numeric
covariates) or, without one, from the label of gold.cohort_<cohort> through the person each sample
is linked to. Only samples that passed omics QC and are consented in the sample link are analysed
(silver.omics_samples_<assay>.consent, as the genomes' GWAS uses consented samples only), and only
those with the phenotype and every covariate. Every feature is fitted in parallel on the executors
(``omicslake.omics.assoc``: one shared ``(X'X)^-1 X'``), then Benjamini-Hochberg q-values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.contracts import enforce, load_contract
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="omics_assoc",
    description="Per-feature OLS of a QC'd omics assay on a phenotype with covariates, BH FDR: gold.omics_assoc_<name>.",
    after=("omics_qc", "build_cohort"),
    config=("jobs.omics_assoc",),
)
NAME = SPEC.name
log = logging.getLogger(__name__)
_TRUE = {"1", "true", "t", "yes", "case", "1.0"}
_FALSE = {"0", "false", "f", "no", "control", "0.0"}


def _numeric(values: pd.Series, what: str, where: str) -> pd.Series:
    """A phenotype or covariate as numbers: numeric text, or a two-level label (true/false, case/control)."""
    text = values.astype(str).str.strip().str.lower()
    out = pd.to_numeric(values, errors="coerce")
    labels = text.isin(_TRUE | _FALSE)
    out = out.where(~labels | out.notna(), text.isin(_TRUE).astype(float))
    bad = values.notna() & (text != "") & (text != "nan") & out.isna()
    if bad.any():
        raise InputError(
            f"{where}: column {what!r} has values that are neither numbers nor a 0/1 label (first at sample {bad.idxmax()!r})"
        )
    return out


def read_pheno(path: str, id_col: str, cols: list[str]) -> pd.DataFrame:
    """The phenotype file (TSV, or CSV by its .csv suffix) as a frame indexed by sample id with the
    requested columns as numbers; InputError naming the file and the column otherwise."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"phenotype file {p} does not exist (jobs.omics_assoc.pheno)")
    frame = pd.read_csv(p, sep="," if p.suffix.lower() == ".csv" else "\t", dtype=str)
    missing = [c for c in [id_col, *cols] if c not in frame.columns]
    if missing:
        raise InputError(f"{p}: column(s) {missing} not found; columns are {list(frame.columns)}")
    if frame[id_col].duplicated().any():
        raise InputError(f"{p}: sample id(s) appear more than once in column {id_col!r}")
    frame = frame.set_index(id_col)
    return pd.DataFrame({c: _numeric(frame[c], c, str(p)) for c in cols}, index=frame.index)


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    from omicslake.omics import assoc

    c = cfg.jobs.omics_assoc
    samples_table, features_table = f"silver.omics_samples_{c.assay}", f"silver.omics_{c.assay}"
    if not lake.exists("bronze.omics_samples"):
        log.info("no omics in the lake (bronze.omics_samples does not exist); nothing to do")
        return {"features": 0}
    if not lake.exists(features_table):
        raise InputError(f"{features_table} does not exist: run omics_qc for assay {c.assay!r} first")
    samples = (
        lake.read(samples_table)
        .where(F.col("passed") & F.col("consent"))
        .select("sample_id", "position", "person_key")
        .toPandas()
    )  # one row per sample
    covars = list(c.covar_cols)
    if c.pheno:
        lake.use_file(c.pheno)
        pheno = read_pheno(c.pheno, c.id_col, [c.pheno_col, *covars])
        frame = samples.set_index("sample_id").join(pheno, how="inner")
    else:
        if covars:
            raise InputError(
                "jobs.omics_assoc.covar_cols needs a phenotype file (jobs.omics_assoc.pheno) that holds them"
            )
        table = f"gold.cohort_{c.cohort}"
        if not lake.exists(table):
            raise InputError(
                f"no phenotype: set jobs.omics_assoc.pheno to a TSV/CSV file, or build {table} first (build_cohort)"
            )
        labels = lake.read(table).select("person_key", F.col("label").cast("double").alias(c.pheno_col)).toPandas()
        frame = samples.merge(labels, on="person_key", how="inner").set_index("sample_id")
    frame = frame.dropna(subset=[c.pheno_col, *covars]).sort_values("position")
    k = 2 + len(covars)
    if len(frame) <= k:
        raise InputError(
            f"{len(frame)} consented, QC-passed samples of assay {c.assay!r} have the phenotype {c.pheno_col!r} and every "
            f"covariate; at least {k + 1} are needed"
        )
    if frame[c.pheno_col].nunique() < 2:
        raise InputError(f"the phenotype {c.pheno_col!r} takes one value only over the {len(frame)} analysed samples")
    x = assoc.design(frame[c.pheno_col].to_numpy(), frame[covars].to_numpy() if covars else None)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise InputError(
            f"the design (intercept, {c.pheno_col}, {covars}) is not of full rank: a covariate is constant or collinear"
        )
    positions = [int(p) for p in frame["position"]]
    fitted = assoc.associate(lake.read(features_table), positions, x).select("assay", "feature_id", "result.*", "mean")
    res = (
        assoc.bh(fitted.cache())
        .withColumn("significant", F.col("q") <= F.lit(c.fdr))
        .withColumn("run_id", F.lit(lake.run_id))
    )
    out = lake.write(
        res.transform(enforce(load_contract(f"gold.omics_assoc_{c.name}"))),
        f"gold.omics_assoc_{c.name}",
        mode="overwrite",
    )
    n_sig = lake.read(f"gold.omics_assoc_{c.name}").where("significant").count()
    fitted.unpersist()
    return {"samples": len(frame), "features": out.rows, "significant": n_sig, "covariates": covars}


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
