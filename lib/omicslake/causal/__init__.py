"""Comparative effect studies on Spark DataFrames (OHDSI CohortMethod's methods, natively).

- ``cox``: Cox proportional-hazards models by Newton-Raphson over sorted risk sets (Breslow or
  Efron ties, strata, case weights, robust sandwich variance), aggregated on the executors.
- ``propensity``: propensity scores (regularised MLlib logistic regression), preference scores,
  trimming, PS strata, IPTW weights (ATE / ATT, stabilised, truncated) and distributed 1:k caliper
  matching on the logit PS.
- ``balance``: standardised mean differences of every covariate before and after adjustment.
- ``epi``: incidence rates with exact Poisson intervals, Kaplan-Meier by arm, Poisson and logistic
  outcome models.
"""
