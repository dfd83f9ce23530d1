"""GWAS in Hail mode (``missing="mean"``): Hail's own regression methods over the design's samples,
and the rows whose Wald fit separates or fails, for the Firth refits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import DataFrame

from omicslake.genomics.gwas.distribute import RESULT_COLUMNS
from omicslake.genomics.gwas.samples import Design

if TYPE_CHECKING:
    import hail as hl


def _separates(x: hl.Float64Expression, y: hl.Float64Expression) -> hl.BooleanExpression:
    """:func:`separated` on the mean-imputed dosages, as a row aggregation over the columns: an
    allele's imputed dosage is zero in the cases or in the controls. An imputed call carries the
    mean dosage, so a group with a missing call has none of an allele only if no call has it."""
    import hail as hl

    called = hl.is_defined(x)
    s = hl.struct(
        alt=hl.agg.sum(x),
        called=hl.agg.count_where(called),
        case_alt=hl.agg.filter(y == 1, hl.agg.sum(x)),
        case_called=hl.agg.count_where((y == 1) & called),
        case_n=hl.agg.count_where(y == 1),
        control_alt=hl.agg.filter(y == 0, hl.agg.sum(x)),
        control_called=hl.agg.count_where((y == 0) & called),
        control_n=hl.agg.count_where(y == 0),
    )

    def none_of_it(s: hl.StructExpression) -> hl.BooleanExpression:
        full_case, full_control = s.case_called == s.case_n, s.control_called == s.control_n
        no_alt, no_ref = s.alt == 0, s.alt == 2 * s.called
        return (
            ((s.case_alt == 0) & (full_case | no_alt))
            | ((s.control_alt == 0) & (full_control | no_alt))
            | ((s.case_alt == 2 * s.case_called) & (full_case | no_ref))
            | ((s.control_alt == 2 * s.control_called) & (full_control | no_ref))
        )

    return hl.bind(none_of_it, s)


def regress_hail(mt: hl.MatrixTable, design: Design, model: str, firth: str) -> hl.Table:
    """Hail's own regression (missing calls mean-imputed) over the design's samples: the result
    columns keyed by locus and alleles, and ``refit``. With a logistic model and
    ``firth="fallback"``, refit marks the variants that separate (plink2's rule, on the imputed
    dosages) or whose Wald fit did not converge or exploded; :func:`refit_rows` and :func:`regress`
    fit those by Firth. Hail's own Firth test is a likelihood-ratio test without a standard error,
    so the refits use this module's Firth fit (plink2's algorithm, Wald test), on the same
    mean-imputed dosages. ``firth="always"`` runs Hail's Firth test on every variant."""
    import hail as hl

    cols = {
        s: [float(design.y[i])] + [float(v) for v in design.covariates[i, 1:]] for i, s in enumerate(design.samples)
    }
    lit = hl.literal(cols)
    mt = mt.filter_cols(lit.contains(mt.s))
    mt = mt.annotate_cols(_v=lit[mt.s])
    dose = hl.float64(mt.GT.n_alt_alleles())
    separates = _separates(dose, mt._v[0]) if model == "logistic" else hl.missing(hl.tbool)
    mt = mt.annotate_rows(gwas_af=hl.agg.mean(dose) / 2, gwas_n=hl.agg.count(), _sep=separates)
    x = hl.float64(mt.GT.n_alt_alleles())
    passed = ["gwas_af", "gwas_n"] + (["rsid"] if "rsid" in mt.row else [])
    covs = [1.0] + [mt._v[j + 1] for j in range(len(design.covariate_names))]
    if model == "linear":
        ht = hl.linear_regression_rows(y=mt._v[0], x=x, covariates=covs, pass_through=passed)
        stat, se, is_firth, beta, p = ht.t_stat, ht.standard_error, False, ht.beta, ht.p_value
        refit = hl.bool(False)
        status = hl.if_else(hl.is_nan(ht.p_value), "collinear", "ok")
    else:
        test = "firth" if firth == "always" else "wald"
        ht = hl.logistic_regression_rows(test=test, y=mt._v[0], x=x, covariates=covs, pass_through=[*passed, "_sep"])
        beta, p, refit = ht.beta, ht.p_value, hl.bool(False)
        if test == "firth":  # Hail's Firth test is a likelihood-ratio test: no standard error
            stat, se, is_firth = ht.chi_sq_stat, hl.missing(hl.tfloat64), True
            status = hl.if_else(ht.fit.converged, "ok", "not_converged")
        else:
            stat, se, is_firth = ht.z_stat, ht.standard_error, False
            fit = ht.fit
            failed = ~fit.converged | fit.exploded | ~hl.is_finite(ht.standard_error) | ~hl.is_finite(ht.beta)
            failed = hl.or_else(failed, True)
            if firth == "fallback":
                refit = ht._sep | failed
                status = hl.if_else(failed, "not_converged", "ok")
            else:  # "no": as plink2 without Firth, a separating variant has no estimate
                status = hl.case().when(ht._sep, "separated").when(failed, "not_converged").default("ok")
                beta, stat, se, p = (hl.or_missing(~ht._sep, e) for e in (beta, stat, se, p))
    rsid = ht.rsid if "rsid" in ht.row else hl.missing(hl.tstr)
    return ht.select(
        contig=ht.locus.contig,
        position=ht.locus.position,
        ref=ht.alleles[0],
        alt=ht.alleles[1],
        rsid=rsid,
        tested_allele=ht.alleles[1],
        n=hl.int32(ht.gwas_n),
        af=ht.gwas_af,
        beta=beta,
        se=se,
        statistic=stat,
        p=p,
        neg_log10_p=-hl.log10(p),
        firth=is_firth,
        status=status,
        refit=refit,
    )


def hail_results(ht: hl.Table) -> DataFrame:
    """:func:`regress_hail`'s rows as a DataFrame with the result columns (``refit`` dropped)."""
    return ht.key_by().select(*RESULT_COLUMNS).to_spark(flatten=False)


def refit_rows(mt: hl.MatrixTable, flagged: hl.Table) -> hl.Table:
    """The rows of ``mt`` in ``flagged`` (keyed by locus and alleles) as :func:`regress` reads
    them (:func:`genotype_calls`: one byte per call, in ``mt``'s column order)."""
    return genotype_calls(mt.semi_join_rows(flagged))


def genotype_calls(mt: hl.MatrixTable) -> hl.Table:
    """One row per bi-allelic variant of ``mt``: contig, position, ref, alt, rsid and ``calls``, the
    alt-allele dosage of every column as one byte ('0', '1', '2'; '.' for a missing call), in
    column order. Hail hands a string per row to Spark far faster than an array of boxed integers
    (and Parquet stores it without per-element levels); :func:`~omicslake.genomics.gwas.distribute.calls_matrix`
    reads the bytes back as an int8 matrix."""
    import hail as hl

    code = hl.literal(["0", "1", "2"])
    mt = mt.select_entries(c=hl.or_else(code[mt.GT.n_alt_alleles()], "."))
    ht = mt.localize_entries("_e", "_cols").key_by()
    return ht.select(
        contig=ht.locus.contig,
        position=ht.locus.position,
        ref=ht.alleles[0],
        alt=ht.alleles[1],
        rsid=ht.rsid if "rsid" in ht.row else hl.missing(hl.tstr),
        calls=hl.delimit(ht._e.map(lambda e: e.c), ""),
    )
