"""REDCap data dictionaries (the 18-column CSV REDCap writes) and the export columns they imply.

``parse`` turns the dictionary's rows into ``Field``s; ``export_columns`` says which columns a
records export of the project has (checkboxes as ``field___code``, one ``<form>_complete`` per
instrument); ``check_header`` compares an export's header with them. Errors name the file and
line. Headers are read by position: the UI writes "Variable / Field Name", the API ``field_name``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from omicslake.errors import InputError
from omicslake.survey import logic

# The 18 columns, by position, as snake_case names (bronze.survey_dictionary's columns).
COLUMNS = (
    "field_name",
    "form_name",
    "section_header",
    "field_type",
    "field_label",
    "choices",
    "field_note",
    "validation",
    "validation_min",
    "validation_max",
    "identifier",
    "branching_logic",
    "required",
    "custom_alignment",
    "question_number",
    "matrix_group",
    "matrix_ranking",
    "field_annotation",
)
FIELD_TYPES = (
    "text",
    "notes",
    "dropdown",
    "radio",
    "checkbox",
    "yesno",
    "truefalse",
    "calc",
    "slider",
    "file",
    "descriptive",
    "sql",
)
# Export columns that are keys or bookkeeping, not fields of the dictionary.
SPECIAL_COLUMNS = (
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
    "redcap_survey_identifier",
)
FORM_STATUS = (("0", "Incomplete"), ("1", "Unverified"), ("2", "Complete"))
YESNO = (("1", "Yes"), ("0", "No"))
TRUEFALSE = (("1", "True"), ("0", "False"))


@dataclass(frozen=True)
class Field:
    """One dictionary row: name, form, type, label, choices (code, label), validation type and
    its min/max, identifier and required flags, branching logic (text and parsed tree, or the
    error that kept it from parsing) and the dictionary line it came from."""

    name: str
    form: str
    type: str
    label: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    validation: str = ""
    vmin: str = ""
    vmax: str = ""
    identifier: bool = False
    required: bool = False
    branching: str = ""
    logic_tree: logic.Node | None = None
    logic_error: str | None = None
    annotation: str = ""
    line: int = 0

    @property
    def columns(self) -> tuple[str, ...]:
        """The export columns of this field."""
        if self.type == "descriptive":
            return ()
        if self.type == "checkbox":
            return tuple(checkbox_column(self.name, c) for c, _ in self.choices)
        return (self.name,)

    @property
    def stops_at_bronze(self) -> bool:
        """Direct identifiers (``Identifier? = y``), free-text notes and file uploads never leave bronze."""
        return self.identifier or self.type in ("notes", "file", "descriptive")

    def choice_codes(self) -> tuple[str, ...]:
        """The choice codes, in dictionary order."""
        return tuple(c for c, _ in self.choices)


@dataclass(frozen=True)
class Dictionary:
    """A parsed dictionary: its fields in order, the record-id field (the first), the forms in
    order and where it came from."""

    fields: tuple[Field, ...]
    source: str = ""
    forms: tuple[str, ...] = field(default=())

    @property
    def record_id(self) -> str:
        """The record id field: the dictionary's first field."""
        return self.fields[0].name

    def by_name(self) -> dict[str, Field]:
        """Field name -> Field."""
        return {f.name: f for f in self.fields}

    def form_fields(self, form: str) -> list[Field]:
        """The fields of one instrument, in dictionary order."""
        return [f for f in self.fields if f.form == form]


def checkbox_column(name: str, code: str) -> str:
    """The export column of one checkbox choice: ``name___code`` (code lower case, ``-`` and ``.`` as ``_``)."""
    return f"{name}___{re.sub(r'[^a-z0-9_]', '_', code.lower())}"


def parse_choices(text: str, ftype: str) -> tuple[tuple[str, str], ...]:
    """``"0, Female | 1, Male"`` -> (("0", "Female"), ("1", "Male")); yesno / truefalse get their fixed
    codes; other types none."""
    if ftype == "yesno":
        return YESNO
    if ftype == "truefalse":
        return TRUEFALSE
    if ftype not in ("radio", "dropdown", "checkbox") or not text.strip():
        return ()
    out = []
    for part in text.split("|"):
        code, sep, label = part.strip().partition(",")
        if not sep:
            raise ValueError(f"choice {part.strip()!r} has no 'code, label' comma")
        out.append((code.strip(), label.strip()))
    return tuple(out)


