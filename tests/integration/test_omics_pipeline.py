"""Generated omics with planted truth through ingest_omics -> omics_qc -> omics_assoc: the planted
T2D genes and CpGs are recovered, the job's association equals statsmodels on the silver values,
samples are linked and only consented ones analysed, and an unlinkable matrix is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.contracts import load_contract
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute
from omicslake.synth import omics

N_SAMPLES, N_FEATURES, SEED = 240, 1500, 5


def samples() -> omics.OmicsSamples:
    rng = np.random.default_rng(0)
    return omics.OmicsSamples(
        [f"SM-{i + 1:07d}" for i in range(N_SAMPLES)],
        (rng.random(N_SAMPLES) < 0.3).astype(float),
        rng.integers(0, 3, N_SAMPLES),
    )


def write_link(spark: SparkSession, cfg: Config, ids: list[str]) -> dict[str, tuple[str, bool]]:
    """silver.sample_link as conform_ehr writes it: every 10th sample without consent, the last 5 unlinked."""
    link = {sid: (f"pk{i:05d}", i % 10 != 0) for i, sid in enumerate(ids[:-5])}
    rows = [(sid, pk, c, "sample_link.csv", i + 2, "b1", "h", "r0") for i, (sid, (pk, c)) in enumerate(link.items())]
    lake = Lake(spark, cfg, run_id="link")
    lake.write(
        spark.createDataFrame(rows, load_contract("silver.sample_link").struct()),
        "silver.sample_link",
        mode="overwrite",
    )
    return link


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("omics_landing")
    return out, omics.write(out, samples(), N_FEATURES, SEED)


def test_generated_files_are_the_same_for_a_seed(landing: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, manifest = landing
    again = omics.write(tmp_path, samples(), N_FEATURES, SEED)
    assert again == manifest
    for rel in [
        "omics/rna_counts.txt.gz",
        "omics/methylation_beta.gct",
        "omics/proteomics.csv",
        "omics/microbiome.biom",
        "omics/files.yaml",
        "truth/omics_features.tsv",
    ]:
        assert (
            hashlib.sha256((out / rel).read_bytes()).digest() == hashlib.sha256((tmp_path / rel).read_bytes()).digest()
        )
    other = omics.write(tmp_path / "s6", samples(), N_FEATURES, SEED + 1)
    assert (tmp_path / "s6" / "omics" / "rna_counts.txt.gz").read_bytes() != (
        out / "omics" / "rna_counts.txt.gz"
    ).read_bytes()
    planted = {k: v for k, v in manifest["planted"].items() if k != "proteomics_missing"}
    assert planted == {
        "rna_de_t2d": 75,
        "rna_de_ancestry": 75,
        "methylation_t2d": 75,
        "proteomics_t2d": 15,
        "microbiome_t2d": 15,
        "log2fc": 1.0,
        "cpg_logit_shift": 1.0,
    }
    assert 0.05 < manifest["planted"]["proteomics_missing"] < 0.2
    assert other["planted"]["rna_de_t2d"] == 75


def recovery(gold: pd.DataFrame, planted: set[str], fdr: float = 0.05) -> tuple[float, float, int]:
    found = set(gold.loc[gold["q"] <= fdr, "feature_id"])
    tp = len(found & planted)
    return tp / len(planted), (len(found) - tp) / max(1, len(found)), len(found)


@pytest.mark.slow
def test_planted_truth_is_recovered_through_the_jobs(
    spark: SparkSession, cfg: Config, landing: tuple[Path, dict[str, Any]]
) -> None:
    import statsmodels.api as sm

    out, _ = landing
    cfg = cfg.replace(**{"jobs.generate.out": str(out)})  # ingest_omics reads omics/files.yaml there
    link = write_link(spark, cfg, samples().ids)
    assert execute(spark, cfg, "ingest_omics").metrics["files"] == 4
    qc = execute(
        spark, cfg.replace(**{"jobs.omics_qc.min_expressed_fraction": 0.5, "jobs.omics_qc.min_count": 10.0}), "omics_qc"
    )
    assert qc.metrics["rna"]["samples_linked"] == N_SAMPLES - 5
    assert qc.metrics["rna"]["samples_consented"] == sum(c for _, c in link.values())
    lake = Lake(spark, cfg)
    s = lake.read("silver.omics_samples_rna").toPandas().set_index("sample_id")
    assert s.loc["SM-0000001", "consent"] == False and s.loc["SM-0000002", "person_key"] == "pk00001"  # noqa: E712
    assert s.loc[samples().ids[-1], "person_key"] is None and s["passed"].all()
    # sample metadata stays in bronze unless config allows a key (it may identify donors)
    assert all(not m for m in s["sample_meta"]) and lake.read("bronze.omics_samples").count() > 0
    truth = pd.read_csv(out / "truth" / "omics_features.tsv", sep="\t")
    pheno = str(out / "truth" / "omics_samples.tsv")
    results = {}
    for assay in ("rna", "methylation", "proteomics", "microbiome"):
        run = execute(
            spark,
            cfg.replace(
                **{
                    "jobs.omics_assoc.assay": assay,
                    "jobs.omics_assoc.name": f"{assay}_t2d",
                    "jobs.omics_assoc.pheno": pheno,
                    "jobs.omics_assoc.pheno_col": "t2d",
                    "jobs.omics_assoc.covar_cols": ["ancestry_1", "ancestry_2"],
                }
            ),
            "omics_assoc",
        )
        consented = [sid for sid, (_, c) in link.items() if c]
        assert run.metrics["samples"] == len(consented)
        gold = lake.read(f"gold.omics_assoc_{assay}_t2d").toPandas()
        planted = set(truth.loc[(truth.assay == assay) & (truth.effect == "t2d"), "feature_id"])
        kept = planted & set(gold["feature_id"])
        results[assay] = recovery(gold, kept)
        share, fdp, n_found = results[assay]
        assert len(kept) >= 0.9 * len(planted), (assay, len(kept))
        assert share >= 0.9 and fdp <= 0.10, (assay, share, fdp, n_found)
        # the job's numbers are statsmodels' on the silver values of the consented samples
        ph = pd.read_csv(pheno, sep="\t").set_index("sample_id").loc[consented]
        pos = s.loc[consented, "position"].astype(int).to_numpy()
        x = sm.add_constant(ph[["t2d", "ancestry_1", "ancestry_2"]].to_numpy(dtype=float))
        silver = lake.read(f"silver.omics_{assay}").limit(25).toPandas()
        for _, row in silver.iterrows():
            fit = sm.OLS(np.asarray(row["values"], dtype=float)[pos], x, missing="drop").fit()
            g = gold.set_index("feature_id").loc[row["feature_id"]]
            np.testing.assert_allclose([g["beta"], g["p"]], [fit.params[1], fit.pvalues[1]], rtol=1e-6, atol=1e-12)
    # ancestry-DE genes are not T2D findings once ancestry is a covariate
    anc = set(truth.loc[(truth.assay == "rna") & (truth.effect == "ancestry"), "feature_id"])
    gold = lake.read("gold.omics_assoc_rna_t2d").toPandas()
    assert len(anc & set(gold.loc[gold.q <= 0.05, "feature_id"])) <= 3
    print("recovery (share found, FDP, n found):", results)
    # the report's Omics section: a PCA scatter per assay, a volcano plot per association
    from omicslake.report import omics as report_omics

    section = report_omics.omics(lake, lake.names())
    assert section.found == {"omics_pca": 4, "volcano": 4} and section.html.count("data:image/png") == 8
    assert [h for h in section.html.split("<h3>")[1:] if h.startswith("Volcano: rna_t2d")]


def test_a_matrix_linked_to_no_one_is_refused(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    p = tmp_path / "m.tsv"
    p.write_text("gene\tX1\tX2\tX3\ng1\t1\t2\t3\ng2\t4\t5\t6\n")
    write_link(spark, cfg, ["SM-1", "SM-2", "SM-3", "SM-4", "SM-5", "SM-6"])
    files = [{"path": str(p), "assay": "rna", "assay_type": "rnaseq_counts", "format": "tsv"}]
    execute(spark, cfg.replace(**{"jobs.ingest_omics.files": files}), "ingest_omics")
    with pytest.raises(InputError, match=r"assay 'rna' \(.*m.tsv\): none of its 3 sample ids is in silver.sample_link"):
        execute(spark, cfg, "omics_qc")
    assert not Lake(spark, cfg).exists("silver.omics_rna")


@pytest.mark.slow
def test_cohort_omics_leave_every_other_generated_file_unchanged(spark: SparkSession, tmp_path: Path) -> None:
    """generate with jobs.generate.omics_features > 0 adds omics/ and truth/omics_*.tsv and changes no
    other byte (the manifest compared without its run time, as test_generate does); the omics are
    drawn for the genotyped samples, with T2D status from the patients' truth."""
    import json

    from conftest import generate_cli

    def digests(folder: Path) -> dict[str, str]:
        out = {}
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                if p.name == "manifest.json" and p.parent == folder:
                    m = json.loads(data)
                    m.pop("seconds")
                    data = json.dumps(m, sort_keys=True).encode()
                out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
        return out

    size = ["--patients", "300", "--samples", "60", "--variants", "120"]
    generate_cli(tmp_path, tmp_path / "plain", 3, *size)
    generate_cli(tmp_path, tmp_path / "omics", 3, *size, "--set", "jobs.generate.omics_features=100")
    plain, with_omics = digests(tmp_path / "plain"), digests(tmp_path / "omics")
    added = {k: v for k, v in with_omics.items() if k not in plain}
    assert sorted(added) == [
        "omics/files.yaml",
        "omics/manifest.json",
        "omics/methylation_beta.gct",
        "omics/microbiome.biom",
        "omics/proteomics.csv",
        "omics/rna_counts.txt.gz",
        "truth/omics_features.tsv",
        "truth/omics_samples.tsv",
    ]
    assert {k: v for k, v in with_omics.items() if k in plain} == plain
    link = pd.read_csv(tmp_path / "omics" / "sample_link.csv")
    truth = pd.read_csv(tmp_path / "omics" / "truth" / "patients.csv")
    s = pd.read_csv(tmp_path / "omics" / "truth" / "omics_samples.tsv", sep="\t")
    assert list(s["sample_id"]) == list(link["sample_id"])
    t2d = link.merge(truth, on="patient_id")
    expected = (t2d["prevalent_t2d"].astype(str).str.lower() == "true") | (
        t2d["t2d_incident"].astype(str).str.lower() == "true"
    )
    assert list(s["t2d"]) == list(expected.astype(int))
    assert list(s["ancestry"]) == list(t2d["ancestry"])


