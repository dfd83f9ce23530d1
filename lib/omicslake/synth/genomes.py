"""Synthetic genomes with Hail: three ancestry groups (Balding-Nichols), causal variants.

Genotypes are drawn by Hail's counter-based RNG under a fixed global seed, in parallel over
partitions, then exported as one block-gzipped VCF (GT:DP:GQ:AD, 1 % missing calls, 2 %
multi-allelic sites). The matrix is checkpointed first so that the VCF and the genetic score
fed to the phenotype are computed from the very same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hail as hl
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.synth.people import ancestry
from omicslake.synth.rand import bernoulli

FST = 0.08
MISSING_RATE = 0.01
MULTIALLELIC_RATE = 0.02
CONSENT_RATE = 0.95
CAUSAL_BETAS = (0.9, -0.7, 0.6, 0.8, -0.6)
CAUSAL_AF = 0.3
N_CONTIGS = 22

VCF_METADATA = {
    "format": {
        "GT": {"Description": "Genotype", "Number": "1", "Type": "String"},
        "DP": {"Description": "Read depth", "Number": "1", "Type": "Integer"},
        "GQ": {"Description": "Genotype quality", "Number": "1", "Type": "Integer"},
        "AD": {"Description": "Allelic depths for the ref and alt alleles", "Number": "R", "Type": "Integer"},
    },
    "info": {"AA_AF": {"Description": "Ancestral allele frequency (simulation truth)", "Number": "1", "Type": "Float"}},
}


@dataclass(frozen=True)
class GenomeTruth:
    """What the genotype simulation planted: the causal variants (contig, position, alleles, rsid,
    effect allele, beta on the log-odds scale, ancestral allele frequency) and the matrix's counts."""

    causal: list[dict[str, Any]]
    n_variants: int
    n_samples: int
    n_multiallelic: int


def sample_link(spark: SparkSession, n_patients: int, n_samples: int, seed: int) -> DataFrame:
    """sample_idx, sample_id, patient idx, ancestry, consent: samples spread over the patients."""
    if n_samples > n_patients:
        raise ValueError(f"samples ({n_samples}) cannot exceed patients ({n_patients})")
    df = spark.range(0, n_samples, 1, 1).withColumnRenamed("id", "sample_idx")
    df = df.withColumn("idx", F.floor(F.col("sample_idx") * n_patients / n_samples).cast("long"))
    return (
        df.withColumn("sample_id", F.format_string("SM-%07d", F.col("sample_idx") + 1))
        .withColumn("ancestry", ancestry(seed, F.col("idx")))
        .withColumn("consent", bernoulli(seed, "consent", CONSENT_RATE, "sample_idx"))
    )


def causal_rows(n_variants: int) -> list[int]:
    """The row indices of the causal variants among ``n_variants``: one per entry of CAUSAL_BETAS,
    evenly spaced."""
    step = n_variants // (len(CAUSAL_BETAS) + 1)
    return [step * (i + 1) for i in range(len(CAUSAL_BETAS))]


