"""A study's definition on the lake (``conf/studies/<name>.yaml``) and the person-level population it
gives (pure: DataFrames in, a DataFrame out; the ``study`` job does the reads and writes).

A study file names a cohort (``gold.cohort_<cohort>`` / ``gold.features_<cohort>``), a target and a
comparator exposure (drug source codes in ``silver.drug_exposure``), the window after the cohort's
index in which the first exposure must start (a new-user design: the study's index is that start),
the covariates (design name -> column of the features table), the outcomes and negative controls
(condition source codes in ``silver.condition_occurrence``), optional post-index ``measurements``
(name -> LOINC codes in ``silver.measurement`` and a window of days after the study's index: e.g. a
mediator) and the ``design`` of ``causal.study.StudyDesign``.

``population`` builds one row per person: ``person_key``, ``target`` (1 target, 0 comparator),
``index_date`` (first exposure), ``follow_up_days`` (time at risk: from the index to the end of the
exposure, a switch to the other arm's drug (``censor_at_switch``), death or the end of data, whichever
is first), the covariates under their design names,
``sex``, ``age_band``, ``race``, ``index_year`` (for incidence breakdowns), and for each outcome
``<outcome>_days`` / ``<outcome>_event`` (the first occurrence after the index within the time at
risk; else censored at its end), and each measurement under its name (the first value in its window
after the index; null when there is none). Persons exposed to both drugs on their first exposure day, with no
time at risk, or with a missing covariate are left out and counted in the attrition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from omicslake.causal.study import StudyDesign, StudyError, design_from_dict
from omicslake.errors import ConfigError
from omicslake.resources import resource_dir

# the columns population() adds for incidence breakdowns (a design's incidence_by may name them)
BREAKDOWNS = ("sex", "age_band", "race", "index_year")


@dataclass(frozen=True)
class Exposure:
    """One arm: a label and the drug source codes (RxNorm) that put a person in it."""

    name: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class Measurement:
    """A post-index measurement: LOINC codes (``measurement_source_value``) and the window of days after
    the study's index in which the first value counts."""

    codes: tuple[str, ...]
    days: tuple[int, int]


@dataclass(frozen=True)
class StudySpec:
    """A study file, checked: see the module docstring."""

    name: str
    cohort: str
    target: Exposure
    comparator: Exposure
    covariates: Mapping[str, str]
    outcomes: Mapping[str, tuple[str, ...]]
    design: StudyDesign
    exposure_window: tuple[int, int] = (0, 30)
    censor_at_switch: bool = True
    description: str = ""
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    measurements: Mapping[str, Measurement] = field(default_factory=dict)


_RESERVED = {"person_key", "target", "index_date", "follow_up_days"}
_KEYS = {
    "name",
    "description",
    "cohort",
    "target",
    "comparator",
    "exposure_window",
    "censor_at_switch",
    "covariates",
    "outcomes",
    "measurements",
    "design",
}


def _codes(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where} must be a non-empty list of codes")
    return tuple(str(v) for v in value)


def _exposure(raw: Any, where: str) -> Exposure:
    if not isinstance(raw, dict) or set(raw) - {"name", "codes"} or "codes" not in raw:
        raise ConfigError(f"{where} must be a mapping {{name, codes: [...]}}")
    return Exposure(str(raw.get("name", where.rsplit(" ", 1)[-1])), _codes(raw["codes"], f"{where}.codes"))


