"""GWAS against plink2 --glm on Hail's EPACTS-checked logistic set, our two missing-call modes
against each other, Firth's fallback on planted (quasi-)separated variants, PLINK bed input, and
the errors a researcher meets first."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from oracles import compare, plink2_glm
from pyspark.sql import SparkSession

from conftest import require_tool
from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.genomics.gwas import build_design, fit_variant, read_sample_table, regress_hail
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute
from omicslake.jobs.cli import main as cli_main


def _epacts_cfg(cfg: Config, external: Path, **extra: object) -> Config:
    g = external / "gwas"
    return cfg.replace(
        **{
            "jobs.gwas.vcf": str(g / "regressionLogisticEpacts.vcf"),
            "jobs.gwas.pheno": str(g / "regressionLogisticEpacts.fam"),
            "jobs.gwas.pheno_col": "PHENO1",
            "jobs.gwas.covar": str(g / "regressionLogisticEpacts.cov"),
            "jobs.gwas.covar_cols": ["PC1", "PC2"],
            "jobs.gwas.reference_genome": "GRCh37",
            "jobs.gwas.name": "epacts",
            **{f"jobs.gwas.{k}": v for k, v in extra.items()},
        }
    )


def test_logistic_agrees_with_plink2_and_hail_mode_agrees_with_ours(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    require_tool("plink2")
    g = external / "gwas"
    result = execute(spark, _epacts_cfg(cfg, external), "gwas", run_id="e1")
    assert result.status == "succeeded"
    ours = Lake(spark, cfg).read("gold.gwas_epacts").orderBy("position").collect()
    assert len(ours) == 5
    fam = {
        line.split()[1]: float(line.split()[5])
        for line in (g / "regressionLogisticEpacts.fam").read_text().splitlines()
    }
    with (g / "regressionLogisticEpacts.cov").open() as f:
        cov = {r["IND_ID"]: [float(r["PC1"]), float(r["PC2"])] for r in csv.DictReader(f, delimiter="\t")}
    theirs = plink2_glm(
        tmp_path / "p2", ["--vcf", str(g / "regressionLogisticEpacts.vcf")], fam, cov, ["PC1", "PC2"], "logistic"
    )
    assert sum(1 for r in theirs.values() if r["ERRCODE"] == ".") == 5
    assert compare(ours, theirs) == 5
    m = result.metrics
    # the plots' locations are recorded under the root's mark (<root>/reports/gwas_epacts/...), as ops records files
    assert m["manhattan"] == "<root>/reports/gwas_epacts/manhattan.png", m["manhattan"]
    manhattan, qq = (Path(cfg.layout.resolve(m[k])) for k in ("manhattan", "qq"))
    assert m["samples_used"] == 2535 and manhattan.stat().st_size > 5000 and qq.exists()
    # the report's GWAS section finds them from the table's name, both plots inline
    from omicslake.jobs.report import gwas_plots
    from omicslake.report import genomics as report_genomics

    plots = gwas_plots(_epacts_cfg(cfg, external), Lake(spark, cfg).names())
    assert sorted(plots) == ["epacts"] and sorted(plots["epacts"]) == ["manhattan.png", "qq.png"]
    assert plots["epacts"]["manhattan.png"] == manhattan.read_bytes()
    section = report_genomics.gwas(plots)
    assert dict(section.found) == {"gwas": 1} and "<h3>gwas_epacts</h3>" in section.html
    assert section.html.count("data:image/png;base64,") == 2

    # Hail's own logistic_regression_rows (mean imputation): no missing calls here, so the same fit.
    hail_mode = execute(spark, _epacts_cfg(cfg, external, missing="mean", name="epacts_hail"), "gwas", run_id="e2")
    assert hail_mode.status == "succeeded"
    hail_rows = Lake(spark, cfg).read("gold.gwas_epacts_hail").orderBy("position").collect()
    assert len(hail_rows) == len(ours)
    for a, b in zip(ours, hail_rows, strict=True):
        assert (a.position, a.n) == (b.position, b.n)
        assert abs(a.beta - b.beta) < 1e-6 and abs(a.se - b.se) < 1e-6 and abs(a.p - b.p) < 1e-6


# Planted around separation; plink2 2.00a3's --glm (firth-fallback, its default) fits these by Firth.
SEPARATED = {
    "complete_het",
    "complete_homalt",
    "only_cases",
    "only_controls",
    "singleton_case",
    "cases_all_homalt",
    "only_cases_missing",
}


def _planted_separation(out: Path) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, list[float]]]:
    """48 samples (seeded), a case/control phenotype (PLINK 1/2), two covariates (a standardised
    age: plink2 fits in single precision) and 22 variants named in the VCF's ID column: 12 null
    ones (null0, 4 and 8 with 8 missing calls) and, by hand,

    - complete_het: cases het, controls hom-ref (complete separation)
    - complete_homalt: cases hom-alt, controls hom-ref or het (complete separation)
    - only_cases / only_controls / singleton_case: the alt allele in cases only, in controls
      only, in one case (quasi-complete separation)
    - cases_all_homalt: every case hom-alt, controls mixed (the ref allele in controls only)
    - quasi_het_overlap: hom-alt only in cases, hom-ref only in controls, hets in both
      (quasi-complete separation that no allele count shows)
    - only_cases_missing: only_cases with 8 missing calls among the others
    - near_sep: 6 case carriers and one control carrier (not separated)

    Missing calls come 8 at a time so that plink2 fits 40 or 48 samples: the Debian plink2
    (2.00a3.5) leaves the vector padding after the last sample of a genotype column unzeroed when
    calls are missing, which moves its logistic SEs (fixed upstream on 9 Oct 2024, "--glm
    logistic/Firth trailing-zero bugfix"); 40 and 48 are whole AVX2 vectors of 8 floats."""
    rng = np.random.default_rng(9)
    n = 48
    age = rng.normal(0, 1, n).round(3)
    sex = rng.integers(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * age + 0.6 * (sex - 0.5))))).astype(int)
    case, control = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def pick(group: np.ndarray, k: int) -> np.ndarray:
        return rng.choice(group, k, replace=False)

    v: dict[str, np.ndarray] = {}
    for i in range(12):
        g = rng.binomial(2, rng.uniform(0.15, 0.5), n).astype(float)
        if i % 4 == 0:
            g[pick(np.arange(n), 8)] = np.nan
        v[f"null{i}"] = g
    v["complete_het"] = np.where(y == 1, 1.0, 0.0)
    v["complete_homalt"] = np.where(y == 1, 2.0, rng.choice([0.0, 1.0], n))
    g = np.zeros(n)
    g[pick(case, 5)] = 1
    v["only_cases"] = g
    g = np.zeros(n)
    g[pick(control, 4)] = 1
    g[pick(np.setdiff1d(control, np.flatnonzero(g)), 1)] = 2
    v["only_controls"] = g
    g = np.zeros(n)
    g[pick(case, 1)] = 1
    v["singleton_case"] = g
    g = np.full(n, 2.0)
    c = pick(control, 10)
    g[c[:7]], g[c[7:]] = 1, 0
    v["cases_all_homalt"] = g
    g = np.ones(n)
    g[pick(case, 6)] = 2
    g[pick(control, 8)] = 0
    v["quasi_het_overlap"] = g
    g = np.zeros(n)
    g[pick(case, 6)] = 1
    g[pick(np.setdiff1d(np.arange(n), np.flatnonzero(g)), 8)] = np.nan
    v["only_cases_missing"] = g
    g = np.zeros(n)
    g[pick(case, 6)] = 1
    g[pick(control, 1)] = 1
    v["near_sep"] = g

    ids = [f"S{i:02d}" for i in range(n)]
    gt = {0.0: "0/0", 1.0: "0/1", 2.0: "1/1"}
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=1,length=249250621>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *ids]),
    ]
    for k, (name, g) in enumerate(v.items()):
        calls = ["./." if np.isnan(x) else gt[x] for x in g]
        lines.append("\t".join(["1", str(10000 + 1000 * k), name, "C", "T", ".", "PASS", ".", "GT", *calls]))
    (out / "planted.vcf").write_text("\n".join(lines) + "\n")
    pheno = {s: float(c + 1) for s, c in zip(ids, y, strict=True)}
    covar = {s: [float(a), float(x)] for s, a, x in zip(ids, age, sex, strict=True)}
    (out / "pheno.tsv").write_text("#IID\tY\n" + "".join(f"{s}\t{c:g}\n" for s, c in pheno.items()))
    (out / "covar.tsv").write_text("#IID\tage\tsex\n" + "".join(f"{s}\t{a!r}\t{x:g}\n" for s, (a, x) in covar.items()))
    return v, pheno, covar


