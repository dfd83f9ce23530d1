"""GWAS against plink2 --glm on Hail's EPACTS-checked logistic set, our two missing-call modes
against each other, PLINK bed input, and the errors a researcher meets first."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import pytest
from oracles import compare, plink2_glm
from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.genomics.gwas import build_design, read_sample_table
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute
from omicslake.jobs.cli import main as cli_main

needs_plink2 = pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed (./dev test installs it)")


def _epacts_cfg(cfg: Config, external: Path, **extra: object) -> Config:
    g = external / "gwas"
    return cfg.replace(**{
        "jobs.gwas.vcf": str(g / "regressionLogisticEpacts.vcf"),
        "jobs.gwas.pheno": str(g / "regressionLogisticEpacts.fam"),
        "jobs.gwas.pheno_col": "PHENO1",
        "jobs.gwas.covar": str(g / "regressionLogisticEpacts.cov"),
        "jobs.gwas.covar_cols": ["PC1", "PC2"],
        "jobs.gwas.reference_genome": "GRCh37",
        "jobs.gwas.name": "epacts",
        **{f"jobs.gwas.{k}": v for k, v in extra.items()},
    })


@needs_plink2
def test_logistic_agrees_with_plink2_and_hail_mode_agrees_with_ours(spark: SparkSession, cfg: Config, external: Path, tmp_path: Path) -> None:
    g = external / "gwas"
    result = execute(spark, _epacts_cfg(cfg, external), "gwas", run_id="e1")
    assert result.status == "succeeded"
    ours = Lake(spark, cfg).read("gold.gwas_epacts").orderBy("position").collect()
    assert len(ours) == 5
    fam = {line.split()[1]: float(line.split()[5]) for line in (g / "regressionLogisticEpacts.fam").read_text().splitlines()}
    with (g / "regressionLogisticEpacts.cov").open() as f:
        cov = {r["IND_ID"]: [float(r["PC1"]), float(r["PC2"])] for r in csv.DictReader(f, delimiter="\t")}
    theirs = plink2_glm(tmp_path / "p2", ["--vcf", str(g / "regressionLogisticEpacts.vcf")], fam, cov, ["PC1", "PC2"], "logistic")
    assert compare(ours, theirs) == 5
    m = result.metrics
    assert m["samples_used"] == 2535 and Path(m["manhattan"]).stat().st_size > 5000 and Path(m["qq"]).exists()

    # Hail's own logistic_regression_rows (mean imputation): no missing calls here, so the same fit.
    hail_mode = execute(spark, _epacts_cfg(cfg, external, missing="mean", name="epacts_hail"), "gwas", run_id="e2")
    assert hail_mode.status == "succeeded"
    hail_rows = Lake(spark, cfg).read("gold.gwas_epacts_hail").orderBy("position").collect()
    for a, b in zip(ours, hail_rows):
        assert (a.position, a.n) == (b.position, b.n)
        assert abs(a.beta - b.beta) < 1e-6 and abs(a.se - b.se) < 1e-6 and abs(a.p - b.p) < 1e-6


@needs_plink2
def test_plink_bed_input_through_the_cli(spark: SparkSession, cfg: Config, external: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = external / "gwas"
    subprocess.run(["plink2", "--vcf", str(g / "regressionLinear.vcf"), "--make-bed", "--out", str(tmp_path / "lin")], check=True, capture_output=True)
    # Shifted by 0.5: plink2 takes a 0/1/2-valued phenotype for case/control and would fit a
    # logistic model; shifted, both tools fit the same linear model.
    with (g / "regressionLinear.pheno").open() as f:
        ph = {r["Sample"]: float(r["Pheno"]) + 0.5 for r in csv.DictReader(f, delimiter="\t") if r["Pheno"] not in ("NA", "")}
    pheno = tmp_path / "lin.pheno"
    pheno.write_text("#FID\tIID\tPheno\n" + "".join(f"0\t{s}\t{v}\n" for s, v in ph.items()))
    code = cli_main(["gwas", "--bfile", str(tmp_path / "lin"), "--pheno", str(pheno), "--pheno-col", "Pheno", "--covar",
                     str(g / "regressionLinear.cov"), "--covar-cols", "Cov1,Cov2", "--model", "linear", "--reference", "none",
                     "--name", "lin", "--set", f"lake.root={cfg.lake.root}"])
    assert code == 0, capsys.readouterr().err
    ours = Lake(spark, cfg).read("gold.gwas_lin").orderBy("position").collect()
    with (g / "regressionLinear.cov").open() as f:
        cv = {r["Sample"]: [float(r["Cov1"]), float(r["Cov2"])] for r in csv.DictReader(f, delimiter="\t") if "NA" not in (r["Cov1"], r["Cov2"])}
    theirs = plink2_glm(tmp_path / "p2", ["--bfile", str(tmp_path / "lin")], ph, cv, ["Cov1", "Cov2"], "linear")
    # plink2's .bim names contigs as it read them; our rows carry the same names.
    assert compare(ours, theirs) >= 5
    by_status = {r.status for r in ours}
    assert by_status <= {"ok", "constant_genotype", "collinear", "too_few_samples"}


def test_sample_files_are_read_as_plink_does_and_mismatches_are_reported(tmp_path: Path, external: Path) -> None:
    fam = read_sample_table(external / "gwas" / "regressionLogisticEpacts.fam")
    assert fam.frame.index[0] == "NA19438" and list(fam.frame.columns)[-1] == "PHENO1"
    d = build_design(["HG01841", "NOPE", "NA19438", "HG02315"], fam, "PHENO1", True)
    assert list(d.y) == [1.0, 0.0, 1.0]  # 2 = case, 1 = control
    assert d.samples == ["HG01841", "NA19438", "HG02315"] and list(d.index) == [0, 2, 3]
    assert d.report["no_phenotype_row"] == 1 and d.report["examples_no_phenotype_row"] == ["NOPE"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("IID\tY\tage\na\t1\t50\nb\t0\tfifty\nc\t1\t40\n")
    with pytest.raises(InputError, match=r"bad.tsv, line 3: column 'age' is not a number"):
        build_design(["a", "b", "c"], read_sample_table(bad), "Y", True, None, ["age"])
    q = tmp_path / "q.csv"
    q.write_text("sample,Y\na,0.5\nb,2.5\nc,NA\nd,1\n")
    with pytest.raises(InputError, match="0/1 or PLINK's 1/2"):
        build_design(["a", "b", "d"], read_sample_table(q), "Y", True)
    d = build_design(["a", "b", "c", "d"], read_sample_table(q), "Y", False)
    assert d.samples == ["a", "b", "d"] and d.report["missing_value"] == 1
