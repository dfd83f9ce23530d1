"""Every ingested file is recorded once in ops.ingested_files, whatever its kind or content, and
ingesting it again adds nothing; a file whose rows a killed run left without a ledger row is
cleaned out and ingested again whole; the rows in bronze equal the lines counted in the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute


def _vcf(spark: SparkSession, cfg: Config, *paths: Path, run_id: str) -> dict[str, object]:
    c = cfg.replace(**{"jobs.ingest_vcf.paths": [str(p) for p in paths], "jobs.ingest_vcf.reference_genome": "none"})
    return execute(spark, c, "ingest_vcf", run_id=run_id).metrics


def _ledger(spark: SparkSession, cfg: Config, table: str) -> list[tuple[str, int, int | None]]:
    rows = Lake(spark, cfg).read("ops.ingested_files").where(F.col("table_name") == table).collect()
    return sorted((Path(r.path).name, r.rows, r.lines) for r in rows)


def test_a_sites_only_vcf_ingested_twice_is_in_bronze_once(spark: SparkSession, cfg: Config, external: Path) -> None:
    sites = external / "vcf-edge-cases" / "bcftools__view.sites.vcf"
    records = sum(1 for line in sites.read_text().splitlines() if line and not line.startswith("#"))
    first = _vcf(spark, cfg, sites, run_id="s1")
    second = _vcf(spark, cfg, sites, run_id="s2")
    assert (first["files"], second["files"], second["skipped_files"]) == (1, 0, 1)
    lake = Lake(spark, cfg)
    assert lake.read("bronze.variants").count() == records == 4
    assert lake.read("bronze.vcf_samples").count() == 0  # no samples: the ledger is what knows the file
    assert _ledger(spark, cfg, "bronze.variants") == [(sites.name, records, records)]


def test_vcf_and_plink_twice_one_copy_each(spark: SparkSession, cfg: Config, external: Path) -> None:
    vcf = external / "vcf" / "sample.vcf"
    bed = external / "plink" / "small" / "small.bed"
    records = sum(1 for line in vcf.read_text().splitlines() if line and not line.startswith("#"))
    snps = len((bed.with_suffix(".bim")).read_text().splitlines())
    _vcf(spark, cfg, vcf, bed, run_id="v1")
    again = _vcf(spark, cfg, vcf, bed, run_id="v2")
    assert (again["files"], again["skipped_files"]) == (0, 2)
    per_file = {
        Path(r[0]).name: r[1] for r in Lake(spark, cfg).read("bronze.variants").groupBy("source_file").count().collect()
    }
    assert per_file == {vcf.name: records, bed.name: snps}
    assert _ledger(spark, cfg, "bronze.variants") == sorted([(vcf.name, records, records), (bed.name, snps, None)])


def test_rows_left_by_a_killed_run_are_replaced_not_doubled(
    spark: SparkSession, cfg: Config, external: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after the rows' commits and before the ledger row (the kill planted as a
    failure of the ledger write). The rerun, with the same run id (a scheduler's retry) or a new
    one, must find the rows by the file's digest and land the file once."""
    from omicslake.io import ledger

    vcf = external / "vcf" / "sample.vcf"
    records = sum(1 for line in vcf.read_text().splitlines() if line and not line.startswith("#"))
    samples = len(next(line for line in vcf.read_text().splitlines() if line.startswith("#CHROM")).split("\t")) - 9
    lake = Lake(spark, cfg)
    real = ledger.record
    for attempt, retry in (("k1", "k1"), ("k2", "k3")):

        def killed(*args: object) -> None:
            raise RuntimeError("killed before the ledger row")

        monkeypatch.setattr(ledger, "record", killed)
        with pytest.raises(RuntimeError, match="killed"):
            _vcf(spark, cfg, vcf, run_id=attempt)
        monkeypatch.setattr(ledger, "record", real)
        assert lake.read("bronze.variants").where(F.col("_run_id") == attempt).count() == records  # left behind
        assert _vcf(spark, cfg, vcf, run_id=retry)["files"] == 1
        assert lake.read("bronze.variants").count() == records
        assert [r[0] for r in lake.read("bronze.variants").select("_run_id").distinct().collect()] == [retry]
        assert lake.read("bronze.vcf_samples").count() == samples
        assert [r.run_id for r in lake.read("ops.ingested_files").collect()] == [retry]
        # make the next round start from a file not yet in the ledger
        lake.delete_where("ops.ingested_files", F.lit(True))
        lake.delete_where("bronze.variants", F.lit(True))
        lake.delete_where("bronze.vcf_samples", F.lit(True))


def _ehr(spark: SparkSession, cfg: Config, folder: Path, source: str, run_id: str) -> dict[str, object]:
    key = {"fhir": "fhir_dir", "omop": "omop_dir", "synthea": "synthea_dir"}[source]
    c = cfg.replace(**{"jobs.ingest_ehr.sources": [source], f"jobs.ingest_ehr.{key}": str(folder)})
    return execute(spark, c, "ingest_ehr", run_id=run_id).metrics


@pytest.mark.parametrize(
    "source, folder",
    [("fhir", "fhir-pathling-9pt"), ("omop", "omop-carpentries-5pt-partial"), ("synthea", "synthea-csv-ne-111pt")],
)
def test_ehr_files_twice_one_copy_and_rows_equal_the_lines_counted_in_the_file(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path, source: str, folder: str
) -> None:
    src = tmp_path / "in"
    shutil.copytree(external / folder, src)
    first = _ehr(spark, cfg, src, source, "e1")
    again = _ehr(spark, cfg, src, source, "e2")
    assert first["files_new"] >= 2 and again["files_new"] == 0 and again["files_known"] == first["files_new"]
    lake = Lake(spark, cfg)
    ledger = lake.read("ops.ingested_files").collect()
    assert len(ledger) == first["files_new"]
    for r in ledger:
        text = Path(r.path).read_bytes().splitlines()
        data_lines = sum(1 for line in text if line.strip()) if r.path.endswith(".ndjson") else len(text) - 1
        in_bronze = lake.read(r.table_name).where(F.col("_file_sha256") == r.file_sha256).count()
        assert r.lines == data_lines == in_bronze == r.rows, r.path


def test_a_line_lost_between_file_and_bronze_fails_and_leaves_bronze_as_it_was(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omicslake.ehr import bronze

    src = tmp_path / "in"
    shutil.copytree(external / "omop-carpentries-5pt-partial", src)
    real = bronze.parse_csv

    def lossy(lines, header, columns):  # type: ignore[no-untyped-def]
        return real(lines, header, columns).where(F.col("_line") != 3)  # a silent drop of one data line

    monkeypatch.setattr(bronze, "parse_csv", lossy)
    with pytest.raises(InputError, match=r"person.csv: \d+ data lines in the file but \d+ rows in bronze"):
        _ehr(spark, cfg, src, "omop", "lossy")
    lake = Lake(spark, cfg)
    # every file lost a line: each is refused and recorded with its error, and no row of any is in bronze
    ledger = lake.read("ops.ingested_files").collect()
    assert ledger and {r.status for r in ledger} == {"failed"} and all("rows in bronze" in r.error for r in ledger)
    assert all(lake.read(t).count() == 0 for t in lake.names() if t.startswith("bronze."))
