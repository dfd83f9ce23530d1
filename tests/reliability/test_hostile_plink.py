"""Broken PLINK 1 filesets (issue 15): each is refused before Hail reads it, with an error that names
the file and says what to do, and leaves no row anywhere in the lake; the good fileset beside them
lands. One ingest_vcf run over every case (each fileset is its own unit, ``on_bad_file: skip``).

The filesets are written here byte by byte (a .bed is 6c 1b 01, then per variant ceil(n/4) bytes of
2-bit calls, low bits first), so each case is exactly one defect: a .bed cut short, a wrong magic,
an individual-major mode byte, a .bim with a variant more or a .fam with samples fewer than the
.bed holds, a .bim line with 5 fields, a sample id twice in the .fam, a missing .fam.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hostile import wrong_outcomes
from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

# 2-bit PLINK codes: 00 hom A1, 01 missing, 10 het, 11 hom A2
CALLS = [[3, 2, 0, 1, 3, 3], [2, 2, 3, 0, 0, 2], [0, 3, 3, 3, 2, 1]]  # 3 variants x 6 samples


def _bed_bytes(calls: list[list[int]], magic: bytes = b"\x6c\x1b", mode: int = 1) -> bytes:
    out = bytearray(magic + bytes([mode]))
    for row in calls:
        for i in range(0, len(row), 4):
            out.append(sum(c << (2 * k) for k, c in enumerate(row[i : i + 4])))
    return bytes(out)


def _bim(n: int) -> str:
    return "".join(f"1\trs{k}\t0\t{1000 + 100 * k}\tA\tG\n" for k in range(n))


def _fam(ids: list[str]) -> str:
    return "".join(f"fam{i}\t{s}\t0\t0\t0\t-9\n" for i, s in enumerate(ids))


SAMPLES = [f"p{i}" for i in range(6)]

# fileset stem -> (expected status, words the error must hold besides the file's name)
EXPECT: dict[str, tuple[str, tuple[str, ...]]] = {
    "good": ("landed", ()),
    "truncated": ("failed", ("truncated", "3 variants (.bim) x 6 samples (.fam) need 9 bytes", "has 8", "Re-transfer")),
    "bad_magic": ("failed", ("not a PLINK 1 .bed", "00 00", "plink2 --make-bed")),
    "individual_major": ("failed", ("mode byte 00", "variant-major", "plink2 --bfile")),
    "bim_one_more": ("failed", ("truncated", "4 variants (.bim)", "belong to this .bed")),
    "fam_fewer": ("failed", ("longer than its .bim and .fam say", "x 3 samples")),
    "bim_five_fields": ("failed", ("bim_five_fields.bim: line 2 has 5 fields", "has 6")),
    "duplicate_sample": ("failed", ("duplicate_sample.fam: line 4 repeats the sample id", "of line 2")),
    "missing_fam": ("failed", ("missing", "missing_fam.fam")),
}


@pytest.fixture()
def filesets(tmp_path: Path) -> Path:
    d = tmp_path / "plink"
    d.mkdir()

    def put(stem: str, bed: bytes, bim: str | None, fam: str | None) -> None:
        (d / f"{stem}.bed").write_bytes(bed)
        if bim is not None:
            (d / f"{stem}.bim").write_text(bim)
        if fam is not None:
            (d / f"{stem}.fam").write_text(fam)

    good = _bed_bytes(CALLS)
    put("good", good, _bim(3), _fam(SAMPLES))
    put("truncated", good[:-1], _bim(3), _fam(SAMPLES))
    put("bad_magic", _bed_bytes(CALLS, magic=b"\x00\x00"), _bim(3), _fam(SAMPLES))
    put("individual_major", _bed_bytes(CALLS, mode=0), _bim(3), _fam(SAMPLES))
    put("bim_one_more", good, _bim(4), _fam(SAMPLES))
    put("fam_fewer", good, _bim(3), _fam(SAMPLES[:3]))
    lines = _bim(3).splitlines(keepends=True)
    put("bim_five_fields", good, lines[0] + "1\trs1\t0\t1100\tA\n" + lines[2], _fam(SAMPLES))
    put("duplicate_sample", good, _bim(3), _fam(["p0", "p1", "p2", "p1", "p4", "p5"]))
    put("missing_fam", good, _bim(3), None)
    return d


@pytest.mark.slow
def test_each_broken_plink_fileset_is_refused_with_its_name_and_leaves_nothing(
    spark: SparkSession, cfg: Config, filesets: Path
) -> None:
    run_cfg = cfg.replace(
        **{"jobs.ingest_vcf.paths": (str(filesets / "*.bed"),), "jobs.ingest_vcf.on_bad_file": "skip"}
    )
    res = execute(spark, run_cfg, "ingest_vcf", run_id="hostile-plink")
    assert res.status == "succeeded"
    lake = Lake(spark, run_cfg)
    ledger = {Path(r.path).stem: r for r in lake.read("ops.ingested_files").collect()}
    print("\n".join(f"{k}: {r.status}: {r.error}" for k, r in sorted(ledger.items())))
    wrong = wrong_outcomes(ledger, EXPECT, whole_name=False)
    assert wrong == {}, wrong
    # the good fileset's calls are the ones written in its .bed (Hail's GT, A2 as REF: 11 -> 0/0)
    good = lake.read("bronze.variants").where(F.col("source_file").endswith("good.bed")).orderBy("position").collect()
    text = {0: "1/1", 1: None, 2: "0/1", 3: "0/0"}  # A1 = A is ALT: 00 -> 1/1, 11 -> 0/0, 01 missing
    assert [(r.ref, r.alts, list(r.gt)) for r in good] == [("G", ["A"], [text[c] for c in row]) for row in CALLS]
    refused = [r.path for r in ledger.values() if r.status == "failed"]
    assert len(refused) == len(EXPECT) - 1
    for table in ("bronze.variants", "bronze.vcf_samples", "quarantine.vcf_variants"):
        if lake.exists(table):
            assert lake.read(table).where(F.col("source_file").isin(refused)).count() == 0, table
