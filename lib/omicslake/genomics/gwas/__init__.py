"""Genome-wide association: one regression per variant, with covariates.

Two ways to treat a missing call, because the two reference tools differ:

* ``drop`` (the default): the sample is left out of that variant's regression, as plink2
  ``--glm`` does. Fitted per variant in NumPy inside ``mapInPandas`` on the executors (the
  sample set changes from variant to variant, which Hail's regression methods do not allow).
* ``mean``: the call is replaced by the variant's mean dosage and every sample is used, as
  Hail's ``linear_regression_rows`` / ``logistic_regression_rows`` do; this mode runs those
  Hail methods themselves.

Logistic regression is a Wald test. Firth's penalised likelihood is ``firth="always"``, or
``"fallback"`` (plink2's default): in drop mode the per-variant fits follow plink2 2.00a3's
``--glm`` step for step (Firth when an allele is seen only in cases or only in controls, or
when the Newton-Raphson fit fails; "unfinished" where plink2 says UNFINISHED), so the same
variants get the same kind of fit. In mean mode Hail fits every variant by Wald; the variants
that separate (the same rule on the imputed dosages) or that Hail's fit does not converge on are
refitted by this module's Firth code on the mean-imputed dosages (Hail's own Firth test is a
likelihood-ratio test without a standard error). On variants without missing calls the two
modes give the same numbers. In drop mode the Wald fits of a batch of variants run together
(:func:`fit_block`: one Newton-Raphson over a variants x samples matrix with a mask for missing
calls, plink2's per-variant stopping rules kept); Firth and the rare special cases run one by one.

Statuses: ok, unfinished (iteration limit reached; estimates reported, as plink2 does),
not_converged, separated (``firth="no"``), invalid_result (plink2's check of the covariance
matrix), constant_genotype, one_class, too_few_samples, no_calls, collinear, perfect_fit.
"""

from omicslake.genomics.gwas.distribute import RESULT_COLUMNS, RESULT_SCHEMA, regress
from omicslake.genomics.gwas.fit import Fit, fit_block, fit_linear, fit_logistic, fit_variant, separated
from omicslake.genomics.gwas.hail_mode import hail_results, refit_rows, regress_hail
from omicslake.genomics.gwas.plots import PNGS, lambda_gc, plots, plots_location
from omicslake.genomics.gwas.samples import (
    Design,
    SampleTable,
    binary_response,
    build_design,
    read_sample_table,
)

__all__ = [
    "PNGS",
    "RESULT_COLUMNS",
    "RESULT_SCHEMA",
    "Design",
    "Fit",
    "SampleTable",
    "binary_response",
    "build_design",
    "fit_block",
    "fit_linear",
    "fit_logistic",
    "fit_variant",
    "hail_results",
    "lambda_gc",
    "plots",
    "plots_location",
    "read_sample_table",
    "refit_rows",
    "regress",
    "regress_hail",
    "separated",
]
