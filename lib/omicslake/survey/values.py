"""One raw export value typed by its dictionary field.

``type_value`` returns a ``Typed``: the canonical value as a string plus the typed column that
fits (number, date, datetime, chosen codes, label), or the rule and reason that keep it out of
silver (``type``: does not parse as its validation; ``choice``: not one of the field's codes;
``range``: outside the validation min/max). Reasons never quote the value itself.

Dates: REDCap exports every date as ``YYYY-MM-DD`` whatever its validation (date_ymd/mdy/dmy
set how the form shows it); an export in the form's own order (``MM-DD-YYYY`` for date_mdy,
``DD-MM-YYYY`` for date_dmy, ``-`` or ``/``) is read too. Datetimes: ``YYYY-MM-DD HH:MM[:SS]``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from omicslake.survey.dictionary import FORM_STATUS, Field

_INT = re.compile(r"^[+-]?\d+$")
_NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_PHONE = re.compile(r"^\(?(\d{3})\)?[-. ]?(\d{3})[-. ]?(\d{4})(?:\s*(?:x|ext\.?)\s*\d+)?$")
_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


@dataclass(frozen=True)
class Typed:
    """A typed value: canonical string, number, date, datetime, chosen codes (checkboxes), label,
    and rule/reason when it is not valid (then the typed columns are None)."""

    value: str | None = None
    number: float | None = None
    date: dt.date | None = None
    datetime: dt.datetime | None = None
    codes: tuple[str, ...] | None = None
    label: str | None = None
    rule: str | None = None
    reason: str | None = None


CHECKBOX_LABELS = {"Checked": "1", "Unchecked": "0"}  # a checkbox column of a label export


def _bad(rule: str, reason: str) -> Typed:
    return Typed(rule=rule, reason=reason)


def parse_date(raw: str, validation: str) -> dt.date | None:
    """A date in ISO form, or in the order of its validation (mdy / dmy); None if invalid."""
    s = raw.strip()
    m = re.fullmatch(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})", s)
    try:
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        m = re.fullmatch(r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})", s)
        if m and validation.endswith("mdy"):
            return dt.date(int(m[3]), int(m[1]), int(m[2]))
        if m and validation.endswith("dmy"):
            return dt.date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None
    return None


def parse_datetime(raw: str, validation: str) -> dt.datetime | None:
    """``<date> HH:MM[:SS]`` with the date as ``parse_date`` reads it; None if invalid."""
    parts = raw.strip().split()
    if len(parts) != 2:
        return None
    d = parse_date(parts[0], validation)
    t = _TIME.fullmatch(parts[1])
    if d is None or t is None:
        return None
    return dt.datetime(d.year, d.month, d.day, int(t[1]), int(t[2]), int(t[3] or 0))


def _num(raw: str, comma: bool = False) -> float | None:
    s = raw.strip().replace(",", ".") if comma else raw.strip()
    return float(s) if _NUM.fullmatch(s) else None


def _fmt(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _bound(text: str, kind: str, validation: str) -> float | dt.date | dt.datetime | None:
    t = text.strip()
    if not t:
        return None
    if kind == "number":
        return _num(t)
    if kind == "date":
        return dt.date.today() if t.lower() == "today" else parse_date(t, validation)
    if kind == "datetime":
        return dt.datetime.now() if t.lower() == "now" else parse_datetime(t, validation)
    return None


def _range(f: Field, x: float | dt.date | dt.datetime, kind: str) -> Typed | None:
    lo, hi = _bound(f.vmin, kind, f.validation), _bound(f.vmax, kind, f.validation)
    if (lo is not None and x < lo) or (hi is not None and x > hi):  # type: ignore[operator]
        return _bad("range", f"{f.name} outside its validation range [{f.vmin or '-inf'}, {f.vmax or 'inf'}]")
    return None


def type_value(f: Field, raw: str) -> Typed:
    """The typed value of a non-empty raw export value of field f (checkboxes: see ``type_checkbox``)."""
    s = raw.strip()
    if f.type in ("radio", "dropdown", "yesno", "truefalse"):
        labels = dict(f.choices)
        if s not in labels:
            # a label export (REDCap's "labels" option) writes the choice's label, not its code:
            # taken back to the code when exactly one choice has that label
            by_label = [c for c, label in f.choices if label.strip() == s]
            if len(by_label) != 1:
                return _bad("choice", f"{f.name}: value is not one of its choice codes {list(labels)} or labels")
            s = by_label[0]
        return Typed(value=s, number=_num(s), label=labels[s], codes=None)
    if f.type in ("calc", "slider"):
        x = _num(s)
        if x is None:
            if f.type == "calc" and "@CALCTEXT" in f.annotation.upper():
                return Typed(value=s)
            return _bad("type", f"{f.name}: a {f.type} value must be a number")
        if f.type == "slider" and not 0 <= x <= 100:
            return _bad("range", f"{f.name}: a slider value lies in [0, 100]")
        return Typed(value=_fmt(x), number=x)
    v = f.validation
    if v.startswith("date_"):
        d = parse_date(s, v)
        if d is None:
            return _bad("type", f"{f.name}: not a valid date ({v})")
        return _range(f, d, "date") or Typed(value=d.isoformat(), date=d)
    if v.startswith("datetime_"):
        t = parse_datetime(s, v)
        if t is None:
            return _bad("type", f"{f.name}: not a valid date and time ({v})")
        return _range(f, t, "datetime") or Typed(value=t.isoformat(sep=" "), datetime=t)
    if v == "integer":
        if not _INT.fullmatch(s):
            return _bad("type", f"{f.name}: not an integer")
        x = float(int(s))
        return _range(f, x, "number") or Typed(value=str(int(s)), number=x)
    if v.startswith("number"):
        x = _num(s, comma="comma" in v)
        if x is None:
            return _bad("type", f"{f.name}: not a number")
        return _range(f, x, "number") or Typed(value=_fmt(x), number=x)
    if v == "email":
        return Typed(value=s) if _EMAIL.fullmatch(s) else _bad("type", f"{f.name}: not an e-mail address")
    if v == "phone":
        m = _PHONE.fullmatch(s)
        return Typed(value=f"({m[1]}) {m[2]}-{m[3]}") if m else _bad("type", f"{f.name}: not a 10-digit phone number")
    if v == "zipcode":
        return Typed(value=s) if _ZIP.fullmatch(s) else _bad("type", f"{f.name}: not a ZIP code")
    if v in ("time", "time_hh_mm_ss"):
        return Typed(value=s) if _TIME.fullmatch(s) else _bad("type", f"{f.name}: not a time of day")
    return Typed(value=raw)  # text without (or with an unchecked) validation: as delivered


def type_checkbox(f: Field, raw: dict[str, str]) -> Typed | None:
    """A checkbox from its ``field___code`` columns (column -> raw value, '' when empty): the chosen
    codes (an empty tuple when shown and nothing ticked); None when every column is empty (not
    collected); rule ``choice`` when a column holds anything but 0 or 1."""
    from omicslake.survey.dictionary import checkbox_column

    vals = {c: raw.get(checkbox_column(f.name, c), "").strip() for c, _ in f.choices}
    vals = {c: CHECKBOX_LABELS.get(v, v) for c, v in vals.items()}  # a label export: Checked / Unchecked
    if all(v == "" for v in vals.values()):
        return None
    if any(v not in ("0", "1") for v in vals.values()):
        return _bad("choice", f"{f.name}: a checkbox column holds something other than 0 or 1")
    codes = tuple(c for c, v in vals.items() if v == "1")
    labels = dict(f.choices)
    return Typed(value=",".join(codes), codes=codes, label=" | ".join(labels[c] for c in codes))


def type_form_status(form: str, raw: str) -> Typed:
    """``<form>_complete``: 0 Incomplete, 1 Unverified, 2 Complete."""
    labels = dict(FORM_STATUS)
    s = raw.strip()
    s = {label: code for code, label in FORM_STATUS}.get(s, s)  # a label export: Incomplete / Unverified / Complete
    if s not in labels:
        return _bad("choice", f"{form}_complete: value is not a form status code (0, 1, 2)")
    return Typed(value=s, number=float(s), label=labels[s])


def type_form_timestamp(form: str, raw: str) -> Typed:
    """``<form>_timestamp`` (when a survey was completed): ``YYYY-MM-DD HH:MM[:SS]`` as a datetime, or
    rule ``type``."""
    t = parse_datetime(raw, "datetime_ymd")
    if t is None:
        return _bad("type", f"{form}_timestamp: not a date and time (YYYY-MM-DD HH:MM:SS)")
    return Typed(value=t.isoformat(sep=" "), datetime=t)
