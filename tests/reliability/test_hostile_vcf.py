"""Broken and hostile genotype files (issue 15): each is refused with an error that names the file
(and the line or record) and says what to do, or lands with its odd records quarantined under a
rule; a refused file leaves no row anywhere in the lake.

All the files go through ONE ingest_vcf run (each file is its own unit, ``on_bad_file: skip``), so
the table costs one job. The inputs are made by hand here: truncated BGZF (cut in a data block and
in a header that spans blocks), a byte before the gzip magic, a zero-byte and a newline-only file, a
#CHROM line with more samples than the records have, records out of order, POS '.' and POS past
2^31, duplicate sample names, symbolic and breakend alleles, haploid and polyploid calls, a
sites-only VCF, and a good file in a folder whose path has a space and non-ASCII letters.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hostile import wrong_outcomes
from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

SAMPLES = ["s1", "s2", "s3"]
HEAD = (
    "##fileformat=VCFv4.2\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "##contig=<ID=chr1,length=248956422>\n"
)


def _vcf(records: list[str], samples: list[str] = SAMPLES, extra_header: str = "") -> str:
    cols = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO" + ("\tFORMAT\t" + "\t".join(samples) if samples else "")
    return HEAD + extra_header + cols + "\n" + "".join(r + "\n" for r in records)


def _rec(pos: int | str, ref: str = "A", alt: str = "G", calls: list[str] | None = None) -> str:
    calls = calls if calls is not None else ["0/1", "0/0", "1/1"]
    tail = "\tGT\t" + "\t".join(calls) if calls else ""
    return f"chr1\t{pos}\t.\t{ref}\t{alt}\t50\tPASS\t.{tail}"


def _bgzip(text: str, path: Path) -> Path:
    raw = path.with_suffix("")  # x.vcf
    raw.write_text(text)
    with path.open("wb") as out:
        subprocess.run(["bgzip", "-c", str(raw)], stdout=out, check=True)
    raw.unlink()
    return path


def _first_block_size(data: bytes) -> int:
    """The compressed size of a BGZF file's first block (its BSIZE field + 1)."""
    xlen = struct.unpack("<H", data[10:12])[0]
    extra = data[12 : 12 + xlen]
    assert extra[0:2] == b"BC", "not BGZF"
    return struct.unpack("<H", extra[4:6])[0] + 1


# file stem -> (expected status, what the error or quarantine must say)
EXPECT: dict[str, tuple[str, tuple[str, ...]]] = {
    "good": ("landed", ()),
    "bgzf_cut_in_block": ("failed", ("truncated", "BGZF block", "Re-transfer")),
    "bgzf_cut_in_header": ("failed", ("truncated", "BGZF block 2", "Re-transfer")),
    "garbage_before_magic": ("failed", ("1 stray byte(s) before the gzip magic",)),
    "zero_bytes": ("failed", ("no #CHROM header line", "truncated or not a VCF")),
    "newlines_only": ("failed", ("line 1", "not a VCF")),
    "chrom_line_disagrees": ("failed", ("line 5", "could not parse the record")),  # 3 samples named, 2 given
    "out_of_order": ("landed", ()),
    "pos_dot": ("failed", ("line 6", "could not parse the record")),
    "pos_past_2_31": ("failed", ("line 6", "could not parse the record")),
    "duplicate_samples": ("failed", ("appear more than once", "bcftools reheader")),
    "symbolic_and_breakend": ("landed", ()),
    "haploid_polyploid": ("failed", ("line 6", "ploidy > 2")),  # Hail reads haploid and diploid calls only
    "sites_only": ("landed", ()),
}