def test_firth_fallback_on_planted_separation_agrees_with_plink2_in_both_modes(
    spark: SparkSession, cfg: Config, tmp_path: Path
) -> None:
    require_tool("plink2")
    calls, pheno, covar = _planted_separation(tmp_path)
    geno = ["--vcf", str(tmp_path / "planted.vcf")]
    hybrid = plink2_glm(tmp_path / "p2", geno, pheno, covar, ["age", "sex"], "logistic")
    always = plink2_glm(tmp_path / "p2f", geno, pheno, covar, ["age", "sex"], "logistic", modifiers=("firth",))
    p2 = {r["ID"]: r for r in hybrid.values()}
    assert set(p2) == set(calls)
    # plink2's own decisions on the planted variants, which are what this test is about
    assert {k for k, r in p2.items() if r["FIRTH?"] == "Y"} == SEPARATED
    assert {k: r["ERRCODE"] for k, r in p2.items() if r["ERRCODE"] != "."} == {"quasi_het_overlap": "UNFINISHED"}

    def keys(names: set[str]) -> list[tuple[str, int, str, str]]:
        return [k for k, r in hybrid.items() if r["ID"] in names]

    base = {
        "jobs.gwas.vcf": str(tmp_path / "planted.vcf"),
        "jobs.gwas.pheno": str(tmp_path / "pheno.tsv"),
        "jobs.gwas.pheno_col": "Y",
        "jobs.gwas.covar": str(tmp_path / "covar.tsv"),
        "jobs.gwas.covar_cols": ["age", "sex"],
        "jobs.gwas.reference_genome": "GRCh37",
    }
    # plink2's way (missing calls dropped): every variant the same kind of fit as plink2's, every
    # fitted one matched (compare), quasi_het_overlap UNFINISHED on both sides
    drop = execute(spark, cfg.replace(**base, **{"jobs.gwas.name": "planted"}), "gwas", run_id="f1")
    assert drop.status == "succeeded", drop.error
    ours = Lake(spark, cfg).read("gold.gwas_planted").collect()
    assert len(ours) == len(calls)
    assert {r.rsid for r in ours if r.firth} == SEPARATED and drop.metrics["firth_fits"] == len(SEPARATED)
    assert compare(ours, hybrid) == len(calls) - 1

    # Hail's way (mean imputation): plink2 fits the variants without missing calls on the same
    # numbers. Hail's Wald iteration does not converge on quasi_het_overlap, so it is refitted by
    # Firth, against plink2's Firth-only run; imputing the mean dosage for only_cases_missing's
    # missing calls gives controls some alt dosage, so it no longer separates and stays Wald.
    hail = execute(
        spark,
        cfg.replace(**base, **{"jobs.gwas.name": "planted_hail", "jobs.gwas.missing": "mean"}),
        "gwas",
        run_id="f2",
    )
    assert hail.status == "succeeded", hail.error
    theirs = Lake(spark, cfg).read("gold.gwas_planted_hail").collect()
    assert len(theirs) == len(calls)
    complete = {k for k, g in calls.items() if not np.isnan(g).any()}
    refitted = (SEPARATED - {"only_cases_missing"}) | {"quasi_het_overlap"}
    assert {r.rsid for r in theirs if r.firth} == refitted and refitted <= complete
    assert compare(theirs, hybrid, keys(complete - {"quasi_het_overlap"})) == len(complete) - 1
    assert compare(theirs, always, keys(refitted)) == len(refitted)
    by_name = {r.rsid: r for r in theirs}
    assert by_name["only_cases_missing"].status == "ok" and by_name["only_cases_missing"].n == 48


