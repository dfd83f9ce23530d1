"""ingest_omics on real files written by others (cmapPy's GCT, biom-format's BIOM, anndata's h5ad)
and on bad files: bronze rows equal the reference libraries' reads, the same file twice adds nothing,
a refused file leaves nothing in the lake and is recorded as failed with its line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import IdentifierError, InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute


def ingest(
    spark: SparkSession, cfg: Config, files: list[dict[str, object]], run_id: str | None = None, **extra: object
):  # type: ignore[no-untyped-def]
    changes: dict[str, object] = {"jobs.ingest_omics.files": files, "jobs.ingest_omics.block_rows": 2}
    changes.update({f"jobs.ingest_omics.{k}": v for k, v in extra.items()})
    return execute(spark, cfg.replace(**changes), "ingest_omics", run_id=run_id)


@pytest.mark.slow
def test_real_files_land_equal_to_reference_reads_and_once(spark: SparkSession, cfg: Config, external: Path) -> None:
    import anndata
    import biom

    omics = external / "omics"
    files = [
        {
            "path": str(omics / "gct" / "test_v1point2_n5x10.gct"),
            "assay": "arrays",
            "assay_type": "proteomics_intensity",
            "format": "gct",
        },
        {
            "path": str(omics / "biom" / "rich_sparse_otu_table_hdf5.biom"),
            "assay": "gut",
            "assay_type": "microbiome_counts",
            "format": "biom",
        },
        {
            "path": str(omics / "h5ad" / "anndata__v0.7.8_adata.h5ad"),
            "assay": "sc",
            "assay_type": "rnaseq_counts",
            "format": "h5ad",
        },
    ]
    result = ingest(spark, cfg, files)
    assert result.status == "succeeded", result.error
    lake = Lake(spark, cfg)
    feats = lake.read("bronze.omics_features")
    samples = lake.read("bronze.omics_samples")
    assert {r.assay: r[1] for r in feats.groupBy("assay").count().collect()} == {"arrays": 10, "gut": 5, "sc": 20}

    # BIOM: values and taxonomy as biom-format reads them
    t = biom.load_table(str(omics / "biom" / "rich_sparse_otu_table_hdf5.biom"))
    gut = {r.feature_id: r for r in feats.where("assay = 'gut'").collect()}
    ref = t.matrix_data.toarray()
    for i, oid in enumerate(t.ids(axis="observation")):
        assert gut[oid].values == list(ref[i])
        assert gut[oid].feature_meta["taxonomy"] == "; ".join(t.metadata(oid, axis="observation")["taxonomy"])
        assert gut[oid].row_number == i and gut[oid].line is None
    gs = samples.where("assay = 'gut'").orderBy("position").collect()
    assert [r.sample_id for r in gs] == list(t.ids(axis="sample"))
    assert gs[0].sample_meta["BarcodeSequence"] == t.metadata("Sample1", axis="sample")["BarcodeSequence"]

    # h5ad: X transposed, var index as feature ids, obs index as samples
    ad = anndata.read_h5ad(omics / "h5ad" / "anndata__v0.7.8_adata.h5ad")
    sc = feats.where("assay = 'sc'").orderBy("row_number").collect()
    np.testing.assert_array_equal(np.array([r.values for r in sc]), ad.X.toarray().T)
    assert [r.feature_id for r in sc] == list(ad.var_names)
    ss = samples.where("assay = 'sc'").orderBy("position").collect()
    assert [r.sample_id for r in ss] == list(ad.obs_names) and {r.n_features for r in ss} == {20}

    # GCT 1.2: a line number per feature (header lines 1-3), values by hand from the file
    arr = {r.feature_id: r for r in feats.where("assay = 'arrays'").collect()}
    assert arr["200814_at"].line == 4 and arr["200814_at"].values[0] == 11.3819
    assert arr["203627_at"].feature_meta == {"Description": "IGF1R"} and arr["203627_at"].row_number == 9

    ledger = lake.read("ops.ingested_files").where("table_name = 'bronze.omics_features'").collect()
    assert sorted((r.status, r.rows) for r in ledger) == [("landed", 5), ("landed", 10), ("landed", 20)]
    v = lake.version("bronze.omics_features")
    again = ingest(spark, cfg, files)
    assert again.status == "succeeded" and again.metrics["skipped_files"] == 3 and again.metrics["files"] == 0
    assert lake.version("bronze.omics_features") == v
    assert lake.read("bronze.omics_features").count() == 35


BAD = {
    "ragged.csv": ("id,S1,S2\nf0,0,0\nf1,1,2\nf2,3\n", "csv", r"line 4: 2 fields, but the header \(line 1\) has 3"),
    "text.csv": ("id,S1,S2\nf1,1,2\nf2,3,high\n", "csv", r"line 3, column 'S2': not a number"),
    "dupfeature.csv": ("id,S1,S2\nf1,1,2\nf1,3,4\n", "csv", r"line 3: feature id 'f1' appears more than once"),
    "dupsample.csv": ("id,S1,S1\nf1,1,2\n", "csv", r"sample id\(s\) \['S1'\] appear more than once"),
    "negative.csv": (
        "id,S1,S2\nf1,1,2\nf2,3,-4\n",
        "csv",
        r"line 3 \(feature 'f2'\), sample 'S2': a negative value where counts",
    ),
    "dims.gct": (
        "#1.2\n3\t2\nName\tDescription\tS1\tS2\nf1\tx\t1\t2\nf2\ty\t3\t4\n",
        "gct",
        r"says 3 data rows but the body has 2",
    ),
}


@pytest.mark.slow
def test_bad_files_are_refused_whole_and_named(
    spark: SparkSession, cfg: Config, tmp_path: Path, external: Path
) -> None:
    """Each bad file: an error naming it and its line, recorded as failed, none of its rows in bronze
    (the bad line of every file comes after a good block of 2 rows: staged rows must not leak); the
    good file beside them lands."""
    files = []
    for name, (text, fmt, _) in BAD.items():
        p = tmp_path / name
        p.write_text(text)
        files.append({"path": str(p), "assay": "bad", "assay_type": "rnaseq_counts", "format": fmt})
    no_x = external / "omics" / "h5ad" / "anndata__v0.11.4_adata.h5ad"
    files.append({"path": str(no_x), "assay": "bad", "assay_type": "rnaseq_counts", "format": "h5ad"})
    good = tmp_path / "good.tsv"
    good.write_text("gene\tS1\tS2\ng1\t1\t2\ng2\t3\t4\ng3\t5\t6\n")
    files.append({"path": str(good), "assay": "ok", "assay_type": "rnaseq_counts", "format": "tsv"})
    with pytest.raises(InputError, match=r"7 omics file\(s\) refused \(1 landed"):
        ingest(spark, cfg, files)
    lake = Lake(spark, cfg)
    assert sorted(r.feature_id for r in lake.read("bronze.omics_features").collect()) == ["g1", "g2", "g3"]
    assert {r.assay for r in lake.read("bronze.omics_samples").collect()} == {"ok"}
    failed = {Path(r.path).name: r.error for r in lake.read("ops.ingested_files").where("status = 'failed'").collect()}
    assert set(failed) == {*BAD, no_x.name}
    import re

    for name, (_, _, pattern) in BAD.items():
        assert re.search(pattern, failed[name]), (name, failed[name])
        assert str(tmp_path / name) in failed[name]
    assert "has no X matrix" in failed[no_x.name]


def test_a_refused_file_is_tried_again_and_lands_once_fixed(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("id,S1\nf1,x\n")
    spec = [{"path": str(p), "assay": "rna", "assay_type": "rnaseq_counts", "format": "csv"}]
    assert ingest(spark, cfg, spec, on_bad_file="skip").status == "succeeded"
    p.write_text("id,S1\nf1,7\n")
    assert ingest(spark, cfg, spec).status == "succeeded"
    lake = Lake(spark, cfg)
    assert [r.values for r in lake.read("bronze.omics_features").collect()] == [[7.0]]
    assert lake.read("bronze.omics_features").where(F.col("assay") == "rna").count() == 1


@pytest.mark.parametrize("assay", ["1bad", "x;drop"])
def test_assay_names_must_be_identifiers(spark: SparkSession, cfg: Config, tmp_path: Path, assay: str) -> None:
    p = tmp_path / "m.csv"
    p.write_text("id,S1\nf1,7\n")
    with pytest.raises(IdentifierError, match="assay name"):
        ingest(spark, cfg, [{"path": str(p), "assay": assay, "assay_type": "rnaseq_counts", "format": "csv"}])