@pytest.fixture()
def hostile(tmp_path: Path) -> Path:
    d = tmp_path / "vcf in"
    d.mkdir()
    good = [_rec(100), _rec(200), _rec(300)]
    (d / "good.vcf").write_text(_vcf(good))
    _bgzip(_vcf(good * 1 + [_rec(p) for p in range(400, 4000, 7)]), d / "cut.vcf.bgz")
    data = (d / "cut.vcf.bgz").read_bytes()
    (d / "bgzf_cut_in_block.vcf.bgz").write_bytes(data[: len(data) // 2])
    (d / "cut.vcf.bgz").unlink()
    # a header longer than one BGZF block (64 KiB): cut just after the first block, inside the header
    long_header = "".join(f"##contig=<ID=chrUn_{i},length=1000>\n" for i in range(3000))
    _bgzip(_vcf(good, extra_header=long_header), d / "long.vcf.bgz")
    data = (d / "long.vcf.bgz").read_bytes()
    (d / "bgzf_cut_in_header.vcf.bgz").write_bytes(data[: _first_block_size(data) + 40])
    (d / "long.vcf.bgz").unlink()
    _bgzip(_vcf(good), d / "g.vcf.bgz")
    (d / "garbage_before_magic.vcf.bgz").write_bytes(b"\x00" + (d / "g.vcf.bgz").read_bytes())
    (d / "g.vcf.bgz").unlink()
    (d / "zero_bytes.vcf").write_bytes(b"")
    (d / "newlines_only.vcf").write_text("\n\n\n")
    (d / "chrom_line_disagrees.vcf").write_text(_vcf([_rec(100, calls=["0/1", "0/0"])]))
    (d / "out_of_order.vcf").write_text(_vcf([_rec(300), _rec(100), _rec(200)]))
    (d / "pos_dot.vcf").write_text(_vcf([_rec(100), _rec(".")]))
    (d / "pos_past_2_31.vcf").write_text(_vcf([_rec(100), _rec(3_000_000_000)]))
    (d / "duplicate_samples.vcf").write_text(_vcf(good, samples=["s1", "s1", "s3"]))
    (d / "symbolic_and_breakend.vcf").write_text(
        _vcf([_rec(100, alt="<DEL>"), _rec(200, ref="G", alt="G]chr1:5000]"), _rec(300)])
    )
    (d / "haploid_polyploid.vcf").write_text(
        _vcf([_rec(100, calls=["0", "1", "."]), _rec(200, calls=["0/1/1", "0/0/0", "1/1/1"]), _rec(300)])
    )
    (d / "sites_only.vcf").write_text(_vcf([_rec(100, calls=[]), _rec(200, calls=[])], samples=[]))
    odd = tmp_path / "données à voir"
    odd.mkdir()
    (odd / "bon fichier é.vcf").write_text(_vcf(good + [_rec(400)]))  # other bytes than good.vcf: its own file
    return d


@pytest.mark.slow
def test_each_hostile_vcf_is_refused_with_its_name_or_lands_with_rules(
    spark: SparkSession, cfg: Config, hostile: Path
) -> None:
    odd = hostile.parent / "données à voir" / "bon fichier é.vcf"
    paths = (str(hostile / "*.vcf"), str(hostile / "*.vcf.bgz"), str(odd))
    run_cfg = cfg.replace(**{"jobs.ingest_vcf.paths": paths, "jobs.ingest_vcf.on_bad_file": "skip"})
    res = execute(spark, run_cfg, "ingest_vcf", run_id="hostile")
    assert res.status == "succeeded"
    lake = Lake(spark, run_cfg)
    ledger = {Path(r.path).name.split(".")[0]: r for r in lake.read("ops.ingested_files").collect()}
    assert ledger["bon fichier é"].status == "landed"
    report = {k: (r.status, r.error) for k, r in ledger.items()}
    print("\n".join(f"{k}: {s}: {e}" for k, (s, e) in sorted(report.items())))
    wrong = wrong_outcomes(ledger, EXPECT, case_sensitive=False)
    assert wrong == {}, wrong
    # a refused file left nothing anywhere: no variant, no sample, no quarantined record
    refused = {r.path for r in ledger.values() if r.status == "failed"}
    for table in ("bronze.variants", "bronze.vcf_samples", "quarantine.vcf_variants"):
        if lake.exists(table):
            assert lake.read(table).where(F.col("source_file").isin(list(refused))).count() == 0, table