def test_without_firth_a_separated_variant_has_no_estimate_as_in_plink2(hail: SparkSession, tmp_path: Path) -> None:
    """firth="no" on the planted variants against plink2 --glm no-firth, variant by variant; in
    Hail mode, the variants without missing calls that plink2 calls separated are ours too."""
    import hail as hl

    require_tool("plink2")
    calls, pheno, covar = _planted_separation(tmp_path)
    theirs = plink2_glm(
        tmp_path / "p2",
        ["--vcf", str(tmp_path / "planted.vcf")],
        pheno,
        covar,
        ["age", "sex"],
        "logistic",
        modifiers=("no-firth",),
    )
    design = build_design(
        sorted(pheno),
        read_sample_table(tmp_path / "pheno.tsv"),
        "Y",
        True,
        read_sample_table(tmp_path / "covar.tsv"),
        ["age", "sex"],
    )
    rows = []
    for (contig, position, ref, alt), r in theirs.items():
        n, _, f = fit_variant(calls[r["ID"]], design, "logistic", "drop", "no")
        rows.append(
            SimpleNamespace(contig=contig, position=position, ref=ref, alt=alt, tested_allele=alt, n=n, **vars(f))
        )
        separated = r["ERRCODE"].startswith("SEPARATION")
        assert (f.status == "separated") == separated and (math.isnan(f.beta) or not separated), (r["ID"], f, r)
    assert sum(r["ERRCODE"].startswith("SEPARATION") for r in theirs.values()) == len(SEPARATED)
    assert compare(rows, theirs) == len(calls) - len(SEPARATED) - 1  # and quasi_het_overlap UNFINISHED on both sides

    # Hail mode: only_cases_missing's imputed calls give the controls alt dosage, so it no longer separates
    mt = hl.import_vcf(str(tmp_path / "planted.vcf"), reference_genome="GRCh37")
    hail = {r.rsid: r for r in regress_hail(mt, design, "logistic", "no").collect()}
    assert {k for k, r in hail.items() if r.status == "separated"} == SEPARATED - {"only_cases_missing"}
    assert all(hail[k].beta is None and hail[k].p is None for k in SEPARATED - {"only_cases_missing"})
    assert hail["only_cases_missing"].status == "ok" and not any(r.refit for r in hail.values())