def spec_from_dict(raw: dict[str, Any], source: str) -> StudySpec:
    """A StudySpec from a parsed study file; ConfigError naming the key and ``source`` for an unknown
    or missing key, a mistyped value, or a design that names a covariate or outcome the file does not
    define."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a study file is a mapping")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown keys {unknown}; known: {sorted(_KEYS)}")
    missing = [
        k for k in ("name", "cohort", "target", "comparator", "covariates", "outcomes", "design") if k not in raw
    ]
    if missing:
        raise ConfigError(f"{source}: the study needs {missing}")
    name = str(raw["name"])
    if not name.replace("_", "").isalnum() or name != name.lower():
        raise ConfigError(f"{source}: name {name!r} must be lower-case letters, digits and _ (it names gold tables)")
    covs = raw["covariates"]
    if not isinstance(covs, dict) or not covs:
        raise ConfigError(f"{source}: covariates must map design names to feature columns, e.g. {{age: age_at_index}}")
    outs = raw["outcomes"]
    if not isinstance(outs, dict):
        raise ConfigError(f"{source}: outcomes must map outcome names to condition codes")
    outcomes = {str(k): _codes(v, f"{source}: outcomes.{k}") for k, v in outs.items()}
    window = raw.get("exposure_window", [0, 30])
    if not isinstance(window, list | tuple) or len(window) != 2 or not all(isinstance(x, int) for x in window):
        raise ConfigError(f"{source}: exposure_window must be [first day, last day] after the cohort index")
    if not isinstance(raw.get("censor_at_switch", True), bool):
        raise ConfigError(f"{source}: censor_at_switch must be true or false")
    if not isinstance(raw["design"], dict):
        raise ConfigError(f"{source}: design must be a mapping")
    fixed = sorted({"treatment", "id_col"} & set(raw["design"]))
    if fixed:
        raise ConfigError(f"{source}: design.{fixed[0]} is set by the study job (target / person_key); remove it")
    design = design_from_dict({**raw["design"], "treatment": "target", "id_col": "person_key"}, source)
    if not design.outcomes:
        raise ConfigError(f"{source}: design.outcomes is empty: name at least one outcome of `outcomes`")
    undefined = [o for o in (*design.outcomes, *design.negative_controls) if o not in outcomes]
    if undefined:
        raise ConfigError(f"{source}: design names outcomes {undefined} that `outcomes` does not define")
    names = {str(k) for k in covs}
    unknown_cov = [c for c in (*design.covariates, *design.modifiers) if c not in names]
    if unknown_cov:
        raise ConfigError(f"{source}: design names covariates {unknown_cov} that `covariates` does not map")
    unknown_by = [c for c in design.incidence_by if c not in names and c not in BREAKDOWNS]
    if unknown_by:
        raise ConfigError(f"{source}: incidence_by {unknown_by}: choose covariates or {list(BREAKDOWNS)}")
    clash = sorted(set(outcomes) & (names | set(BREAKDOWNS) | _RESERVED))
    if clash:
        raise ConfigError(f"{source}: outcome names {clash} are also covariate or column names; rename them")
    meas_raw = raw.get("measurements") or {}
    if not isinstance(meas_raw, dict):
        raise ConfigError(f"{source}: measurements must map names to {{codes: [...], days: [first, last]}}")
    measurements: dict[str, Measurement] = {}
    for k, v in meas_raw.items():
        if not isinstance(v, dict) or set(v) - {"codes", "days"} or "codes" not in v:
            raise ConfigError(f"{source}: measurements.{k} must be a mapping {{codes: [...], days: [first, last]}}")
        days = v.get("days", [0, 365])
        if not isinstance(days, list | tuple) or len(days) != 2 or not all(isinstance(x, int) for x in days):
            raise ConfigError(f"{source}: measurements.{k}.days must be [first day, last day] after the index")
        measurements[str(k)] = Measurement(_codes(v["codes"], f"{source}: measurements.{k}.codes"), (days[0], days[1]))
    taken = sorted(set(measurements) & (names | set(outcomes) | set(BREAKDOWNS) | _RESERVED))
    if taken:
        raise ConfigError(f"{source}: measurement names {taken} are also covariate, outcome or column names")
    med = design.mediation
    if med is not None:
        if med.mediator not in names and med.mediator not in measurements:
            raise ConfigError(
                f"{source}: design.mediation.mediator {med.mediator!r} is neither a covariate nor a measurement "
                f"of the study (covariates {sorted(names)}, measurements {sorted(measurements)})"
            )
        if med.outcome not in outcomes:
            raise ConfigError(f"{source}: design.mediation.outcome {med.outcome!r} is not one of `outcomes`")
        bad = [c for c in med.covariates or () if c not in names]
        if bad:
            raise ConfigError(f"{source}: design.mediation.covariates {bad} are not in `covariates`")
    target = _exposure(raw["target"], f"{source}: target")
    comparator = _exposure(raw["comparator"], f"{source}: comparator")
    both = set(target.codes) & set(comparator.codes)
    if both:
        raise ConfigError(f"{source}: codes {sorted(both)} are in both the target and the comparator")
    return StudySpec(
        name=name,
        cohort=str(raw["cohort"]),
        target=target,
        comparator=comparator,
        covariates={str(k): str(v) for k, v in covs.items()},
        outcomes=outcomes,
        design=design,
        exposure_window=(int(window[0]), int(window[1])),
        censor_at_switch=bool(raw.get("censor_at_switch", True)),
        description=str(raw.get("description") or "").strip(),
        source=source,
        measurements=measurements,
    )


def study_path(name: str) -> Path:
    """``conf/studies/<name>.yaml``, or ``name`` itself when it is a path to a YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        return p
    return resource_dir("conf") / "studies" / f"{name}.yaml"


