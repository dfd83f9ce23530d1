"""Scales as configuration (``conf/scales/<name>.yaml``) and their scoring.

A scale names its items (dictionary fields with numeric codes), their response range, the
reverse-keyed items (scored ``low + high - x``), optional subscales (name -> items), the scoring
rule (``sum`` or ``mean``) and the share of items that may be missing: with more missing the
score is null; with fewer, a sum is prorated (mean of the answered items x number of items), the
usual rule for questionnaires such as the PHQ-9 or the SF-36. ``date_field`` and
``event_date_fields`` say which field dates a response (``survey.dates.response_dates``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from omicslake.errors import ConfigError


@dataclass(frozen=True)
class ScaleSpec:
    """One scale of ``conf/scales`` (each field's comment says what it means)."""

    name: str  # the scale's name (gold tables' scale column)
    items: tuple[str, ...]  # item fields, in order
    range: tuple[float, float]  # lowest and highest response code of every item
    description: str = ""
    project: str | None = None  # only this REDCap project (default: any project with the items)
    reverse: tuple[str, ...] = ()  # reverse-keyed items: scored low + high - x
    subscales: dict[str, tuple[str, ...]] = field(default_factory=dict)  # subscale -> its items
    score: Literal["sum", "mean"] = "sum"  # sum (prorated when items are missing) or mean of the items
    max_missing_share: float = 0.2  # at most this share of a (sub)scale's items missing, else no score
    # The date of a response (gold.scale_scores.response_date; point-in-time features need it): a date or datetime
    # field, or REDCap's <form>_timestamp, at the response's event (its own instance, else the earliest value there)
    date_field: str | None = None
    event_date_fields: dict[str, str] = field(default_factory=dict)  # event -> its dating field (overrides date_field)

    def parts(self) -> dict[str, tuple[str, ...]]:
        """'total' and each subscale -> its items."""
        return {"total": self.items, **self.subscales}


def load_scale(path: Path) -> ScaleSpec:
    """A ScaleSpec from YAML; ConfigError naming the file for unknown keys, wrong types, items of a
    subscale or reverse list that are not items of the scale, or an empty range."""
    from omicslake.config import build_dataclass

    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    spec: ScaleSpec = build_dataclass(ScaleSpec, raw, str(path))
    items = set(spec.items)
    if len(items) != len(spec.items) or len(items) < 2:
        raise ConfigError(f"{path}: items must be at least two distinct fields")
    for what, names in [("reverse", spec.reverse), *[(f"subscales.{k}", v) for k, v in spec.subscales.items()]]:
        unknown = sorted(set(names) - items)
        if unknown:
            raise ConfigError(f"{path}: {what} names {unknown}, which are not items of the scale")
    if not spec.range[0] < spec.range[1]:
        raise ConfigError(f"{path}: range must be [lowest, highest] with lowest < highest")
    if not 0 <= spec.max_missing_share < 1:
        raise ConfigError(f"{path}: max_missing_share must lie in [0, 1)")
    return spec


def load_scales(folder: Path) -> list[ScaleSpec]:
    """Every ``*.yaml`` scale of a folder, in name order; names must be unique."""
    specs = [load_scale(p) for p in sorted(folder.glob("*.yaml"))]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{folder}: two scales share a name: {sorted(names)}")
    return specs


def keyed(x: np.ndarray, spec: ScaleSpec) -> np.ndarray:
    """The n x k item matrix (columns in ``spec.items`` order) with reverse-keyed items reversed
    and values outside the response range set missing (NaN)."""
    x = np.array(x, dtype=float)
    lo, hi = spec.range
    x[(x < lo) | (x > hi)] = np.nan
    for i, item in enumerate(spec.items):
        if item in spec.reverse:
            x[:, i] = lo + hi - x[:, i]
    return x


def score(x: np.ndarray, spec: ScaleSpec, items: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(scores, items answered) of a keyed n x k matrix (``keyed``) over ``items``: null (NaN) when
    more than ``max_missing_share`` of them are missing; a sum is prorated."""
    idx = [spec.items.index(i) for i in items]
    sub = x[:, idx]
    answered = (~np.isnan(sub)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(answered[:, None] > 0, sub, 0.0), axis=1) if sub.size else np.full(len(x), np.nan)
    ok = (len(items) - answered) <= spec.max_missing_share * len(items) + 1e-9
    ok &= answered > 0
    s = mean * len(items) if spec.score == "sum" else mean
    return np.where(ok, s, np.nan), answered