def simulate(
    link: DataFrame, n_variants: int, seed: int, partitions: int, reference: str, checkpoint: str
) -> hl.MatrixTable:
    """The genotype matrix: rows are variants, columns the samples of link (in sample order)."""
    # Every random call carries its own seed, derived from the generator seed and the call site,
    # so draws do not depend on what else Hail did in this process.
    hl.reset_global_randomness()
    site = iter(range(1, 1000))

    def sd() -> int:
        return seed * 1000 + next(site)

    n_samples = link.count()
    cols = hl.Table.from_spark(
        link.select(
            F.col("sample_idx").cast("int").alias("col_idx"), "sample_id", F.col("ancestry").cast("int").alias("pop")
        )
    )
    cols = cols.key_by("col_idx")
    mt = hl.utils.range_matrix_table(n_variants, n_samples, n_partitions=partitions)
    mt = mt.annotate_cols(**cols[mt.col_idx])
    per_contig = -(-n_variants // N_CONTIGS)
    step = max(50, min(5000, 40_000_000 // per_contig))
    contig = mt.row_idx // per_contig + 1
    causal = hl.literal(dict(zip(causal_rows(n_variants), CAUSAL_BETAS, strict=False)))
    bases = hl.literal(["A", "C", "G", "T"])
    ref_i = hl.rand_int32(0, 4, seed=sd())
    alt_i = (ref_i + hl.rand_int32(1, 4, seed=sd())) % 4
    alt2_i = (alt_i + 1 + ((alt_i + 1) % 4 == ref_i)) % 4
    mt = mt.annotate_rows(
        locus=hl.locus(
            (hl.str("chr") if reference == "GRCh38" else hl.str("")) + hl.str(contig),
            hl.int32(100_000 + (mt.row_idx % per_contig) * step + hl.rand_int32(0, step // 2, seed=sd())),
            reference_genome=reference,
        ),
        ref_i=ref_i,
        alt_i=alt_i,
        alt2_i=alt2_i,
        multi=(~causal.contains(mt.row_idx)) & hl.rand_bool(MULTIALLELIC_RATE, seed=sd()),
        beta=causal.get(mt.row_idx, 0.0),
        aa_af=hl.if_else(causal.contains(mt.row_idx), CAUSAL_AF, 0.01 + 0.49 * hl.rand_beta(0.6, 1.4, seed=sd())),
    )
    mt = mt.annotate_rows(
        alleles=hl.if_else(
            mt.multi, [bases[mt.ref_i], bases[mt.alt_i], bases[mt.alt2_i]], [bases[mt.ref_i], bases[mt.alt_i]]
        ),
        # One draw per population, each with its own seed (a seeded call inside a map would
        # give every element the same draw).
        pop_af=hl.array(
            [
                hl.max(
                    0.002,
                    hl.min(
                        0.998, hl.rand_beta(mt.aa_af * (1 - FST) / FST, (1 - mt.aa_af) * (1 - FST) / FST, seed=sd())
                    ),
                )
                for _ in range(3)
            ]
        ),
        rsid="rs" + hl.str(mt.row_idx + 100_001),
    )
    p = mt.pop_af[mt.pop]
    a1 = hl.if_else(hl.rand_bool(p, seed=sd()), hl.if_else(mt.multi & hl.rand_bool(0.15, seed=sd()), 2, 1), 0)
    a2 = hl.if_else(hl.rand_bool(p, seed=sd()), hl.if_else(mt.multi & hl.rand_bool(0.15, seed=sd()), 2, 1), 0)
    dp = hl.rand_pois(30, seed=sd())
    mt = mt.annotate_entries(
        a1=hl.min(a1, a2),
        a2=hl.max(a1, a2),
        DP=hl.int32(dp),
        miss=hl.rand_bool(MISSING_RATE, seed=sd()),
        ref_u=hl.rand_unif(0.35, 0.65, seed=sd()),
    )
    n_alleles = hl.len(mt.alleles)
    ref_reads = hl.int32(hl.floor(mt.DP * mt.ref_u + 0.5))

    def reads(i: hl.Int32Expression) -> hl.Int32Expression:
        is1, is2 = hl.int32(i == mt.a1), hl.int32(i == mt.a2)
        return (
            hl.case()
            .when(mt.a1 == mt.a2, is1 * mt.DP)
            .when(mt.a1 == 0, hl.int32(i == 0) * ref_reads + is2 * (mt.DP - ref_reads))
            .default(is1 * (mt.DP // 2) + is2 * (mt.DP - mt.DP // 2))
        )

    ad = hl.range(n_alleles).map(reads)
    mt = mt.annotate_entries(
        GT=hl.or_missing(~mt.miss, hl.call(mt.a1, mt.a2)),
        GQ=hl.or_missing(~mt.miss, hl.min(99, hl.int32(20 + mt.DP + hl.rand_int32(0, 30, seed=sd())))),
        AD=hl.or_missing(~mt.miss, ad),
    )
    mt = mt.key_rows_by("locus", "alleles").key_cols_by("sample_id")
    mt = (
        mt.select_entries("GT", "DP", "GQ", "AD")
        .select_rows("rsid", "row_idx", "beta", "aa_af", "multi")
        .select_cols("col_idx", "pop")
    )
    return mt.checkpoint(checkpoint, overwrite=True)


def export_vcf(mt: hl.MatrixTable, path: str) -> None:
    """The matrix ``mt`` as a bgzipped, tabix-indexed VCF at ``path`` (with the AA_AF INFO field and
    the sample ids as columns), without Hadoop's .crc files beside it."""
    out = mt.annotate_rows(info=hl.struct(AA_AF=mt.aa_af)).select_rows("rsid", "info")
    out = out.annotate_rows(qual=hl.missing(hl.tfloat64), filters=hl.empty_set(hl.tstr))
    hl.export_vcf(out.key_cols_by(s=out.sample_id), path, metadata=VCF_METADATA, tabix=True)
    for crc in Path(path).parent.glob(".*.crc"):  # Hadoop's local checksum files
        crc.unlink()


def genetic_scores(mt: hl.MatrixTable) -> hl.Table:
    """sample_id -> sum over causal variants of beta * (alt dosage - 2 * ancestral AF); missing calls add 0."""
    c = mt.filter_rows(mt.beta != 0)
    dosage = c.GT.n_alt_alleles()
    c = c.annotate_cols(genetic_score=hl.agg.sum(hl.or_else(c.beta * (dosage - 2 * c.aa_af), 0.0)))
    return c.cols().select("genetic_score")


def truth(mt: hl.MatrixTable) -> GenomeTruth:
    """The planted truth of ``mt`` (from ``simulate``): its causal variants and its counts."""
    rows = mt.filter_rows(mt.beta != 0).rows()
    causal = [
        {
            "contig": r.locus.contig,
            "position": r.locus.position,
            "ref": r.alleles[0],
            "alt": r.alleles[1],
            "rsid": r.rsid,
            "effect_allele": r.alleles[1],
            "beta_log_odds": r.beta,
            "ancestral_af": r.aa_af,
        }
        for r in rows.collect()  # the handful of causal variants only
    ]
    n_multi = mt.aggregate_rows(hl.agg.count_where(mt.multi))
    n_rows, n_cols = mt.count()
    return GenomeTruth(causal, n_rows, n_cols, int(n_multi))
