"""Genomic QC with Hail: bronze rows back to a MatrixTable, split, sample and variant QC.

Pure transforms (Hail objects in, Hail objects out) in the style of Hail's own methods/qc.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import hail as hl
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from omicslake.config import GenomicQcConfig


def matrix_from_bronze(variants: DataFrame, samples: list[str], reference: str | None) -> hl.MatrixTable:
    """bronze.variants rows (calls as arrays in the order of samples) as a MatrixTable."""
    ht = hl.Table.from_spark(
        variants.select("contig", "position", "ref", "alts", "rsid", "qual", "gt", "dp", "gq", "ad")
    )
    locus = (
        hl.locus(ht.contig, ht.position, reference_genome=reference)
        if reference
        else hl.struct(contig=ht.contig, position=ht.position)
    )
    ht = ht.annotate(
        locus=locus,
        alleles=hl.array([ht.ref]).extend(ht.alts),
        _entries=hl.range(hl.len(ht.gt)).map(
            lambda i: hl.struct(GT=hl.parse_call(ht.gt[i]), DP=ht.dp[i], GQ=ht.gq[i], AD=ht.ad[i])
        ),
    )
    ht = ht.key_by("locus", "alleles").select("rsid", "qual", "_entries")
    cols = hl.Table.parallelize([hl.struct(s=s) for s in samples], hl.tstruct(s=hl.tstr), key="s")
    ht = ht.annotate_globals(_cols=cols.collect())  # the sample list only, not data
    return ht._unlocalize_entries("_entries", "_cols", ["s"])


def split(mt: hl.MatrixTable) -> hl.MatrixTable:
    """Multi-allelic sites split into bi-allelic rows, genotypes downcoded (Hail's split_multi_hts;
    star alleles kept so that QC can name them)."""
    return hl.split_multi_hts(mt, keep_star=True, permit_shuffle=True)


@dataclass(frozen=True)
class QcResult:
    """What ``run_qc`` gives: every sample and every split variant with its Hail QC metrics and the first
    rule it failed (null when it passed), and the genotypes of passing samples x passing variants."""

    samples: hl.Table  # every sample with its metrics, pass flag and first failed rule
    variants: hl.Table  # every split variant with its metrics, pass flag and first failed rule
    genotypes: hl.MatrixTable  # passing samples x passing variants


def _first_failed(
    checks: list[tuple[str, hl.BooleanExpression, hl.StringExpression]],
) -> tuple[hl.Expression, hl.Expression]:
    rule = hl.missing(hl.tstr)
    reason = hl.missing(hl.tstr)
    for name, ok, why in reversed(checks):
        bad = ~hl.coalesce(ok, False)
        rule = hl.if_else(bad, name, rule)
        reason = hl.if_else(bad, why, reason)
    return rule, reason


def run_qc(mt: hl.MatrixTable, t: GenomicQcConfig) -> QcResult:
    """sample_qc -> drop failing samples -> variant_qc on the rest -> drop failing variants."""
    mt = hl.sample_qc(mt)
    sq = mt.sample_qc
    s_rule, s_reason = _first_failed(
        [
            (
                "sample_call_rate",
                sq.call_rate >= t.sample_min_call_rate,
                "call rate " + hl.format("%.4f", sq.call_rate) + f" < {t.sample_min_call_rate}",
            ),
            (
                "sample_dp_mean",
                hl.coalesce(sq.dp_stats.mean, 0.0) >= t.sample_min_dp_mean,
                "mean DP " + hl.format("%.1f", hl.coalesce(sq.dp_stats.mean, 0.0)) + f" < {t.sample_min_dp_mean}",
            ),
            (
                "sample_het_hom_ratio",
                hl.coalesce(sq.r_het_hom_var, 0.0) <= t.sample_max_het_hom_ratio,
                "het/hom-var ratio "
                + hl.format("%.2f", hl.coalesce(sq.r_het_hom_var, 0.0))
                + f" > {t.sample_max_het_hom_ratio}",
            ),
        ]
    )
    mt = mt.annotate_cols(qc_rule=s_rule, qc_reason=s_reason)
    samples = mt.cols()
    kept = mt.filter_cols(hl.is_missing(mt.qc_rule))
    kept = hl.variant_qc(kept)
    vq = kept.variant_qc
    maf = hl.min(vq.AF[1], 1 - vq.AF[1])
    v_rule, v_reason = _first_failed(
        [
            # Kept through the split so nothing vanishes, but a spanning deletion is no variant.
            ("variant_star_allele", kept.alleles[1] != "*", hl.literal("spanning-deletion allele *")),
            (
                "variant_call_rate",
                vq.call_rate >= t.variant_min_call_rate,
                "call rate " + hl.format("%.4f", vq.call_rate) + f" < {t.variant_min_call_rate}",
            ),
            (
                "variant_maf",
                hl.coalesce(maf, 0.0) >= t.variant_min_maf,
                "MAF " + hl.format("%.4f", hl.coalesce(maf, 0.0)) + f" < {t.variant_min_maf}",
            ),
            (
                "variant_hwe",
                hl.coalesce(vq.p_value_hwe, 1.0) >= t.variant_min_hwe_p,
                "HWE p " + hl.format("%.3e", hl.coalesce(vq.p_value_hwe, 1.0)) + f" < {t.variant_min_hwe_p}",
            ),
        ]
    )
    kept = kept.annotate_rows(v_rule=v_rule, v_reason=v_reason)
    variants = kept.rows()
    genotypes = kept.filter_rows(hl.is_missing(kept.v_rule))
    return QcResult(samples, variants, genotypes)


def sample_rows(samples: hl.Table) -> hl.Table:
    """silver.sample_qc rows from ``QcResult.samples``: sample_id, call_rate, n_called, n_not_called, n_het,
    n_hom_var, r_het_hom_var, dp_mean, gq_mean, passed, and the first failed rule and its reason (null
    when passed)."""
    samples = samples.key_by()
    sq = samples.sample_qc
    return samples.select(
        sample_id=samples.s,
        call_rate=sq.call_rate,
        n_called=hl.int64(sq.n_called),
        n_not_called=hl.int64(sq.n_not_called),
        n_het=hl.int64(sq.n_het),
        n_hom_var=hl.int64(sq.n_hom_var),
        r_het_hom_var=sq.r_het_hom_var,
        dp_mean=sq.dp_stats.mean,
        gq_mean=sq.gq_stats.mean,
        passed=hl.is_missing(samples.qc_rule),
        rule=samples.qc_rule,
        reason=samples.qc_reason,
    )


def variant_rows(variants: hl.Table) -> hl.Table:
    """silver.variant_qc rows from ``QcResult.variants``: contig, position, ref, alt, rsid, was_split, a_index,
    call_rate, ac, an, af (of the alt allele, over passing samples), n_het, hwe_p, dp_mean, gq_mean,
    passed, and the first failed rule and its reason (null when passed)."""
    variants = variants.key_by()
    vq = variants.variant_qc
    return variants.select(
        contig=variants.locus.contig,
        position=variants.locus.position,
        ref=variants.alleles[0],
        alt=variants.alleles[1],
        rsid=variants.rsid,
        was_split=variants.was_split,
        a_index=variants.a_index,
        call_rate=vq.call_rate,
        ac=vq.AC[1],
        an=vq.AN,
        af=vq.AF[1],
        n_het=hl.int64(vq.n_het),
        hwe_p=vq.p_value_hwe,
        dp_mean=vq.dp_stats.mean,
        gq_mean=vq.gq_stats.mean,
        passed=hl.is_missing(variants.v_rule),
        rule=variants.v_rule,
        reason=variants.v_reason,
    )


def genotype_rows(mt: hl.MatrixTable) -> hl.Table:
    """QC-passed genotypes, one row per variant, alt-allele dosage per passing sample (null = missing)."""
    mt = mt.select_entries(dosage=hl.int32(mt.GT.n_alt_alleles()))
    ht = mt.localize_entries("_e", "_cols").key_by()
    return ht.select(
        contig=ht.locus.contig,
        position=ht.locus.position,
        ref=ht.alleles[0],
        alt=ht.alleles[1],
        rsid=ht.rsid,
        dosage=ht._e.map(lambda e: e.dosage),
    )


_NOT_METRICS = ("passed", "rule", "reason", "run_id")


def quarantine_samples(samples: DataFrame, source_file: str, run_id: str) -> DataFrame:
    """quarantine.sample_qc rows (omicslake.quarantine's shape) from silver.sample_qc rows: the
    samples that failed, keyed by sample id, their metrics as JSON, no line."""
    from omicslake import quarantine

    failed = samples.where(~F.col("passed"))
    metrics = [c for c in samples.columns if c not in _NOT_METRICS]
    return quarantine.rows(failed, "sample_id", metrics, F.lit(source_file), None, run_id)


def quarantine_variants(variants: DataFrame, source_file: str, run_id: str) -> DataFrame:
    """quarantine.variant_qc rows (omicslake.quarantine's shape) from silver.variant_qc rows: the
    split variants that failed, keyed by contig:position:ref:alt, their metrics as JSON, no line."""
    from omicslake import quarantine

    failed = variants.where(~F.col("passed"))
    key = F.concat_ws(":", "contig", F.col("position").cast("string"), "ref", "alt")
    metrics = [c for c in variants.columns if c not in _NOT_METRICS]
    return quarantine.rows(failed, key, metrics, F.lit(source_file), None, run_id)