def study_names() -> list[str]:
    """Every study of ``conf/studies/``, by file name."""
    return sorted(p.stem for p in (resource_dir("conf") / "studies").glob("*.yaml"))


def load_study(name: str) -> StudySpec:
    """The study ``name`` (``conf/studies/<name>.yaml`` or a path), checked (ConfigError)."""
    path = study_path(name)
    if not path.exists():
        raise ConfigError(f"study {name!r}: {path} does not exist; studies are {study_names()}")
    raw = yaml.safe_load(path.read_text())
    spec = spec_from_dict(raw, str(path))
    if path.suffix and path.parent.name == "studies" and spec.name != path.stem:
        raise ConfigError(f"{path}: name is {spec.name!r}; it must be the file's name {path.stem!r}")
    return spec


def _first_exposure(drugs: DataFrame, spec: StudySpec) -> DataFrame:
    arm = F.when(F.col("drug_source_value").isin(*spec.target.codes), 1).when(
        F.col("drug_source_value").isin(*spec.comparator.codes), 0
    )
    d = drugs.select(
        "person_key",
        arm.alias("arm"),
        F.to_date("drug_exposure_start_datetime").alias("start"),
        F.to_date("drug_exposure_end_datetime").alias("stop"),
    ).where(F.col("arm").isNotNull() & F.col("start").isNotNull())
    first = d.groupBy("person_key").agg(F.min("start").alias("start"))
    on_first = d.join(first, ["person_key", "start"]).groupBy("person_key", "start")
    arms = on_first.agg(
        F.min("arm").alias("arm_min"), F.max("arm").alias("arm_max"), F.max("stop").alias("exposure_end")
    )
    # the first start of the other arm's drug after the first day: a switch
    switch = (
        d.withColumnRenamed("start", "_other")
        .join(arms.select("person_key", "start", "arm_min"), "person_key")
        .where((F.col("arm") != F.col("arm_min")) & (F.col("_other") > F.col("start")))
        .groupBy("person_key")
        .agg(F.min("_other").alias("switch_date"))
    )
    return arms.join(switch, "person_key", "left")


