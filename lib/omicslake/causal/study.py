"""A comparative effect study on a person-level DataFrame, end to end (the algorithmic core of a
``study`` job; reads and writes nothing).

Input: one row per person with a 0/1 treatment column (target = 1, comparator = 0), numeric
covariates, and for each outcome ``<outcome>_days`` (days from index to the outcome or censoring)
and ``<outcome>_event`` (0/1). ``run_study`` checks the input (empty arm, no outcome, a covariate
that predicts treatment perfectly: a ``StudyError`` naming it), fits the propensity model, builds
each configured analysis population (crude, IPTW, PS matching, PS stratification), measures
covariate balance, fits a Cox model per outcome and analysis (robust variance under weights,
stratified on matched sets / PS strata), incidence per arm, effect modification by configured
covariates (interaction and stratum-specific HRs), empirical calibration of the estimates on
the negative-control outcomes (Schuemie et al. 2014: a normal systematic-error null fitted by
maximum likelihood, calibrated p-values and CIs), and, with a ``mediation`` design, the natural
direct and indirect effects of treatment on an outcome within a window through a mediator
(``causal.mediation.mediate``, adjusted for the design's covariates).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy import optimize, stats

from omicslake.causal import balance, cox, epi, mediation, propensity
from omicslake.errors import ConfigError, OmicslakeError

log = logging.getLogger(__name__)

ANALYSES = ("crude", "iptw", "matching", "stratification")


class StudyError(OmicslakeError):
    """A study cannot give a meaningful number: empty arm, no outcome, perfect predictor..."""


@dataclass(frozen=True)
class MediationDesign:
    """Natural direct / indirect effects of the treatment on ``outcome`` (a study outcome: its event
    within ``window`` days of the index; persons censored earlier without it are left out; no window:
    the event at any time) through ``mediator`` (a numeric column of the population: a covariate or a
    post-index measurement; persons without a value are left out), with ``mediator_model`` and
    ``outcome_model`` from ``causal.mediation.MODELS``, adjusted for ``covariates`` (default the
    design's), ``draws`` coefficient draws with ``seed`` and CI ``level``."""

    mediator: str
    outcome: str
    window: int | None = None
    mediator_model: str = "linear"
    outcome_model: str = "logistic"
    covariates: tuple[str, ...] | None = None
    draws: int = 1000
    seed: int = 0
    level: float = 0.95


@dataclass(frozen=True)
class StudyDesign:
    """What to estimate: ``covariates`` for the PS model; ``outcomes`` and ``negative_controls``
    (names with ``_days`` / ``_event`` columns); ``analyses`` from ANALYSES; PS penalty ``ps_reg``;
    IPTW ``estimand`` ('ate'/'att'), ``stabilized``, ``max_weight``; matching ``ratio`` and
    ``caliper`` (SDs of the logit PS); ``strata`` (PS quantile strata); Cox ``ties``;
    ``modifiers`` (0/1 columns for effect modification); ``incidence_by`` (columns to break the
    incidence down by, e.g. age band, sex, race, calendar year, besides the overall rate)."""

    treatment: str
    covariates: tuple[str, ...]
    outcomes: tuple[str, ...]
    negative_controls: tuple[str, ...] = ()
    analyses: tuple[str, ...] = ("crude", "iptw", "matching")
    id_col: str = "person_key"
    ps_reg: float = 0.001
    estimand: str = "ate"
    stabilized: bool = True
    max_weight: float | None = None
    ratio: int = 1
    caliper: float = 0.2
    strata: int = 5
    ties: str = "efron"
    modifiers: tuple[str, ...] = ()
    incidence_by: tuple[str, ...] = ()
    mediation: MediationDesign | None = None


@dataclass
class StudyResult:
    """Plain rows for the gold tables: estimates, balance, incidence, modification, calibration, and
    the PS model's coefficients and population counts."""

    estimates: list[dict[str, Any]] = field(default_factory=list)
    balance: list[dict[str, Any]] = field(default_factory=list)
    incidence: list[dict[str, Any]] = field(default_factory=list)
    modification: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    ps_coefficients: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    # the mediation design's effects: one row per effect (nie, nde, total, prop_mediated, ...)
    mediation: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    # Kaplan-Meier by arm per outcome (crude): outcome, arm, days, survival, at_risk, events (steps)
    km: list[dict[str, Any]] = field(default_factory=list)
    # one row per person (materialised; the caller unpersists it): id, treatment, ps, preference,
    # logit_ps, weight (IPTW), match_set, ps_stratum (null where the analysis is not run / unmatched)
    persons: DataFrame | None = None


def mediation_from_dict(raw: Any, source: str) -> MediationDesign:
    """A MediationDesign from the ``design.mediation`` mapping; ConfigError naming the key and
    ``source`` for an unknown or missing key, a mistyped value or an unknown model."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: design.mediation must be a mapping {{mediator, outcome, window, ...}}")
    fields = {f.name: f for f in dataclasses.fields(MediationDesign)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown design.mediation keys {unknown}; known: {sorted(fields)}")
    missing = [n for n in ("mediator", "outcome") if n not in raw]
    if missing:
        raise ConfigError(f"{source}: design.mediation needs {missing}")
    args: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("mediator", "outcome", "mediator_model", "outcome_model"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{source}: design.mediation.{key} must be a name, not {value!r}")
            if key.endswith("_model") and value not in mediation.MODELS:
                raise ConfigError(
                    f"{source}: design.mediation.{key} must be one of {list(mediation.MODELS)}, not {value!r}"
                )
        elif key == "covariates":
            if value is not None and (isinstance(value, str) or not isinstance(value, list | tuple)):
                raise ConfigError(f"{source}: design.mediation.covariates must be a list")
            value = None if value is None else tuple(str(v) for v in value)
        elif key in ("window", "draws", "seed"):
            ok = isinstance(value, int) and not isinstance(value, bool) and (value > 0 or key == "seed")
            if not (ok or (key == "window" and value is None)):
                raise ConfigError(f"{source}: design.mediation.{key} must be a positive whole number, not {value!r}")
        elif key == "level":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ConfigError(f"{source}: design.mediation.level must be a number in (0, 1), not {value!r}")
        args[key] = value
    return MediationDesign(**args)


def design_from_dict(raw: dict[str, Any], source: str) -> StudyDesign:
    """A StudyDesign from parsed YAML (``conf/studies/<name>.yaml``'s ``design`` mapping): lists
    become tuples; an unknown key, a missing required key or a value of the wrong type is a
    ConfigError naming the key and ``source``."""
    fields = {f.name: f for f in dataclasses.fields(StudyDesign)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown study keys {unknown}; known: {sorted(fields)}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    missing = [n for n in required if n not in raw]
    if missing:
        raise ConfigError(f"{source}: the study needs {missing}")
    args: dict[str, Any] = {}
    for key, value in raw.items():
        default = fields[key].default
        if key == "mediation":
            value = None if value is None else mediation_from_dict(value, source)
        elif isinstance(default, tuple) or key in ("covariates", "outcomes"):
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise ConfigError(f"{source}: {key} must be a list, not {type(value).__name__}")
            value = tuple(str(v) for v in value)
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, not {value!r}")
        elif isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{source}: {key} must be a number, not {value!r}")
        args[key] = value
    return StudyDesign(**args)


def validate(df: DataFrame, d: StudyDesign) -> dict[str, int]:
    """Check the study input before any model: the columns exist, both arms have persons, there
    is at least one outcome with events. Returns the arm counts; StudyError otherwise."""
    if not d.outcomes:
        raise StudyError("the study has no outcomes: list at least one outcome")
    bad = [a for a in d.analyses if a not in ANALYSES]
    if bad:
        raise StudyError(f"unknown analyses {bad}: choose from {list(ANALYSES)}")
    need = [d.treatment, d.id_col, *d.covariates, *d.modifiers, *d.incidence_by]
    for o in (*d.outcomes, *d.negative_controls):
        need += [f"{o}_days", f"{o}_event"]
    med = d.mediation
    if med is not None:
        need += [med.mediator, f"{med.outcome}_days", f"{med.outcome}_event", *(med.covariates or ())]
    missing = [c for c in dict.fromkeys(need) if c not in df.columns]
    if missing:
        if med is not None and med.mediator in missing:
            raise StudyError(
                f"mediation: the study population has no mediator column {med.mediator!r}; "
                "name a covariate or a measurement of the study"
            )
        raise StudyError(f"the study population has no columns {missing}")
    row = df.agg(
        F.sum((F.col(d.treatment) == 1).cast("long")).alias("target"),
        F.sum((F.col(d.treatment) == 0).cast("long")).alias("comparator"),
        *[F.sum(F.col(f"{o}_event").cast("long")).alias(f"ev_{i}") for i, o in enumerate(d.outcomes)],
    ).first()
    assert row is not None
    counts = {"target": int(row["target"] or 0), "comparator": int(row["comparator"] or 0)}
    for arm, n in counts.items():
        if n == 0:
            raise StudyError(f"the {arm} arm is empty: no person has {d.treatment} = {1 if arm == 'target' else 0}")
    no_events = [o for i, o in enumerate(d.outcomes) if not row[f"ev_{i}"]]
    if len(no_events) == len(d.outcomes):
        raise StudyError(f"no outcome has any event in the study population: {list(d.outcomes)}")
    return counts


def fit_null(log_hr: Sequence[float], se: Sequence[float]) -> tuple[float, float]:
    """The empirical null N(mu, sigma^2) of the negative-control estimates: maximum likelihood of
    log_hr_i ~ N(mu, sigma^2 + se_i^2). Returns (mu, sigma)."""
    b, s = np.asarray(log_hr, float), np.asarray(se, float)
    if len(b) == 0:
        raise StudyError("no negative-control estimates to fit the empirical null")

    def nll(theta: np.ndarray) -> float:
        mu, log_sigma = theta
        v = math.exp(2 * log_sigma) + s**2
        return float(0.5 * np.sum(np.log(v) + (b - mu) ** 2 / v))

    res = optimize.minimize(
        nll,
        np.array([float(np.mean(b)), math.log(0.1)]),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000},
    )
    return float(res.x[0]), float(math.exp(res.x[1]))


def calibrate(log_hr: float, se: float, mu: float, sigma: float, level: float = 0.95) -> dict[str, float]:
    """Calibrated two-sided p-value and CI of one estimate under the empirical null (mu, sigma)."""
    sd = math.sqrt(sigma**2 + se**2)
    z = (log_hr - mu) / sd
    q = stats.norm.ppf(0.5 + level / 2)
    return {
        "calibrated_p": float(2 * stats.norm.sf(abs(z))),
        "calibrated_hr_lower": math.exp(log_hr - mu - q * sd),
        "calibrated_hr_upper": math.exp(log_hr - mu + q * sd),
    }


def _cox_row(pop: DataFrame, outcome: str, analysis: str, d: StudyDesign, **kw: Any) -> dict[str, Any]:
    res = cox.fit(pop, f"{outcome}_days", f"{outcome}_event", [d.treatment], ties=d.ties, **kw)
    (s,) = res.summary()
    return {
        "outcome": outcome,
        "analysis": analysis,
        "negative_control": outcome in d.negative_controls,
        "log_hr": s["coef"],
        "se": s["se"],
        "hr": s["hr"],
        "hr_lower": s["hr_lower"],
        "hr_upper": s["hr_upper"],
        "p": s["p"],
        "persons": res.n,
        "events": res.events,
        "converged": res.converged,
        "diagnostics": "; ".join(res.diagnostics),
    }


def run_study(df: DataFrame, d: StudyDesign) -> StudyResult:
    """Run the study design ``d`` on ``df`` (see the module docstring) and return a StudyResult."""
    out = StudyResult()
    out.counts = validate(df, d)
    try:
        scored, out.ps_coefficients = propensity.fit_ps(df, d.treatment, d.covariates, reg=d.ps_reg)
    except ValueError as e:
        raise StudyError(str(e)) from e
    scored = scored.cache()
    pops: dict[str, tuple[DataFrame, dict[str, Any], str | None]] = {}
    if "crude" in d.analyses:
        pops["crude"] = (scored, {}, None)
    if "iptw" in d.analyses:
        w = propensity.iptw(scored, d.treatment, d.estimand, d.stabilized, d.max_weight).cache()
        pops["iptw"] = (w, {"weight": "weight", "robust": True}, "weight")
    if "matching" in d.analyses:
        m = propensity.match(scored, d.treatment, d.id_col, d.ratio, d.caliper).cache()
        out.counts["matched"] = m.count()
        if out.counts["matched"] == 0:
            raise StudyError(f"no target person has a comparator within {d.caliper} SD of the logit PS")
        pops["matching"] = (m, {"strata": ["match_set"]}, None)
    if "stratification" in d.analyses:
        s = propensity.ps_strata(scored, d.strata).cache()
        pops["stratification"] = (s, {"strata": ["ps_stratum"]}, None)
    before = {r["term"]: r for r in balance.smd(scored, d.treatment, d.covariates)}
    for name, (pop, kw, weight) in pops.items():
        if name == "crude":
            after = list(before.values())
        elif name == "stratification":  # balance within the PS strata: marginal mean weights
            strat = propensity.stratum_weights(pop, d.treatment)
            after = balance.smd(strat, d.treatment, d.covariates, "stratum_weight")
        else:
            after = balance.smd(pop, d.treatment, d.covariates, weight)
        for r in after:
            out.balance.append(
                {
                    "analysis": name,
                    "term": r["term"],
                    "smd_before": before[str(r["term"])]["smd"],
                    "smd_after": r["smd"],
                    "mean_target": r["mean_treated"],
                    "mean_comparator": r["mean_comparator"],
                }
            )
        for o in (*d.outcomes, *d.negative_controls):
            out.estimates.append(_cox_row(pop, o, name, d, **kw))
        for mod in d.modifiers if name != "matching" else ():
            wcol = pop.withColumn("_txm", F.col(d.treatment) * F.col(mod))
            for o in d.outcomes:
                inter = cox.fit(wcol, f"{o}_days", f"{o}_event", [d.treatment, mod, "_txm"], ties=d.ties, **kw)
                row = inter.summary()[2]
                out.modification.append(
                    {
                        "outcome": o,
                        "analysis": name,
                        "modifier": mod,
                        "level": "interaction",
                        **{k: row[k] for k in ("hr", "hr_lower", "hr_upper", "p")},
                    }
                )
                for level in (0, 1):
                    sub = _cox_row(pop.where(F.col(mod) == level), o, name, d, **kw)
                    out.modification.append(
                        {
                            "outcome": o,
                            "analysis": name,
                            "modifier": mod,
                            "level": str(level),
                            **{k: sub[k] for k in ("hr", "hr_lower", "hr_upper", "p")},
                        }
                    )
    for o in d.outcomes:
        for by in (None, *d.incidence_by):
            for r in epi.incidence(scored, f"{o}_event", f"{o}_days", by=[d.treatment, *([by] if by else [])]):
                out.incidence.append(
                    {
                        "outcome": o,
                        "arm": "target" if r[d.treatment] == 1 else "comparator",
                        "by": by or "overall",
                        "level": "all" if by is None else str(r[by]),
                        **{k: r[k] for k in ("persons", "events", "person_years", "rate", "rate_lower", "rate_upper")},
                    }
                )
    if d.negative_controls:
        for name in pops:
            nc = [e for e in out.estimates if e["analysis"] == name and e["negative_control"] and e["converged"]]
            if len(nc) < 3:
                out.diagnostics.append(f"{name}: {len(nc)} usable negative controls, too few to calibrate")
                continue
            mu, sigma = fit_null([e["log_hr"] for e in nc], [e["se"] for e in nc])
            out.calibration[name] = {"null_mean": mu, "null_sd": sigma, "negative_controls": len(nc)}
            for e in out.estimates:
                if e["analysis"] == name:
                    e.update(calibrate(e["log_hr"], e["se"], mu, sigma))
    for o in d.outcomes:
        curves = epi.kaplan_meier_by_arm(scored, d.treatment, f"{o}_days", f"{o}_event")
        for arm, cur in curves.items():
            for t, surv, n in zip(cur["t"], cur["s"], cur["n"], strict=True):
                out.km.append(
                    {
                        "outcome": o,
                        "arm": "target" if str(arm) == "1" else "comparator",
                        "days": int(t),
                        "survival": float(surv),
                        "at_risk": int(n),
                    }
                )
    if d.mediation is not None:
        out.mediation, note = run_mediation(df, d)
        if note:
            out.diagnostics.append(note)
    out.persons = _persons(scored, pops, d)
    for _, (pop, _, _) in pops.items():
        pop.unpersist()
    scored.unpersist()
    return out


MEDIATION_EFFECTS = {
    "acme": "nie",
    "ade": "nde",
    "total": "total",
    "prop_mediated": "prop_mediated",
    "acme_control": "nie_control",
    "acme_treated": "nie_treated",
    "ade_control": "nde_control",
    "ade_treated": "nde_treated",
}


def run_mediation(df: DataFrame, d: StudyDesign) -> tuple[list[dict[str, Any]], str]:
    """The mediation design of ``d`` on the study population ``df``: one row per effect (nie, nde,
    total, prop_mediated, and per arm with a logistic model), each with estimate, lower, upper and
    the design, plus a note on the persons left out. StudyError when the mediator is missing,
    constant or (logistic) not 0/1, the outcome has no event in the window, or a model cannot be fitted."""
    med = d.mediation
    if med is None:
        raise StudyError("the study has no mediation design")
    if med.mediator not in df.columns:
        raise StudyError(f"mediation: the study population has no mediator column {med.mediator!r}")
    covs = list(med.covariates if med.covariates is not None else d.covariates)
    if med.mediator in covs:
        raise StudyError(f"mediation: the mediator {med.mediator!r} is also an adjustment covariate; drop it there")
    days, event = F.col(f"{med.outcome}_days"), F.col(f"{med.outcome}_event")
    if med.window is None:
        y = event
    else:  # an event within the window; no event and censored before the window's end: unknown
        y = F.when((event == 1) & (days <= med.window), 1).when(days >= med.window, 0)
    rows = df.select(d.treatment, *covs, F.col(med.mediator).cast("double").alias("_mediator"), y.alias("_y"))
    rows = rows.where(F.col("_mediator").isNotNull() & ~F.isnan("_mediator") & F.col("_y").isNotNull())
    rows = rows.dropna(subset=covs).cache()
    stats_row = df.agg(
        F.count(F.lit(1)).alias("all"),
        F.sum(F.col(med.mediator).isNull().cast("long")).alias("no_mediator"),
    ).first()
    kept = rows.agg(
        F.count(F.lit(1)).alias("n"),
        F.countDistinct("_mediator").alias("values"),
        F.sum("_y").alias("events"),
        F.sum(F.col(d.treatment)).alias("treated"),
    ).first()
    assert stats_row is not None and kept is not None
    n = int(kept["n"])
    try:
        if n == 0:
            raise StudyError(
                f"mediation: no person has a value of the mediator {med.mediator!r} and a known {med.outcome} "
                f"within {med.window} days ({int(stats_row['no_mediator'] or 0)} of {stats_row['all']} lack the mediator)"
            )
        if int(kept["values"]) < 2:
            raise StudyError(
                f"mediation: the mediator {med.mediator!r} is constant in the {n} persons with a value; "
                "it cannot carry any effect: name another mediator"
            )
        if int(kept["treated"] or 0) in (0, n):
            raise StudyError(f"mediation: one arm is empty among the {n} persons with a mediator value")
        try:
            res = mediation.mediate(
                rows,
                d.treatment,
                "_mediator",
                "_y",
                covs,
                n_draws=med.draws,
                seed=med.seed,
                level=med.level,
                mediator_model=med.mediator_model,
                outcome_model=med.outcome_model,
            )
        except ValueError as e:
            msg = str(e).replace("_mediator", med.mediator).replace("_y", f"{med.outcome} within {med.window} days")
            raise StudyError(f"mediation: {msg}") from e
    finally:
        rows.unpersist()
    common = {
        "mediator": med.mediator,
        "outcome": med.outcome,
        "window_days": med.window,
        "mediator_model": med.mediator_model,
        "outcome_model": med.outcome_model,
        "level": med.level,
        "persons": n,
        "events": int(kept["events"] or 0),
        "left_out": int(stats_row["all"]) - n,
        "draws": med.draws,
        "mediator_effect": res["a"],
        "outcome_mediator_coef": res["b"],
    }
    out = [
        {**common, "effect": name, **{k: res[key][k] for k in ("estimate", "lower", "upper")}}
        for key, name in MEDIATION_EFFECTS.items()
        if key in res
    ]
    note = ""
    if n < int(stats_row["all"]):
        note = (
            f"mediation: {int(stats_row['all']) - n} of {stats_row['all']} persons left out (no {med.mediator} value, "
            f"a missing covariate, or censored before day {med.window} without {med.outcome})"
        )
    return out, note


def _persons(
    scored: DataFrame, pops: dict[str, tuple[DataFrame, dict[str, Any], str | None]], d: StudyDesign
) -> DataFrame:
    """One row per person of the study: PS, preference, and the IPTW weight, matched set and PS
    stratum of the analyses run (null otherwise), materialised by a local checkpoint."""
    out = scored.select(
        F.col(d.id_col), F.col(d.treatment).cast("int").alias(d.treatment), "ps", "preference", "logit_ps"
    )
    extra = {"iptw": "weight", "matching": "match_set", "stratification": "ps_stratum"}
    types = {"weight": "double", "match_set": "string", "ps_stratum": "int"}
    for analysis, col in extra.items():
        if analysis in pops:
            pop = pops[analysis][0].select(F.col(d.id_col), F.col(col).cast(types[col]).alias(col))
            if analysis == "matching":  # a matched person is in one set
                pop = pop.dropDuplicates([d.id_col])
            out = out.join(pop, d.id_col, "left")
        else:
            out = out.withColumn(col, F.lit(None).cast(types[col]))
    return out.localCheckpoint()
