"""Cohort and feature definitions: YAML in ``conf/cohorts/`` parsed into frozen dataclasses.

A cohort file names the index event, inclusion and exclusion criteria, the prior observation
it needs, the outcome and its horizon, the features to compute and the Table 1 rows. Windows
are day offsets relative to the index date, both ends inclusive, ``null`` for open:
``[null, -1]`` is "any time strictly before the index date", ``[1, 365]`` "from the day after
the index to a year after it". Unknown keys and wrong types are ConfigErrors naming the key
and the file (the same checks as the main config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from omicslake.config import build_dataclass
from omicslake.errors import ConfigError
from omicslake.resources import resource_dir

# "scale": a scale score of gold.scale_scores dated by its response (class "<scale>.<subscale>", value the score)
Domain = Literal["visit", "condition", "measurement", "drug", "procedure", "scale"]


@dataclass(frozen=True)
class Events:
    """Which events: a domain and any of source codes (SNOMED, LOINC, RxNorm; for visits the
    encounter code; for scales the scale's name), OMOP concept ids, or classes (visit class, e.g.
    inpatient; measurement name, e.g. hba1c; scale ``<scale>.<subscale>``, e.g. mood.total). Nothing
    listed = every event of the domain. ``value`` = [min, max] (both inclusive, null for open) keeps
    only events whose value lies there (a lab or a scale score over a threshold)."""

    domain: Domain = "condition"
    codes: tuple[str, ...] = ()
    concept_ids: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    value: tuple[float | None, ...] = ()  # [min, max] of the event's value; empty = any


@dataclass(frozen=True)
class IndexRule(Events):
    """The index event: which events (``Events``), ``between`` (first and last ISO day the event's start may
    fall on; empty = any), the first or last such event per person, and its start or end date (``end``:
    a stay's discharge)."""

    between: tuple[str, ...] = ()  # [first day, last day] the index event may fall on
    occurrence: Literal["first", "last"] = "first"
    date: Literal["start", "end"] = "start"  # end: a stay's discharge


@dataclass(frozen=True)
class Criterion(Events):
    """An inclusion or exclusion criterion, ``name`` reported in the attrition counts: at least
    ``min_count`` matching events in ``window`` (days relative to index, both ends inclusive, None for
    open), or, when ``age`` = [min, max] is given, the age at index (years) in that range instead."""

    name: str = ""
    window: tuple[int | None, ...] = (None, -1)
    min_count: int = 1
    age: tuple[float | None, ...] = ()  # [min, max] age at index instead of events


@dataclass(frozen=True)
class Outcome(Events):
    """The outcome: a matching event whose start falls ``window`` = [from, to] days after the index (both
    inclusive); ``to`` is the horizon."""

    window: tuple[int, ...] = (1, 365)


@dataclass(frozen=True)
class CharlsonGroup:
    """One Charlson comorbidity group: its ``weight`` in charlson_index and the SNOMED ``codes`` that
    place a patient in it."""

    weight: int
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OmicsFeatureSpec:
    """Per-person features of one assay (silver.omics_<assay>): the normalised values of chosen
    ``features`` (columns omics_<assay>_<feature>) and ``signatures`` (name -> feature ids: the mean
    of their z-scores over the assay's samples, omics_<assay>_sig_<name>), from the person's latest
    consented, QC-passed sample collected before the index (``date_key`` in the sample metadata,
    within ``window`` days when set); an undated sample is used (as a genome) or left out (``undated``)."""

    features: tuple[str, ...] = ()
    signatures: dict[str, tuple[str, ...]] = field(default_factory=dict)
    date_key: str = "collection_date"  # sample_meta key (list it in jobs.omics_qc.sample_meta_keys) of an ISO date
    window: int | None = None  # days before the index a sample may be collected; None: any time before
    undated: Literal["use", "drop"] = "use"


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a cohort gets (families and column names in ``features.patient``): labs with their
    look-back windows (days) and statistics, condition and Charlson groups, drug classes, visit classes,
    genetics (PCs, PRS), scale scores, omics per assay, and whether events on the index day count."""

    labs: tuple[str, ...] = ()  # measurement names (schemas/vocab/units.yaml)
    lab_windows: tuple[int, ...] = (365,)  # look-back days; each gives its own columns
    lab_stats: tuple[Literal["last", "mean", "min", "max", "slope", "count"], ...] = (
        "last",
        "mean",
        "min",
        "max",
        "slope",
        "count",
    )
    condition_groups: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # flag name -> SNOMED codes (any time before index)
    charlson: dict[str, CharlsonGroup] = field(default_factory=dict)
    drug_classes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class -> RxNorm codes
    drug_window: int = 365
    utilisation_window: int = 365
    visit_classes: tuple[str, ...] = ("inpatient", "outpatient", "emergency")
    genetics: bool = True  # PCs and PRS where a consented genome is linked
    # Also use events dated on the index day (a baseline visit's own measurements, known when the
    # visit ends). Off by default: then only events strictly before the index date count.
    index_day: bool = False
    n_pcs: int = 10
    # Scale scores (gold.scale_scores of linked participants, dated by their response): "<scale>" (its total)
    # or "<scale>.<subscale>"; columns scale_<scale>_<subscale>_<stat>_<W>d over the look-back windows
    scales: tuple[str, ...] = ()
    scale_windows: tuple[int, ...] = (365,)
    scale_stats: tuple[Literal["last", "mean", "min", "max", "count"], ...] = ("last",)
    # a response dated on the index day counts (answered at the index visit, the day is known); false: strictly before
    scale_index_day: bool = True
    omics: dict[str, OmicsFeatureSpec] = field(default_factory=dict)  # assay -> its features


@dataclass(frozen=True)
class CohortSpec:
    """A cohort definition (``conf/cohorts/<name>.yaml``, read by ``load_cohort``): the index rule, outcome,
    prior observation needed (days), inclusion and exclusion criteria, features and Table 1 columns;
    ``name`` names its gold tables."""

    name: str
    index: IndexRule
    outcome: Outcome
    description: str = ""
    prior_observation_days: int = 0
    include: tuple[Criterion, ...] = ()
    exclude: tuple[Criterion, ...] = ()
    features: FeatureSpec = field(default_factory=FeatureSpec)
    table1: tuple[str, ...] = ()  # feature columns for Table 1 (default: demographics, Charlson, last labs)

    @property
    def horizon(self) -> int:
        """The outcome window's last day after index (days): follow-up is counted up to it."""
        return int(self.outcome.window[-1])


def cohort_dir() -> Path:
    """``cohorts`` in the conf folder (``resource_dir("conf")``: ConfigError when there is none); the
    cohorts folder itself need not exist."""
    return resource_dir("conf") / "cohorts"


def _cohort_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    return cohort_dir() / f"{name_or_path}.yaml" if not path.suffix else path


def cohort_sources(name_or_path: str) -> list[Path]:
    """The files a cohort definition is read from: its YAML and the shared feature file it uses."""
    path = _cohort_path(name_or_path)
    raw = yaml.safe_load(path.read_text()) if path.exists() else None
    feats = raw.get("features") if isinstance(raw, dict) else None
    use = feats if isinstance(feats, str) else feats.get("use") if isinstance(feats, dict) else None
    extra = [resource_dir("conf") / "features" / f"{use}.yaml"] if use else []
    return [p for p in [path, *extra] if p.exists()]


def load_cohort(name_or_path: str) -> CohortSpec:
    """``conf/cohorts/<name>.yaml`` or a path; ``features: <name>`` reads ``conf/features/<name>.yaml``
    (``features: {use: <name>, key: value}`` with overrides)."""
    path = _cohort_path(name_or_path)
    if not path.exists():
        known = sorted(p.stem for p in cohort_dir().glob("*.yaml")) if cohort_dir().is_dir() else []
        raise ConfigError(f"cohort {name_or_path!r}: {path} does not exist; known cohorts: {known}")
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    feats = raw.get("features")
    if isinstance(feats, str):
        feats = {"use": feats}
    if isinstance(feats, dict) and "use" in feats:  # a shared file, with this cohort's overrides
        fpath = resource_dir("conf") / "features" / f"{feats['use']}.yaml"
        if not fpath.exists():
            raise ConfigError(f"{path}: features: {feats['use']!r} but {fpath} does not exist")
        raw["features"] = {
            **(yaml.safe_load(fpath.read_text()) or {}),
            **{k: v for k, v in feats.items() if k != "use"},
        }
    spec: CohortSpec = build_dataclass(CohortSpec, raw, str(path))
    _validate(spec, str(path))
    return spec


def _validate(spec: CohortSpec, where: str) -> None:
    if len(spec.index.between) not in (0, 2):
        raise ConfigError(f"{where}: index.between must be [first day, last day], got {list(spec.index.between)}")
    if len(spec.outcome.window) != 2 or spec.outcome.window[0] > spec.outcome.window[1]:
        raise ConfigError(
            f"{where}: outcome.window must be [from, to] days after index, got {list(spec.outcome.window)}"
        )
    for group, crits in (("include", spec.include), ("exclude", spec.exclude)):
        for i, c in enumerate(crits):
            if not c.name:
                raise ConfigError(f"{where}: {group}[{i}] needs a name (it is reported in the attrition counts)")
            if len(c.window) != 2 or len(c.age) not in (0, 2):
                raise ConfigError(f"{where}: {group}[{i}] ({c.name}): window and age are [from, to] pairs")
    for i, e in enumerate([spec.index, spec.outcome, *spec.include, *spec.exclude]):
        if len(e.value) not in (0, 2):
            raise ConfigError(f"{where}: value must be [min, max] (null for an open end), got {list(e.value)} ({i})")
    for assay, o in spec.features.omics.items():
        if not (assay[:1].isalpha() and assay.replace("_", "").isalnum()):
            raise ConfigError(f"{where}: features.omics: assay {assay!r} must be letters, digits and _")
        if not o.features and not o.signatures:
            raise ConfigError(f"{where}: features.omics.{assay} names no features and no signatures")
    for s in spec.features.scales:
        if not s or s.count(".") > 1:
            raise ConfigError(f"{where}: features.scales: {s!r} must be <scale> or <scale>.<subscale>")
    if not spec.name.replace("_", "").isalnum():
        raise ConfigError(f"{where}: name {spec.name!r} must be letters, digits and _ (it names gold tables)")