def test_plink_bed_input_through_the_cli(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_tool("plink2")
    g = external / "gwas"
    subprocess.run(
        ["plink2", "--vcf", str(g / "regressionLinear.vcf"), "--make-bed", "--out", str(tmp_path / "lin")],
        check=True,
        capture_output=True,
    )
    # Shifted by 0.5: plink2 takes a 0/1/2-valued phenotype for case/control and would fit a
    # logistic model; shifted, both tools fit the same linear model.
    with (g / "regressionLinear.pheno").open() as f:
        ph = {
            r["Sample"]: float(r["Pheno"]) + 0.5
            for r in csv.DictReader(f, delimiter="\t")
            if r["Pheno"] not in ("NA", "")
        }
    pheno = tmp_path / "lin.pheno"
    pheno.write_text("#FID\tIID\tPheno\n" + "".join(f"0\t{s}\t{v}\n" for s, v in ph.items()))
    code = cli_main(
        [
            "gwas",
            "--bfile",
            str(tmp_path / "lin"),
            "--pheno",
            str(pheno),
            "--pheno-col",
            "Pheno",
            "--covar",
            str(g / "regressionLinear.cov"),
            "--covar-cols",
            "Cov1,Cov2",
            "--model",
            "linear",
            "--reference",
            "none",
            "--name",
            "lin",
            "--set",
            f"lake.root={cfg.lake.root}",
        ]
    )
    assert code == 0, capsys.readouterr().err
    ours = Lake(spark, cfg).read("gold.gwas_lin").orderBy("position").collect()
    with (g / "regressionLinear.cov").open() as f:
        cv = {
            r["Sample"]: [float(r["Cov1"]), float(r["Cov2"])]
            for r in csv.DictReader(f, delimiter="\t")
            if "NA" not in (r["Cov1"], r["Cov2"])
        }
    theirs = plink2_glm(tmp_path / "p2", ["--bfile", str(tmp_path / "lin")], ph, cv, ["Cov1", "Cov2"], "linear")
    # plink2's .bim names contigs as it read them; our rows carry the same names.
    fitted = sum(1 for r in theirs.values() if r["ERRCODE"] == ".")
    assert fitted >= 5 and compare(ours, theirs) == fitted  # compare fails on any fitted variant we do not match
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
