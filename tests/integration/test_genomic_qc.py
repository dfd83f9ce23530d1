"""genomic_qc against bcftools: allele counts and frequencies of every split variant agree."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from conftest import require_tool
from omicslake.config import Config
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute


def _cfg(cfg: Config, path: Path, **qc: object) -> Config:
    changes: dict[str, object] = {
        "jobs.ingest_vcf.paths": [str(path)],
        "jobs.ingest_vcf.reference_genome": "GRCh37",
        "jobs.genomic_qc.reference_genome": "GRCh37",
    }
    changes.update({f"jobs.genomic_qc.{k}": v for k, v in qc.items()})
    return cfg.replace(**changes)


def _bcftools_tags(path: Path, tmp: Path) -> dict[tuple[str, int, str, str], tuple[int, int, float]]:
    bgzip, tabix, bcftools = require_tool("bgzip"), require_tool("tabix"), require_tool("bcftools")
    # The file declares no ##contig lines; bcftools wants them or an index: bgzip + tabix a copy.
    gz = tmp / (path.name + ".gz")
    gz.write_bytes(subprocess.run([bgzip, "-c", str(path)], capture_output=True, check=True).stdout)
    subprocess.run([tabix, "-p", "vcf", str(gz)], check=True)
    filled = subprocess.run(
        [bcftools, "+fill-tags", str(gz), "--", "-t", "AC,AN,AF"], capture_output=True, check=True
    ).stdout
    text = subprocess.run(
        [bcftools, "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\t%AC\t%AN\t%AF\n"],
        input=filled,
        capture_output=True,
        check=True,
    ).stdout.decode()
    out = {}
    for line in text.splitlines():
        chrom, pos, ref, alts, acs, an, afs = line.split("\t")
        for alt, ac, af in zip(alts.split(","), acs.split(","), afs.split(","), strict=True):
            out[(chrom, *_minrep(int(pos), ref, alt))] = (int(ac), int(an), float(af))
    return out


def _minrep(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Minimal representation, as Hail's split_multi_hts leaves a split allele pair."""
    if alt == "*":
        return pos, ref[0], alt  # Hail keeps the first base of REF for a star allele
    if alt.startswith("<"):
        return pos, ref, alt
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def test_allele_frequencies_equal_bcftools_fill_tags(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    path = external / "vcf" / "sample2.vcf"  # 356 multi-allelic sites, many missing calls
    theirs = _bcftools_tags(path, tmp_path)  # first: without bcftools the test stops before the Spark work
    c = _cfg(
        cfg,
        path,
        sample_min_call_rate=0.0,
        sample_max_het_hom_ratio=1e9,
        variant_min_call_rate=0.0,
        variant_min_hwe_p=0.0,
    )
    execute(spark, c, "ingest_vcf")
    result = execute(spark, c, "genomic_qc")
    assert result.metrics["samples_passed"] == 100
    ours = {
        (r.contig, r.position, r.ref, r.alt): (r.ac, r.an, r.af)
        for r in Lake(spark, c).read("silver.variant_qc").collect()
    }
    assert len(ours) == len(theirs) > 735, (set(theirs) - set(ours), set(ours) - set(theirs))
    assert set(ours) == set(theirs)
    for key, (ac, an, af) in theirs.items():
        o_ac, o_an, o_af = ours[key]
        assert (o_ac, o_an) == (ac, an), key
        if an:
            assert abs(o_af - af) <= 1e-5 * max(af, 1e-3), key


def test_thresholds_route_failures_to_quarantine(spark: SparkSession, cfg: Config, external: Path) -> None:
    path = external / "vcf" / "sample2.vcf"
    c = _cfg(cfg, path, sample_min_call_rate=0.5, variant_min_call_rate=0.9, variant_min_maf=0.01)
    execute(spark, c, "ingest_vcf")
    m = execute(spark, c, "genomic_qc").metrics
    lake = Lake(spark, c)
    sq = lake.read("silver.sample_qc")
    failed = sq.where(~F.col("passed"))
    assert (
        failed.where(F.col("rule") == "sample_call_rate").count()
        == failed.count()
        == sq.where("call_rate < 0.5").count()
    )
    # no new quarantine row commits nothing (omicslake.quarantine.write): no failed sample, no table
    quarantined = lake.read("quarantine.sample_qc").count() if lake.exists("quarantine.sample_qc") else 0
    assert quarantined == failed.count()
    assert m["samples_passed"] == sq.where("passed").count() == lake.read("silver.genotype_samples").count()
    vq = lake.read("silver.variant_qc")
    assert vq.where("passed AND (call_rate < 0.9 OR least(af, 1 - af) < 0.01)").count() == 0
    assert vq.where("NOT passed").count() == lake.read("quarantine.variant_qc").count() > 0
    assert {r.rule for r in lake.read("quarantine.variant_qc").select("rule").distinct().collect()} <= {
        "variant_star_allele",
        "variant_call_rate",
        "variant_maf",
        "variant_hwe",
    }
    g = lake.read("silver.genotypes")
    assert g.count() == vq.where("passed").count() == m["variants_passed"]
    assert g.select(F.size("dosage").alias("n")).distinct().collect()[0].n == m["samples_passed"]