@pytest.mark.slow  # two job runs on a tiny lake: ~35 s on two idle cores, minutes under load
def test_a_pca_outlier_sample_is_quarantined_and_the_rest_normalised_again(
    spark: SparkSession, cfg: Config, tmp_path: Path
) -> None:
    """A 30-protein x 20-sample matrix whose sample SM-8 has a pattern of its own (+-3 log2 on every
    protein): with jobs.omics_qc.pca_outlier_pcs=2 it fails as pca_outlier (quarantined with its PC
    and robust z), and silver holds the 19 others, their feature means computed without it."""
    rng = np.random.default_rng(11)
    ids = [f"SM-{i}" for i in range(1, 21)]
    log2 = 20 + rng.normal(0, 0.3, size=(30, 20))
    log2[:, 7] += 3 * rng.choice([-1.0, 1.0], size=30)
    p = tmp_path / "prot.tsv"
    lines = ["protein\t" + "\t".join(ids)] + [f"P{j}\t" + "\t".join(f"{2**v:.3f}" for v in log2[j]) for j in range(30)]
    p.write_text("\n".join(lines) + "\n")
    write_link(spark, cfg, [*ids, "x1", "x2", "x3", "x4", "x5"])
    files = [{"path": str(p), "assay": "prot", "assay_type": "proteomics_intensity", "format": "tsv"}]
    execute(spark, cfg.replace(**{"jobs.ingest_omics.files": files}), "ingest_omics")
    run = execute(spark, cfg.replace(**{"jobs.omics_qc.pca_outlier_pcs": 2}), "omics_qc")
    assert run.metrics["prot"]["samples_pca_outliers"] == 1 and run.metrics["prot"]["samples_passed"] == 19
    lake = Lake(spark, cfg)
    s = {r.sample_id: r for r in lake.read("silver.omics_samples_prot").collect()}
    assert (s["SM-8"].rule, s["SM-8"].passed, s["SM-8"].position) == ("pca_outlier", False, None)
    assert sorted(r.position for r in s.values() if r.passed) == list(range(19))
    (q,) = lake.read("quarantine.omics_sample_qc").where("rule = 'pca_outlier'").collect()
    assert q.row_key == "prot:SM-8" and q.reason.startswith("PC1 score ")
    # normalised without SM-8: log2 intensity minus each sample's median, the feature mean over 19 samples
    keep = [i for i in range(20) if i != 7]
    centred = log2[:, keep] - np.median(log2[:, keep], axis=0)
    got = {r.feature_id: r for r in lake.read("silver.omics_prot").collect()}
    assert len(got["P0"].values) == 19
    np.testing.assert_allclose([got[f"P{j}"].mean for j in range(30)], centred.mean(axis=1), atol=1e-3)
