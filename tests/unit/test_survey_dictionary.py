"""REDCap dictionaries, branching logic, value typing and export checks on hand-made inputs
(tests/data/survey/<case>/); every expected value is written by hand in the case's CSV."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from omicslake.errors import InputError
from omicslake.survey import dictionary as D
from omicslake.survey import logic
from omicslake.survey.records import VALUE_COLUMNS, value_rows
from omicslake.survey.values import type_value

DATA = Path(__file__).resolve().parents[1] / "data" / "survey"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _dictionary(case: str) -> D.Dictionary:
    path = DATA / case / "dictionary.csv"
    return D.read(path.read_text(), str(path))


@pytest.mark.parametrize("case", _csv(DATA / "logic" / "cases.csv"), ids=lambda c: f"{c['logic']}|{c['values']}")
def test_branching_logic(case: dict[str, str]) -> None:
    values = dict(kv.split("=", 1) for kv in case["values"].split(";") if kv)

    def value(ref: logic.Ref) -> str:
        name = f"{ref.field}___{ref.code}" if ref.code else ref.field
        return values.get(name, "")

    if case["expected"] == "error":
        with pytest.raises(logic.LogicError, match="branching logic"):
            logic.evaluate(logic.parse(case["logic"]), value)
        return
    assert logic.evaluate(logic.parse(case["logic"]), value) is (case["expected"] == "true")


def test_logic_is_never_python_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def refuse(*_a: object) -> None:
        raise AssertionError("eval called")

    monkeypatch.setattr(builtins, "eval", refuse)
    assert logic.evaluate(
        logic.parse("[a] = '1' and ([b] > 2 or not([c] = ''))"), lambda r: {"a": "1", "b": "3"}.get(r.field, "")
    )


@pytest.mark.parametrize("case", _csv(DATA / "typing" / "cases.csv"), ids=lambda c: f"{c['field']}={c['raw']}")
def test_value_typed_by_its_dictionary_field(case: dict[str, str]) -> None:
    f = _dictionary("typing").by_name()[case["field"]]
    t = type_value(f, case["raw"])
    expected = (
        case["value"] or None,
        case["value_label"] or None,
        float(case["value_number"]) if case["value_number"] else None,
        dt.date.fromisoformat(case["value_date"]) if case["value_date"] else None,
        dt.datetime.fromisoformat(case["value_datetime"]) if case["value_datetime"] else None,
        case["rule"] or None,
    )
    assert (t.value, t.label, t.number, t.date, t.datetime, t.rule) == expected
    if t.rule:
        assert t.reason and case["field"] in t.reason
        assert case["raw"].strip() not in t.reason  # the reason never quotes the value


def test_dictionary_reads_choices_identifiers_and_logic() -> None:
    d = _dictionary("branching")
    f = d.by_name()
    assert d.record_id == "record_id"
    assert d.forms == ("screening", "visit")
    assert f["sex"].choices == (("0", "Female"), ("1", "Male"))
    assert f["symptoms"].columns == ("symptoms___1", "symptoms___2", "symptoms___3")
    assert (f["initials"].stops_at_bronze, f["notes"].stops_at_bronze, f["sex"].stops_at_bronze) == (True, True, False)
    assert f["weeks"].required and not f["sex"].required
    assert f["pregnant"].logic_tree == logic.Cmp("=", logic.Ref("sex"), logic.Lit("0"))
    assert _dictionary("typing").by_name()["col"].choices[-1] == ("99", "Other, please say")


def test_branching_missing_not_shown_and_unchecked_rows() -> None:
    d = _dictionary("branching")
    with (DATA / "branching" / "data.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = []
    for row in rows:
        for v in value_rows(d, row, {"visit"}):
            r = dict(zip(VALUE_COLUMNS, v, strict=True))
            got.append(
                (
                    r["record_id"],
                    r["instrument"],
                    str(r["instance"]),
                    r["field"],
                    r["status"],
                    r["value"] or "",
                    r["rule"] or "",
                )
            )
    expected = [tuple(r.values()) for r in _csv(DATA / "branching" / "expected.csv")]
    assert sorted(got) == sorted(expected)
    by = {(g[0], g[3]): g for g in got}
    # shown with nothing ticked is an answer (no codes), not a missing value and not "not shown"
    sym2 = next(
        dict(zip(VALUE_COLUMNS, v, strict=True)) for v in value_rows(d, rows[3], {"visit"}) if v[4] == "symptoms"
    )
    assert (sym2["status"], sym2["value_codes"]) == ("answered", [])
    assert by[("1", "symptoms")][4] == "not_shown"
    assert not {g[3] for g in got} & {"initials", "notes", "record_id"}


def test_export_with_fields_not_in_the_dictionary_is_refused() -> None:
    from omicslake.jobs.ingest_survey import check_export

    path = DATA / "mismatch" / "data.csv"
    with pytest.raises(InputError) as e:
        check_export(_dictionary("mismatch"), path)
    msg = str(e.value)
    assert f"{path}, line 1" in msg
    assert "not in the data dictionary: ['age']" in msg
    assert "missing from the export: ['race___3']" in msg


def test_duplicate_record_event_key_is_refused_with_both_lines() -> None:
    from omicslake.jobs.ingest_survey import check_export

    path = DATA / "duplicate" / "data.csv"
    with pytest.raises(InputError, match=rf"{path}, line 4: the same record / event .* as line 2"):
        check_export(_dictionary("duplicate"), path)


def test_malformed_dictionaries_name_file_and_line(tmp_path: Path) -> None:
    text = (DATA / "duplicate" / "dictionary.csv").read_text()
    bad_type = text + "q2,f,,matrixx,Q2,,,,,,,,,,,,,\n"
    with pytest.raises(InputError, match=r"d.csv, line 4: field 'q2' has unknown type 'matrixx'"):
        D.read(bad_type, "d.csv")
    twice = text + "q1,f,,text,Q1 again,,,,,,,,,,,,,\n"
    with pytest.raises(InputError, match=r"d.csv, line 4: field 'q1' is defined twice"):
        D.read(twice, "d.csv")
    unknown_ref = text + "q3,f,,text,Q3,,,,,,,[nope] = '1',,,,,,\n"
    with pytest.raises(InputError, match=r"d.csv, line 4: branching logic of 'q3' names unknown field\(s\) \['nope'\]"):
        D.read(unknown_ref, "d.csv")
    with pytest.raises(InputError, match=r"d.csv, line 1: a REDCap data dictionary has 18 columns"):
        D.read("field_name,form_name\nx,y\n", "d.csv")


def test_unsupported_logic_is_kept_as_an_error_and_counts_as_shown() -> None:
    text = (
        DATA / "duplicate" / "dictionary.csv"
    ).read_text() + "q2,f,,text,Q2,,,,,,,\"datediff([q1],'today','y') > 1\",,,,,,\n"
    d = D.read(text, "d.csv")
    q2 = d.by_name()["q2"]
    assert q2.logic_tree is None and "datediff" in (q2.logic_error or "")
    rows = {v[4]: v for v in value_rows(d, {"record_id": "1", "q1": "5", "f_complete": "2"})}
    assert rows["q2"][VALUE_COLUMNS.index("status")] == "missing"
    assert rows["q2"][VALUE_COLUMNS.index("logic_unknown")] is True


def test_a_label_export_types_like_the_raw_one() -> None:
    """REDCap's "labels" export writes Checked/Unchecked in checkbox columns and Incomplete/Unverified/
    Complete for form status: the same codes as the raw export (worked out by hand)."""
    from omicslake.survey.values import type_checkbox, type_form_status

    f = _dictionary("branching").by_name()["symptoms"]
    raw = {"symptoms___1": "1", "symptoms___2": "0", "symptoms___3": "1"}
    labelled = {"symptoms___1": "Checked", "symptoms___2": "Unchecked", "symptoms___3": "Checked"}
    a, b = type_checkbox(f, raw), type_checkbox(f, labelled)
    assert a is not None and b is not None
    assert (b.value, b.codes, b.label) == (a.value, a.codes, a.label) == ("1,3", ("1", "3"), "Nausea | Other")
    bad = type_checkbox(f, {"symptoms___1": "checked", "symptoms___2": "0", "symptoms___3": "0"})
    assert bad is not None and bad.rule == "choice"
    assert [type_form_status("screening", s).value for s in ("Complete", "2", "Unverified", "Incomplete")] == [
        "2",
        "2",
        "1",
        "0",
    ]
    assert type_form_status("screening", "Done").rule == "choice"


def test_form_timestamp_and_data_access_group_reach_the_value_rows() -> None:
    """``<form>_timestamp`` gives a form_timestamp row with its datetime ("[not completed]" and empty give
    none, a malformed one is a type error); every row carries the record's data access group."""
    import datetime as dt

    d = D.read((DATA / "duplicate" / "dictionary.csv").read_text(), "d.csv")
    row = {
        "record_id": "1",
        "q1": "5",
        "f_complete": "2",
        "f_timestamp": "2021-03-04 17:05:09",
        "redcap_data_access_group": "site_b",
    }
    got = [dict(zip(VALUE_COLUMNS, v, strict=True)) for v in value_rows(d, row)]
    stamp = [r for r in got if r["field"] == "f_timestamp"]
    assert [(r["field_type"], r["status"], r["value"], r["value_datetime"]) for r in stamp] == [
        ("form_timestamp", "answered", "2021-03-04 17:05:09", dt.datetime(2021, 3, 4, 17, 5, 9))
    ]
    assert {r["site"] for r in got} == {"site_b"}
    for raw, want in (("[not completed]", []), ("", []), ("04/03/2021 5pm", [("invalid", "type")])):
        rows = [dict(zip(VALUE_COLUMNS, v, strict=True)) for v in value_rows(d, {**row, "f_timestamp": raw})]
        assert [(r["status"], r["rule"]) for r in rows if r["field"] == "f_timestamp"] == want
    no_dag = {k: v for k, v in row.items() if k != "redcap_data_access_group"}
    assert {dict(zip(VALUE_COLUMNS, v, strict=True))["site"] for v in value_rows(d, no_dag)} == {None}
