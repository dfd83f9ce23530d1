"""GWAS inputs: phenotype and covariate files read as plink2 reads them, and the regression's design
(samples with a genotype, a phenotype and every covariate, in genotype order)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from omicslake.errors import InputError

MISSING_TOKENS = {"", "NA", "na", "NaN", "nan", ".", "NULL", "null"}
PLINK_SUFFIXES = {".fam", ".pheno", ".phe", ".cov", ".covar", ".eigenvec"}


@dataclass(frozen=True)
class SampleTable:
    """A phenotype or covariate file as strings, indexed by sample id, with where it came from."""

    path: Path
    frame: pd.DataFrame
    plink: bool  # PLINK formats: -9 means missing

    def numeric(self, column: str) -> pd.Series:
        """The column as floats indexed by sample id, missing tokens (``MISSING_TOKENS``; -9 in PLINK formats)
        as NaN. InputError naming the file when there is no such column, or the file and line of the first
        value that is not a number."""
        if column not in self.frame.columns:
            raise InputError(f"{self.path}: no column {column!r}; columns are {list(self.frame.columns)}")
        raw = self.frame[column].str.strip()
        missing = raw.isin(MISSING_TOKENS) | (self.plink & (raw == "-9"))
        values = pd.to_numeric(raw.where(~missing), errors="coerce")
        bad = values.isna() & ~missing
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + self.first_line
            raise InputError(
                f"{self.path}, line {line}: column {column!r} is not a number there ({int(bad.sum())} such rows); "
                f"use a number, or NA for missing (encode categories as 0/1 columns)"
            )
        return values.astype(float)

    @property
    def first_line(self) -> int:
        """The file line of the first sample row: 1 for a .fam (no header), else 2."""
        return 1 if self.path.suffix.lower() == ".fam" else 2


def read_sample_table(path: str | Path, id_col: str | None = None) -> SampleTable:
    """A PLINK .fam (FID IID PAT MAT SEX PHENO1), a PLINK .pheno/.cov with a header
    (``#FID IID ...`` or ``#IID ...``) or a TSV/CSV with a header; the sample id is IID when
    there is one, else ``id_col``, else the first column."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.suffix.lower() == ".fam":
        frame = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, keep_default_na=False)
        if frame.shape[1] != 6:
            raise InputError(
                f"{path}: a .fam file has 6 columns (FID IID PAT MAT SEX PHENO), this one has {frame.shape[1]}"
            )
        frame.columns = ["FID", "IID", "PAT", "MAT", "SEX", "PHENO1"]
    else:
        with path.open() as f:
            first = f.readline()
        sep = "\t" if "\t" in first else "," if "," in first else r"\s+"
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        frame.columns = [str(c).lstrip("#").strip() for c in frame.columns]
    key = id_col or ("IID" if "IID" in frame.columns else str(frame.columns[0]))
    if key not in frame.columns:
        raise InputError(
            f"{path}: no sample id column {key!r}; columns are {list(frame.columns)} (choose one with --id-col)"
        )
    dup = frame[key].duplicated()
    if dup.any():
        raise InputError(
            f"{path}: sample ids repeat in column {key!r} ({int(dup.sum())} repeats, first on line "
            f"{int(np.flatnonzero(dup.to_numpy())[0]) + 2}); keep one row per sample"
        )
    return SampleTable(path, frame.set_index(key), path.suffix.lower() in PLINK_SUFFIXES)


@dataclass(frozen=True)
class Design:
    """The regression's samples (positions in the genotype arrays), response and covariates."""

    index: np.ndarray
    samples: list[str]
    y: np.ndarray
    covariates: np.ndarray  # n x (1 + k), intercept first
    covariate_names: list[str]
    binary: bool
    report: dict[str, int | list[str]] = field(default_factory=dict)


def binary_response(values: pd.Series, where: str) -> pd.Series:
    """0/1 as given; PLINK's 1 = control, 2 = case (0 then means missing)."""
    seen = set(values.dropna().unique())
    if seen <= {0.0, 1.0}:
        return values
    if seen <= {0.0, 1.0, 2.0}:
        return values.where(values != 0) - 1
    raise InputError(
        f"{where}: a logistic model needs a case/control column coded 0/1 or PLINK's 1/2; found values {sorted(seen)[:6]}"
    )


def build_design(
    genotype_samples: list[str],
    pheno: SampleTable,
    pheno_col: str,
    binary: bool,
    covar: SampleTable | None = None,
    covar_cols: list[str] | tuple[str, ...] = (),
) -> Design:
    """Samples with a genotype, a phenotype and every covariate, in genotype order; the
    others are counted in ``report``, never guessed."""
    y = pheno.numeric(pheno_col)
    if binary:
        y = binary_response(y, f"{pheno.path} column {pheno_col!r}")
    columns = {pheno_col: y}
    names = list(covar_cols)
    for c in names:
        columns[c] = (covar or pheno).numeric(c)
    geno = pd.Index(genotype_samples)
    in_pheno = geno.isin(y.index)
    in_covar = geno.isin(covar.frame.index) if covar is not None and names else np.ones(len(geno), bool)
    frame = pd.DataFrame({k: v.reindex(geno) for k, v in columns.items()})
    complete = frame.notna().all(axis=1).to_numpy()
    keep = np.flatnonzero(complete)
    not_in_pheno = geno[~in_pheno].tolist()
    report: dict[str, int | list[str]] = {
        "genotyped": len(geno),
        "used": len(keep),
        "no_phenotype_row": len(not_in_pheno),
        "no_covariate_row": int((~in_covar).sum()),
        "missing_value": int((in_pheno & in_covar & ~complete).sum()),
        "phenotyped_not_genotyped": int((~y.index.isin(geno)).sum()),
        "examples_no_phenotype_row": not_in_pheno[:5],
    }
    if len(keep) < len(names) + 3:
        raise InputError(
            f"only {len(keep)} of {len(geno)} genotyped samples have {pheno_col!r} and every covariate in "
            f"{pheno.path}{' / ' + str(covar.path) if covar else ''}; check that the sample ids match the VCF's"
        )
    c = frame.iloc[keep]
    if binary and c[pheno_col].nunique() < 2:
        raise InputError(f"{pheno.path}: {pheno_col!r} has one class only among the {len(keep)} usable samples")
    x = np.column_stack([np.ones(len(keep))] + [c[n].to_numpy(float) for n in names])
    return Design(keep, [genotype_samples[i] for i in keep], c[pheno_col].to_numpy(float), x, names, binary, report)
