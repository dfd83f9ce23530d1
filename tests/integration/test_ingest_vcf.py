"""ingest_vcf on real files: good ones land in bronze, bad ones are named or quarantined."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conftest import require_tool
from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute


def ingest(
    spark: SparkSession, cfg: Config, *paths: Path, ref: str = "none", run_id: str | None = None, **extra: object
):  # type: ignore[no-untyped-def]
    changes = {"jobs.ingest_vcf.paths": [str(p) for p in paths], "jobs.ingest_vcf.reference_genome": ref}
    changes.update({f"jobs.ingest_vcf.{k}": v for k, v in extra.items()})
    return execute(spark, cfg.replace(**changes), "ingest_vcf", run_id=run_id)


ERRORS = {
    "1row_not_bgz.vcf.gz": r"plain gzip, not block-gzipped \(BGZF\).*bgzip",
    "bad_flag_number.vcf": r"line 3: INFO field BAD_FLAG is Type=Flag with Number=\.",
    "duplicate_ids.vcf": r"line 17: sample id\(s\) \['5', '10'\] appear more than once",
    "malformed.vcf": r"line 54: Hail could not parse the record: invalid character 'r' in integer literal",
    "misnumbered_info.vcf": r"line 3: FORMAT AD is declared Number=1",
    "missing_contig_length.vcf": r"line 2: FORMAT AD is declared Number=1",
    "test_withInfQual.vcf": r"line 9: Hail could not parse the record: .*\+Inf",
    "undeclaredinfo.vcf": r"INFO key\(s\) \['undeclared', 'undeclaredFlag'\] are used by records but not declared",
}
QUARANTINED = {
    "33alleles.vcf": ("too_many_alleles", 1, 1),
    "invalid_base.vcf": ("unparsed_record", 1, 1),
    "negative_format_fields.vcf": ("qual_negative", 10, 10),
    "sample_bad_AD.vcf": ("ad_length", 1, 1),
    "test_withNanGenotype.vcf": ("nan_gp", 3, 3),
}


RULES = Path(__file__).resolve().parents[1] / "data" / "vcf" / "rules"
# (file, POS) -> (rule, reason) of every record that breaks a rule, worked out by hand from the
# files' text (tests/data/vcf/rules); every other record of those files (QUAL 0, 1e6 or ".", DP 0
# or ".", GQ 0 or ".") breaks none. QUAL is spelled NaN / Infinity / -Infinity, the spellings Hail
# parses; htslib's nan / inf stop the file with an InputError naming the line (test_withInfQual.vcf).
PLANTED = {
    ("negative_dp.vcf", 200): ("negative_dp", "DP is negative in 1 sample(s)"),  # DP -3 in S2
    ("negative_gq.vcf", 200): ("negative_gq", "GQ is negative in 2 sample(s)"),  # GQ -1 in S1, -7 in S3
    ("qual_not_finite.vcf", 200): ("qual_not_finite", "QUAL is NaN"),
    ("qual_not_finite.vcf", 300): ("qual_not_finite", "QUAL is Infinity"),
    ("qual_not_finite.vcf", 400): ("qual_not_finite", "QUAL is -Infinity"),  # not finite before negative
}
# The same records' row key and line in the file (five ## lines and #CHROM, so POS 100 is on line 7).
PLANTED_AT = {
    ("negative_dp.vcf", 200): ("1:200:C:T", 8),
    ("negative_gq.vcf", 200): ("1:200:C:T", 8),
    ("qual_not_finite.vcf", 200): ("1:200:C:T", 8),
    ("qual_not_finite.vcf", 300): ("1:300:G:A", 9),
    ("qual_not_finite.vcf", 400): ("1:400:T:C", 10),
}


def test_record_rules_flag_exactly_the_planted_records(spark: SparkSession, cfg: Config) -> None:
    """Negative DP, negative GQ and non-finite QUAL (NaN, Infinity, -Infinity), one small VCF per rule with
    clean records beside the planted ones, through the real ingest_vcf job."""
    files = sorted(RULES.glob("*.vcf"))
    assert {p.name for p in files} == {f for f, _ in PLANTED}
    result = ingest(spark, cfg, *files)
    assert result.status == "succeeded"
    lake = Lake(spark, cfg)
    q = lake.read("quarantine.vcf_variants").collect()
    assert {(Path(r.source_file).name, json.loads(r.row_json)["position"]): (r.rule, r.reason) for r in q} == PLANTED
    assert {
        (Path(r.source_file).name, json.loads(r.row_json)["position"]): (r.row_key, r.line) for r in q
    } == PLANTED_AT
    assert len(q) == len(PLANTED) == result.metrics["invalid_records"]
    assert {r.run_id for r in q} == {result.run_id} and all(r.file_sha256 for r in q)
    # A rerun of the files adds nothing (the ledger skips them; the quarantine's de-duplication would too).
    assert ingest(spark, cfg, *files).metrics["invalid_records"] == 0 and lake.read(
        "quarantine.vcf_variants"
    ).count() == len(q)
    # Every record of the text is in bronze, as delivered; the planted ones carry the same rule, no other does.
    text = {
        (p.name, int(line.split("\t")[1]))
        for p in files
        for line in p.read_text().splitlines()
        if line and not line.startswith("#")
    }
    rows = {(Path(r.source_file).name, r.position): r for r in lake.read("bronze.variants").collect()}
    assert set(rows) == text and len(text) == 12
    assert {k: (r._invalid_rule, r._invalid_reason) for k, r in rows.items() if r._invalid_rule is not None} == PLANTED
    assert rows[("negative_dp.vcf", 200)].dp == [12, -3, 9] and rows[("negative_gq.vcf", 200)].gq == [-1, 30, -7]
    qual = {pos: rows[("qual_not_finite.vcf", pos)].qual for pos in (100, 200, 300, 400, 500, 600)}
    assert math.isnan(qual[200]) and (qual[300], qual[400]) == (math.inf, -math.inf)
    assert (qual[100], qual[500], qual[600]) == (0.0, None, 1e6)


def test_every_malformed_file_is_accounted_for(external: Path) -> None:
    names = {p.name for p in (external / "vcf-malformed").iterdir()}
    assert names == set(ERRORS) | set(QUARANTINED)


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_malformed_file_gives_clear_error(spark: SparkSession, cfg: Config, external: Path, name: str) -> None:
    path = external / "vcf-malformed" / name
    with pytest.raises(InputError, match=ERRORS[name]) as err:
        ingest(spark, cfg, path)
    assert str(path) in str(err.value)
    assert "at is.hail" not in str(err.value)  # no JVM stack trace
    assert not Lake(spark, cfg).exists("bronze.variants")
    run = Lake(spark, cfg).read("ops.runs").collect()[0]
    assert run.status == "failed" and "InputError" in run.error


@pytest.mark.parametrize("name", sorted(QUARANTINED))
def test_malformed_records_are_quarantined(spark: SparkSession, cfg: Config, external: Path, name: str) -> None:
    rule, n_quarantined, _ = QUARANTINED[name]
    path = external / "vcf-malformed" / name
    text_records = sum(1 for line in path.read_text().splitlines() if line and not line.startswith("#"))
    result = ingest(spark, cfg, path)
    lake = Lake(spark, cfg)
    q = lake.read("quarantine.vcf_variants").collect()
    assert {r.rule for r in q} == {rule}
    assert len(q) == n_quarantined == result.metrics["invalid_records"]
    assert all(r.reason and r.source_file == str(path) for r in q)
    # Each row names its record's line: the text there is the record's contig, position and REF.
    lines = path.read_text().splitlines()
    for r in q:
        site = json.loads(r.row_json)
        assert (
            lines[r.line - 1].split("\t")[:4:3] == [site["contig"], site["ref"]]
            and int(lines[r.line - 1].split("\t")[1]) == site["position"]
        )
    bronze = lake.read("bronze.variants")
    valid = bronze.where(F.col("_invalid_rule").isNull()).count()
    # Nothing lost: every record of the text is valid in bronze or listed in quarantine.
    assert valid + len(q) == text_records


def test_good_vcf_lands_with_arrays_in_sample_order(spark: SparkSession, cfg: Config, external: Path) -> None:
    path = external / "vcf" / "sample.vcf"
    result = ingest(spark, cfg, path, ref="GRCh37")
    assert result.metrics["variants"] == 346 and result.metrics["invalid_records"] == 0
    # where the time went, per stage (the benchmark's profile): every stage ran and took time
    stages = result.metrics["seconds"]
    assert list(stages) == [
        "digest",
        "discard_partial",
        "container_and_header",
        "text_pass",
        "hail_import_to_bronze",
        "samples",
        "quarantine_and_reconcile",
        "ledger",
    ], stages
    assert all(v >= 0 for v in stages.values()) and stages["hail_import_to_bronze"] > 0, stages
    lake = Lake(spark, cfg)
    samples = lake.read("bronze.vcf_samples").orderBy("sample_index").collect()
    header = next(line for line in path.read_text().splitlines() if line.startswith("#CHROM")).split("\t")[9:]
    assert [s.sample_id for s in samples] == header
    rows = lake.read("bronze.variants")
    assert rows.count() == 346
    # Compare one record's calls with the text, sample by sample.
    first = next(line for line in path.read_text().splitlines() if not line.startswith("#")).split("\t")
    row = rows.where((F.col("contig") == first[0]) & (F.col("position") == int(first[1]))).first()
    fmt = first[8].split(":")
    text_gt = [c.split(":")[fmt.index("GT")] for c in first[9:]]
    assert [g if g is not None else "./." for g in row.gt] == [t if t not in ("./.", ".") else "./." for t in text_gt]
    text_dp = [c.split(":")[fmt.index("DP")] for c in first[9:]]
    assert [str(d) if d is not None else "." for d in row.dp] == text_dp
    assert (row.ref, row.alts) == (first[3], first[4].split(","))


def test_same_file_twice_adds_nothing_and_bgz_equals_text(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    ingest(spark, cfg, external / "vcf" / "sample.vcf", ref="GRCh37")
    lake = Lake(spark, cfg)
    v0 = lake.version("bronze.variants")
    again = ingest(spark, cfg, external / "vcf" / "sample.vcf", ref="GRCh37")
    assert again.metrics["skipped_files"] == 1 and again.metrics["files"] == 0
    assert lake.version("bronze.variants") == v0
    # The bgzipped copy of the same data is another file: same calls.
    ingest(spark, cfg, external / "vcf" / "sample.vcf.bgz", ref="GRCh37")
    rows = lake.read("bronze.variants")
    by_file = rows.groupBy("contig", "position", "ref", "alts", "gt").agg(F.countDistinct("file_sha256").alias("n"))
    assert by_file.where("n != 2").count() == 0 and by_file.count() == 346


def test_plain_gzip_allowed_on_request(spark: SparkSession, cfg: Config, external: Path) -> None:
    result = ingest(spark, cfg, external / "vcf-malformed" / "1row_not_bgz.vcf.gz", allow_plain_gzip=True)
    assert result.metrics["variants"] == 1


def test_plink_fileset_lands_with_the_same_calls_as_its_vcf(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    plink2 = require_tool("plink2")
    vcf_path = external / "vcf" / "sample.vcf"
    subprocess.run(
        [plink2, "--vcf", str(vcf_path), "--max-alleles", "2", "--make-bed", "--out", str(tmp_path / "s")],
        check=True,
        capture_output=True,
    )
    bim = (tmp_path / "s.bim").read_text().splitlines()
    n_bim = len(bim)
    # One planted allele that is not a base: the PLINK path quarantines it as the VCF path would.
    f = bim[0].split("\t")
    bim[0] = "\t".join([*f[:4], "Z", f[5]])
    (tmp_path / "s.bim").write_text("\n".join(bim) + "\n")
    result = ingest(spark, cfg, vcf_path, tmp_path / "s.bed", ref="GRCh37")
    assert result.status == "succeeded"
    assert result.metrics["files"] == 2 and result.metrics["variants"] == 346 + n_bim
    q = Lake(spark, cfg).read("quarantine.vcf_variants").collect()
    assert [(r.rule, r.source_file, r.line, json.loads(r.row_json)["position"]) for r in q] == [
        ("invalid_allele", str(tmp_path / "s.bed"), None, int(f[3]))
    ]
    assert result.metrics["invalid_records"] == 1
    lake = Lake(spark, cfg)
    fam_ids = [line.split()[1] for line in (tmp_path / "s.fam").read_text().splitlines()]
    bed_samples = lake.read("bronze.vcf_samples").where(F.col("source_file").endswith(".bed")).orderBy("sample_index")
    assert [r.sample_id for r in bed_samples.collect()] == fam_ids
    dosage = F.transform(
        "gt",
        lambda g: F.when(g.isNull(), F.lit(-1)).otherwise(F.size(F.filter(F.split(g, "[/|]"), lambda a: a != "0"))),
    )
    rows = lake.read("bronze.variants").select(
        "contig", "position", "ref", "alts", F.col("source_file").endswith(".bed").alias("bed"), dosage.alias("d")
    )
    joined = rows.where("bed").alias("b").join(rows.where("not bed").alias("v"), ["contig", "position", "ref", "alts"])
    assert joined.count() == n_bim - 1  # all but the planted allele
    assert joined.where(F.col("b.d") != F.col("v.d")).count() == 0
    again = ingest(spark, cfg, tmp_path / "s.bed", ref="GRCh37")
    assert again.metrics["skipped_files"] == 1
