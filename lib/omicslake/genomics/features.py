"""Genetic features with Hail: LD-pruned PCA scores and polygenic scores."""

from __future__ import annotations

import hail as hl
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def matrix_from_genotypes(genotypes: DataFrame, samples: list[str], reference: str | None) -> hl.MatrixTable:
    """silver.genotypes (dosage arrays in the order of samples) as a MatrixTable with GT."""
    ht = hl.Table.from_spark(genotypes.select("contig", "position", "ref", "alt", "dosage"))
    locus = (
        hl.locus(ht.contig, ht.position, reference_genome=reference)
        if reference
        else hl.struct(contig=ht.contig, position=ht.position)
    )
    calls = hl.literal([hl.Call([0, 0]), hl.Call([0, 1]), hl.Call([1, 1])])
    ht = ht.annotate(
        locus=locus,
        alleles=[ht.ref, ht.alt],
        _e=ht.dosage.map(lambda d: hl.struct(GT=hl.or_missing(hl.is_defined(d), calls[d]))),
    )
    ht = ht.key_by("locus", "alleles").select("_e")
    ht = ht.annotate_globals(_cols=[hl.struct(s=s) for s in samples])
    return ht._unlocalize_entries("_e", "_cols", ["s"])


def genetic_pcs(
    mt: hl.MatrixTable, k: int, r2: float, window: int, min_maf: float
) -> tuple[hl.Table, list[float], int]:
    """HWE-normalised PCA on common, LD-pruned variants: (scores per sample, eigenvalues, variants used)."""
    mt = hl.variant_qc(mt)
    mt = mt.filter_rows(hl.min(mt.variant_qc.AF) >= min_maf)
    pruned = hl.ld_prune(mt.GT, r2=r2, bp_window_size=window)
    mt = mt.filter_rows(hl.is_defined(pruned[mt.row_key]))
    n_used = mt.count_rows()
    k = min(k, n_used - 1, mt.count_cols() - 1)
    eigenvalues, scores, _ = hl.hwe_normalized_pca(mt.GT, k=k)
    scores = scores.select(**{f"pc{i + 1}": scores.scores[i] for i in range(k)})
    return scores.key_by().select("s", *[f"pc{i + 1}" for i in range(k)]), list(eigenvalues), n_used


def align_weights(weights: DataFrame, variants: DataFrame) -> DataFrame:
    """Weights matched to genotyped variants by position and alleles, flipped when the effect
    allele is the REF: (contig, position, ref, alt, weight_alt, flipped)."""
    j = variants.select("contig", "position", "ref", "alt").join(weights, ["contig", "position"])
    same = (F.col("effect_allele") == F.col("alt")) & (F.col("other_allele") == F.col("ref"))
    flip = (F.col("effect_allele") == F.col("ref")) & (F.col("other_allele") == F.col("alt"))
    return j.where(same | flip).select(
        "contig",
        "position",
        "ref",
        "alt",
        F.when(flip, -F.col("weight")).otherwise(F.col("weight")).alias("weight_alt"),
        flip.alias("flipped"),
        F.when(flip, F.col("weight")).otherwise(F.lit(0.0)).alias("offset"),
    )


def polygenic_scores(genotypes: DataFrame, aligned: DataFrame, samples: list[str]) -> DataFrame:
    """Per sample: sum of weight x effect-allele dosage (missing calls: the variant's mean dosage).

    With the effect allele on REF, dosage_effect = 2 - dosage_alt, so the score is
    sum(weight_alt x dosage_alt) + sum(2 x weight) over flipped variants.
    """
    g = genotypes.join(F.broadcast(aligned), ["contig", "position", "ref", "alt"])
    mean = F.aggregate(F.filter("dosage", lambda d: d.isNotNull()), F.lit(0.0), lambda a, d: a + d) / F.greatest(
        F.size(F.filter("dosage", lambda d: d.isNotNull())), F.lit(1)
    )
    g = g.select(
        "weight_alt",
        "offset",
        F.posexplode(F.transform("dosage", lambda d: F.coalesce(d.cast("double"), mean))).alias("i", "d"),
    )
    per = g.groupBy("i").agg(
        F.sum(F.col("weight_alt") * F.col("d") + 2 * F.col("offset")).alias("prs"),
        F.count("*").alias("n_variants"),
    )
    names = genotypes.sparkSession.createDataFrame([(i, s) for i, s in enumerate(samples)], "i int, sample_id string")
    return names.join(per, "i", "left").select(
        "sample_id",
        F.coalesce("prs", F.lit(0.0)).alias("prs"),
        F.coalesce("n_variants", F.lit(0)).cast("int").alias("n_variants"),
    )