def population(
    cohort: DataFrame,
    features: DataFrame,
    drugs: DataFrame,
    conditions: DataFrame,
    persons: DataFrame,
    spec: StudySpec,
    end_of_data: Column,
    measurements: DataFrame | None = None,
) -> tuple[DataFrame, list[dict[str, Any]]]:
    """The study population (see the module docstring) and its attrition (steps with the persons left).

    Inputs: ``cohort`` (person_key, index_date: gold.cohort_<cohort>), ``features`` (person_key and
    the covariate columns: gold.features_<cohort>), ``drugs`` (silver.drug_exposure), ``conditions``
    (silver.condition_occurrence), ``persons`` (person_key, death_date, gender_source_value,
    race_source_value: silver.person), ``end_of_data`` (a date column expression: censoring for all),
    ``measurements`` (silver.measurement: person_key, measurement_source_value, measurement_datetime,
    value_as_number; needed when the study defines measurements). StudyError when the features table
    lacks a covariate column or the study's measurements have no table."""
    missing = [c for c in spec.covariates.values() if c not in features.columns]
    if missing:
        raise StudyError(
            f"study {spec.name}: gold.features_{spec.cohort} has no columns {missing}; "
            "map the study's covariates to feature columns"
        )
    steps: list[dict[str, Any]] = []

    def step(name: str, df: DataFrame) -> None:
        steps.append({"step": name, "persons": df.count()})

    base = cohort.select("person_key", F.col("index_date").alias("cohort_index"))
    step("cohort", base)
    lo, hi = spec.exposure_window
    # cached: the counts below and the outcome join reuse it instead of re-reading silver (the job's
    # runner clears the cache when the job ends)
    exp = (
        base.join(_first_exposure(drugs, spec), "person_key")
        .where(F.datediff("start", "cohort_index").between(lo, hi))
        .cache()
    )
    step(f"first exposure to {spec.target.name} or {spec.comparator.name} {lo}..{hi} days after the index", exp)
    exp = exp.where(F.col("arm_min") == F.col("arm_max"))
    step("not both drugs on the first day", exp)
    people = persons.select(
        "person_key",
        "death_date",
        F.coalesce(F.col("gender_source_value"), F.lit("unknown")).alias("sex"),
        F.coalesce(F.col("race_source_value"), F.lit("unknown")).alias("race"),
    )
    end = F.least(
        F.coalesce(F.col("exposure_end"), end_of_data),
        F.coalesce(F.col("death_date"), end_of_data),
        F.coalesce(F.col("switch_date"), end_of_data) if spec.censor_at_switch else end_of_data,
        end_of_data,
    )
    pop = (
        exp.join(people, "person_key", "left")
        .select(
            "person_key",
            F.col("arm_min").cast("int").alias("target"),
            F.col("start").alias("index_date"),
            F.datediff(end, F.col("start")).alias("follow_up_days"),
            "sex",
            "race",
            F.year("start").alias("index_year"),
        )
        .where(F.col("follow_up_days") >= 1)
    )
    step("time at risk of at least one day", pop)
    feats = features.select("person_key", *[F.col(c).cast("double").alias(n) for n, c in spec.covariates.items()])
    if "age_at_index" in features.columns:
        band = F.floor(F.least(F.col("age_at_index"), F.lit(90.0)) / 10) * 10
        feats = feats.join(
            features.select("person_key", F.concat(band.cast("int").cast("string"), F.lit("s")).alias("age_band")),
            "person_key",
        )
    else:
        feats = feats.withColumn("age_band", F.lit("unknown"))
    pop = pop.join(feats, "person_key").dropna(subset=list(spec.covariates))
    step("every covariate known", pop)
    codes = {c: o for o, cs in spec.outcomes.items() for c in cs}
    code_map = F.create_map(*[x for c, o in codes.items() for x in (F.lit(c), F.lit(o))])
    occ = (
        conditions.select(
            "person_key",
            code_map[F.col("condition_source_value")].alias("_o"),
            F.col("condition_start_date").alias("_d"),
        )
        .where(F.col("_o").isNotNull())
        .join(pop.select("person_key", "index_date"), "person_key")
        .where(F.col("_d") > F.col("index_date"))
        .groupBy("person_key")
        .pivot("_o", sorted(spec.outcomes))
        .agg(F.min(F.datediff("_d", "index_date")))
    )
    pop = pop.join(occ, "person_key", "left")
    cols = []
    for o in sorted(spec.outcomes):
        hit = F.col(o).isNotNull() & (F.col(o) <= F.col("follow_up_days"))
        cols += [
            F.when(hit, F.col(o)).otherwise(F.col("follow_up_days")).cast("int").alias(f"{o}_days"),
            hit.cast("int").alias(f"{o}_event"),
        ]
    keep = [c for c in pop.columns if c not in spec.outcomes]
    pop = pop.select(*keep, *cols)
    if spec.measurements:
        if measurements is None:
            raise StudyError(f"study {spec.name}: measurements {sorted(spec.measurements)} need silver.measurement")
        pop = pop.join(_measured(measurements, pop.select("person_key", "index_date"), spec), "person_key", "left")
    return pop, steps


def _measured(measurements: DataFrame, index: DataFrame, spec: StudySpec) -> DataFrame:
    """person_key and one column per study measurement: the first value within its window after the
    index (ties on the same time: the smallest)."""
    codes = sorted({c for m in spec.measurements.values() for c in m.codes})
    m = (
        measurements.where(F.col("measurement_source_value").isin(*codes) & F.col("value_as_number").isNotNull())
        .select(
            "person_key",
            "measurement_source_value",
            F.col("measurement_datetime").alias("_t"),
            F.col("value_as_number").alias("_v"),
        )
        .join(index, "person_key")
        .withColumn("_day", F.datediff(F.to_date("_t"), "index_date"))
    )
    firsts = []
    for name, meas in spec.measurements.items():
        lo, hi = meas.days
        w = m.where(F.col("measurement_source_value").isin(*meas.codes) & F.col("_day").between(lo, hi))
        first = w.groupBy("person_key").agg(F.min(F.struct("_t", "_v")).alias("_f"))
        firsts.append(first.select("person_key", F.col("_f._v").alias(name)))
    out = firsts[0]
    for f in firsts[1:]:
        out = out.join(f, "person_key", "full")
    return out
