"""One REDCap export row (a record at an event, or one instance of a repeating instrument) to
long value rows, typed by the dictionary and with branching logic evaluated.

Which instruments a row carries: a repeating instrument's row carries that instrument only;
any other row carries every instrument that is not repeating in the export and that has its
``<form>_complete`` status or any value (a ticked checkbox counts, an unticked one does not:
REDCap writes 0 for every checkbox of a form that exists at the event).

Per field of a carried instrument (identifier, notes, file and descriptive fields are never
emitted: they stop at bronze):

- ``not_shown``: its branching logic is false for the row, so it is not missing;
- ``missing``: shown and empty (rule ``required`` when the dictionary says Required);
- ``answered``: a valid typed value; else the rule and reason of ``values.type_value``.

A carried instrument's ``<form>_timestamp`` (REDCap's survey completion time, in exports of
survey-enabled instruments) becomes a ``form_timestamp`` row (``value_datetime``); empty and
``[not completed]`` give none. Every row carries the record's data access group
(``redcap_data_access_group``: the site; null without one).

A branching logic the evaluator does not support (``Field.logic_error``), or one that names
another event's field, counts as shown (status ``missing`` / ``answered``); ``logic_unknown`` in
the row says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omicslake.survey import logic
from omicslake.survey.dictionary import Dictionary, Field, checkbox_column
from omicslake.survey.values import Typed, type_checkbox, type_form_status, type_form_timestamp, type_value

# Column order of the tuples value_rows returns (silver.survey_values before pseudonymisation).
VALUE_COLUMNS = (
    "record_id",
    "event",
    "instrument",
    "instance",
    "field",
    "field_type",
    "validation",
    "status",
    "value",
    "value_label",
    "value_number",
    "value_date",
    "value_datetime",
    "value_codes",
    "logic_unknown",
    "rule",
    "reason",
    "raw_value",
    "site",
)


def _raw(row: Mapping[str, str | None], column: str) -> str:
    v = row.get(column)
    return "" if v is None else str(v)


def _lookup(d: Dictionary, row: Mapping[str, str | None], event: str | None):  # type: ignore[no-untyped-def]
    fields = d.by_name()

    def value(ref: logic.Ref) -> str:
        if ref.event is not None and ref.event != event:
            raise logic.LogicError(f"reference to event {ref.event!r} from another event")
        f = fields.get(ref.field)
        if ref.code is not None:
            return _raw(row, checkbox_column(ref.field, ref.code))
        if f is not None and f.type == "checkbox":  # [cb] without a code: no single value
            raise logic.LogicError(f"checkbox {ref.field!r} referenced without a code")
        return _raw(row, ref.field).strip()

    return value


def shown(f: Field, d: Dictionary, row: Mapping[str, str | None], event: str | None) -> bool | None:
    """Whether f's branching logic shows it in this row; None when it cannot be evaluated."""
    if not f.branching:
        return True
    if f.logic_tree is None:
        return None
    try:
        return logic.evaluate(f.logic_tree, _lookup(d, row, event))
    except logic.LogicError:
        return None


def carried_forms(d: Dictionary, row: Mapping[str, str | None], repeating: set[str]) -> list[str]:
    """The instruments one export row carries (module docstring)."""
    rep = _raw(row, "redcap_repeat_instrument").strip()
    if rep:
        return [rep]
    out = []
    for form in d.forms:
        if form in repeating:
            continue
        has = _raw(row, f"{form}_complete").strip() != ""
        for f in d.form_fields(form):
            if has or f.name == d.record_id:
                break
            if f.type == "checkbox":
                has = any(_raw(row, c).strip() == "1" for c in f.columns)
            else:
                has = any(_raw(row, c).strip() != "" for c in f.columns)
        if has:
            out.append(form)
    return out


def value_rows(
    d: Dictionary, row: Mapping[str, str | None], repeating: set[str] | frozenset[str] = frozenset()
) -> list[tuple[Any, ...]]:
    """The long rows (``VALUE_COLUMNS``) of one export row (column -> raw value); ``repeating``:
    the instruments that are repeating in this export (they appear in redcap_repeat_instrument)."""
    record = _raw(row, d.record_id).strip()
    event = _raw(row, "redcap_event_name").strip() or None
    inst_raw = _raw(row, "redcap_repeat_instance").strip()
    instance = int(inst_raw) if inst_raw.isdigit() else 1
    site = _raw(row, "redcap_data_access_group").strip() or None
    out: list[tuple[Any, ...]] = []

    def emit(
        form: str,
        f_name: str,
        ftype: str,
        validation: str,
        status: str,
        t: Typed,
        unknown: bool,
        raw: str | None = None,
    ) -> None:
        out.append(
            (
                record,
                event,
                form,
                instance,
                f_name,
                ftype,
                validation or None,
                status,
                t.value,
                t.label,
                t.number,
                t.date,
                t.datetime,
                list(t.codes) if t.codes is not None else None,
                unknown,
                t.rule,
                t.reason,
                raw if t.rule is not None else None,
                site,
            )
        )

    for form in carried_forms(d, row, set(repeating)):
        for f in d.form_fields(form):
            if f.stops_at_bronze or f.name == d.record_id:
                continue
            show = shown(f, d, row, event)
            unknown = show is None
            if show is False:
                emit(form, f.name, f.type, f.validation, "not_shown", Typed(), unknown)
                continue
            if f.type == "checkbox":
                t: Typed | None = type_checkbox(f, {c: _raw(row, c) for c in f.columns})
                empty = t is None
            else:
                raw = _raw(row, f.name)
                empty = raw.strip() == ""
                t = None if empty else type_value(f, raw)
            if empty or t is None:
                missing = (
                    Typed(rule="required", reason=f"{f.name}: required field is empty although shown")
                    if f.required
                    else Typed()
                )
                emit(form, f.name, f.type, f.validation, "missing", missing, unknown)
            else:
                shown_raw = ",".join(_raw(row, c) for c in f.columns) if f.type == "checkbox" else _raw(row, f.name)
                emit(
                    form,
                    f.name,
                    f.type,
                    f.validation,
                    "answered" if t.rule is None else "invalid",
                    t,
                    unknown,
                    shown_raw,
                )
        status_raw = _raw(row, f"{form}_complete").strip()
        if status_raw:
            t = type_form_status(form, status_raw)
            emit(
                form,
                f"{form}_complete",
                "form_status",
                "",
                "answered" if t.rule is None else "invalid",
                t,
                False,
                status_raw,
            )
        stamp_raw = _raw(row, f"{form}_timestamp").strip()
        if stamp_raw and stamp_raw != "[not completed]":
            t = type_form_timestamp(form, stamp_raw)
            emit(
                form,
                f"{form}_timestamp",
                "form_timestamp",
                "",
                "answered" if t.rule is None else "invalid",
                t,
                False,
                stamp_raw,
            )
    return out


def row_key(record: str, event: str | None, repeat_instrument: str | None, instance: str | None) -> str:
    """The key of an export row, for duplicate checks and messages (never logged)."""
    return "\x1f".join([record, event or "", repeat_instrument or "", instance or ""])