def parse(rows: Sequence[Sequence[str]], source: str, first_line: int = 2) -> Dictionary:
    """A Dictionary from the data rows of a dictionary CSV (header excluded); ``first_line`` is
    the file line of the first row. InputError names the file and line of a malformed row."""
    fields: list[Field] = []
    seen: set[str] = set()
    forms: list[str] = []
    for i, row in enumerate(rows):
        line = first_line + i
        if len(row) != len(COLUMNS):
            raise InputError(f"{source}, line {line}: {len(row)} columns, a REDCap data dictionary has {len(COLUMNS)}")
        r = dict(zip(COLUMNS, (v.strip() for v in row), strict=True))
        name, ftype = r["field_name"], r["field_type"].lower()
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InputError(f"{source}, line {line}: field name {name!r} is not a REDCap variable name")
        if name in seen:
            raise InputError(f"{source}, line {line}: field {name!r} is defined twice")
        if ftype not in FIELD_TYPES:
            raise InputError(f"{source}, line {line}: field {name!r} has unknown type {ftype!r} (known: {FIELD_TYPES})")
        try:
            choices = parse_choices(r["choices"], ftype)
        except ValueError as exc:
            raise InputError(f"{source}, line {line}: field {name!r}: {exc}") from exc
        tree, error = None, None
        if r["branching_logic"]:
            try:
                tree = logic.parse(r["branching_logic"])
            except logic.LogicError as exc:
                error = str(exc)
        seen.add(name)
        if r["form_name"] not in forms:
            forms.append(r["form_name"])
        fields.append(
            Field(
                name=name,
                form=r["form_name"],
                type=ftype,
                label=r["field_label"],
                choices=choices,
                validation=r["validation"].lower() if ftype in ("text", "slider") else "",
                vmin=r["validation_min"],
                vmax=r["validation_max"],
                identifier=r["identifier"].lower() == "y",
                required=r["required"].lower() == "y",
                branching=r["branching_logic"],
                logic_tree=tree,
                logic_error=error,
                annotation=r["field_annotation"],
                line=line,
            )
        )
    if not fields:
        raise InputError(f"{source}: the data dictionary has no fields")
    for f in fields:  # every branching reference must name a field of the dictionary
        if f.logic_tree is not None:
            unknown = sorted(logic.fields_of(f.logic_tree) - seen)
            if unknown:
                raise InputError(
                    f"{source}, line {f.line}: branching logic of {f.name!r} names unknown field(s) {unknown}"
                )
    return Dictionary(tuple(fields), source, tuple(forms))


def read(text: str, source: str) -> Dictionary:
    """A Dictionary from the whole text of a dictionary CSV (header first)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or len(rows[0]) != len(COLUMNS):
        raise InputError(
            f"{source}, line 1: a REDCap data dictionary has {len(COLUMNS)} columns "
            f"('Variable / Field Name', 'Form Name', ...), this header has {len(rows[0]) if rows else 0}"
        )
    return parse([r for r in rows[1:] if any(v.strip() for v in r)], source)


def export_columns(d: Dictionary) -> tuple[list[str], list[str]]:
    """(required, optional) export columns: every field's columns are required; the
    ``<form>_complete`` columns, ``<form>_timestamp`` and ``SPECIAL_COLUMNS`` may be there."""
    required = [c for f in d.fields for c in f.columns]
    optional = [f"{form}_complete" for form in d.forms] + [f"{form}_timestamp" for form in d.forms]
    return required, optional + list(SPECIAL_COLUMNS)


def check_header(d: Dictionary, header: Sequence[str], source: str) -> None:
    """InputError (file, line 1) unless the export header has every dictionary field and nothing else."""
    required, optional = export_columns(d)
    if not header or header[0] != d.record_id:
        raise InputError(
            f"{source}, line 1: the first column is {header[0] if header else None!r}, the dictionary's record id "
            f"field is {d.record_id!r}; is this export of the project of {d.source}?"
        )
    dupes = sorted({h for h in header if list(header).count(h) > 1})
    if dupes:
        raise InputError(f"{source}, line 1: column(s) {dupes} appear twice")
    unknown = [h for h in header if h not in required and h not in optional]
    missing = [c for c in required if c not in header]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"column(s) not in the data dictionary: {unknown[:10]}")
        if missing:
            parts.append(f"dictionary field column(s) missing from the export: {missing[:10]}")
        raise InputError(
            f"{source}, line 1: " + "; ".join(parts) + f" (dictionary {d.source}). Export the records and the "
            "dictionary of the same project at the same time (all fields), or land the matching dictionary"
        )
