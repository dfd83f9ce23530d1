"""ingest_survey + conform_survey on the REDCap examples in ../shared/data/external/redcap
(REDCapR's test projects): values and types against tests/data/survey/redcap_examples, worked out
by hand; identifiers stop at bronze; bad exports are refused with the lake unchanged."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

pytestmark = pytest.mark.slow  # one module lake: three survey jobs, about three minutes on two cores

CASES = Path(__file__).resolve().parents[1] / "data" / "survey"
PROJECTS = ("simple", "longitudinal", "repeating-instruments")


def _pseudonym(domain: str, value: str) -> str:
    key = os.environ["OMICSLAKE_PSEUDONYM_KEY"].encode()
    return hmac.new(key, f"{domain}\x1f{value}".encode(), hashlib.sha256).hexdigest()


def _copy_projects(external: Path, dest: Path) -> Path:
    for p in PROJECTS:
        shutil.copytree(external / "redcap" / p, dest / p)
        for f in (dest / p).iterdir():
            f.chmod(0o644)
    (dest / "simple" / "linkage.csv").write_text("record_id,patient_id\n1,pat-1\n2,pat-2\n")
    return dest


@pytest.fixture(scope="module")
def survey_lake(
    spark: SparkSession, base_cfg: Config, external: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("survey")
    landing = _copy_projects(external, root / "redcap")
    cfg = base_cfg.replace(**{"lake.root": str(root / "lake"), "jobs.ingest_survey.root": str(landing)})
    runs = {
        "ingest": execute(spark, cfg, "ingest_survey", run_id="s1"),
        "conform": execute(spark, cfg, "conform_survey", run_id="s1"),
        "ingest_again": execute(spark, cfg, "ingest_survey", run_id="s2"),
    }
    return {"cfg": cfg, "runs": runs, "landing": landing}


def test_bronze_keeps_every_row_with_its_file_and_line(spark: SparkSession, survey_lake: dict[str, Any]) -> None:
    lake = Lake(spark, survey_lake["cfg"])
    bronze = lake.read("bronze.survey_records")
    per_project = {r[0]: r[1] for r in bronze.groupBy("project").count().collect()}
    assert per_project == {"simple": 5, "longitudinal": 18, "repeating-instruments": 6}  # rows counted by hand
    lines = sorted(r[0] for r in bronze.where("project = 'simple'").select("_line").collect())
    assert lines == [2, 4, 6, 8, 13]  # quoted addresses and comments span lines
    first = bronze.where("project = 'simple' AND _line = 2").first()
    assert first.raw_values["name_first"] == "Nutmeg" and first.record_id == "1"
    assert survey_lake["runs"]["ingest"].metrics["files_new"] == 7  # 3 dictionaries, 3 exports, 1 linkage
    again = survey_lake["runs"]["ingest_again"].metrics
    assert (again["files_new"], again["files_known"]) == (0, 7)
    assert lake.read("bronze.survey_dictionary").where("project = 'longitudinal'").count() == 95


def _expected_rows() -> list[dict[str, str]]:
    with (CASES / "redcap_examples" / "expected_values.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_values_typed_as_worked_out_by_hand(spark: SparkSession, survey_lake: dict[str, Any]) -> None:
    silver = Lake(spark, survey_lake["cfg"]).read("silver.survey_values")
    got = {
        (r.project, r.participant_key, r.event, r.instrument, r.instance, r.field): r
        for r in silver.collect()  # a few hundred values
    }
    expected = _expected_rows()
    assert len(expected) >= 50
    for e in expected:
        key = (
            e["project"],
            _pseudonym(f"survey:{e['project']}", e["record_id"]),
            e["event"] or None,
            e["instrument"],
            int(e["instance"]),
            e["field"],
        )
        assert key in got, f"no silver value for {e}"
        r = got[key]
        codes = None if not e["value_codes"] else ([] if e["value_codes"] == "[]" else e["value_codes"].split(";"))
        actual = (r.status, r.value, r.value_label, r.value_number, r.value_date, r.value_codes)
        wanted = (
            e["status"],
            e["value"] or None,
            e["value_label"] or None,
            float(e["value_number"]) if e["value_number"] else None,
            dt.date.fromisoformat(e["value_date"]) if e["value_date"] else None,
            codes,
        )
        assert actual == wanted, e


def _dictionary_fields(external: Path, project: str) -> dict[str, tuple[str, str, dict[str, str]]]:
    """field -> (type, validation, choice code -> label), read with Python's csv from the project's own
    dictionary (columns 4, 8 and 6 of REDCap's 18); yes/no and true/false get REDCap's fixed choices."""
    fixed = {"yesno": {"1": "Yes", "0": "No"}, "truefalse": {"1": "True", "0": "False"}}
    with (external / "redcap" / project / "dictionary.csv").open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))[1:]
    out = {}
    for r in rows:
        choices = {}
        if r[3] in ("radio", "dropdown", "checkbox"):
            choices = {c.split(",", 1)[0].strip(): c.split(",", 1)[1].strip() for c in r[5].split("|")}
        out[r[0]] = (r[3], r[7], fixed.get(r[3], choices))
    return out


def test_every_silver_value_has_its_dictionary_type(
    spark: SparkSession, survey_lake: dict[str, Any], external: Path
) -> None:
    """Every value in silver (not a sample): its field type and validation are the dictionary's, and the
    typed column its dictionary entry calls for holds it (dates in value_date, numbers in value_number,
    a choice's label from the dictionary's choices, ticked checkbox codes among its codes)."""
    silver = Lake(spark, survey_lake["cfg"]).read("silver.survey_values").collect()  # a few hundred values
    fields = {p: _dictionary_fields(external, p) for p in PROJECTS}
    checked = set()
    for r in silver:
        if r.field_type in ("form_status", "form_timestamp"):  # REDCap's own columns, not dictionary fields
            continue
        ftype, validation, choices = fields[r.project][r.field]
        assert (r.field_type, r.validation or "") == (ftype, validation), r
        if r.status != "answered":
            assert (r.value, r.value_number, r.value_date, r.value_codes) == (None, None, None, None), r
            continue
        checked.add((ftype, validation))
        if ftype in ("radio", "dropdown", "yesno", "truefalse"):
            assert r.value_label == choices[r.value], r
        elif ftype == "checkbox":
            assert set(r.value_codes) <= set(choices) and r.value == ",".join(r.value_codes), r
            assert r.value_label == " | ".join(choices[c] for c in r.value_codes), r
        elif validation.startswith("date_"):
            assert r.value_date is not None and r.value == r.value_date.isoformat(), r
        elif validation in ("integer", "number") or ftype in ("calc", "slider"):
            assert r.value_number is not None and float(r.value) == r.value_number, r
        else:  # text without a typed validation: as delivered, untyped
            assert (r.value_number, r.value_date, r.value_datetime) == (None, None, None), r
    # every kind of field the three dictionaries use beyond identifiers and notes was seen answered
    assert {("radio", ""), ("dropdown", ""), ("yesno", ""), ("checkbox", ""), ("calc", ""), ("slider", "")} <= checked
    assert {("text", "date_ymd"), ("text", "integer"), ("text", "number"), ("text", "")} <= checked


def test_quarantine_holds_exactly_the_refused_values(spark: SparkSession, survey_lake: dict[str, Any]) -> None:
    lake = Lake(spark, survey_lake["cfg"])
    q = lake.read("quarantine.survey_values").collect()
    with (CASES / "redcap_examples" / "expected_quarantine.csv").open(newline="") as f:
        expected = sorted(
            (_pseudonym(f"survey:{e['project']}", e["record_id"]), e["field"], e["rule"], int(e["line"]))
            for e in csv.DictReader(f)
        )
    got = sorted((r.row_key.split("|")[0], r.row_key.split("|")[-1], r.rule, r.line) for r in q)
    assert got == expected
    sex = next(r for r in q if r.rule == "choice")
    assert sex.reason == "sex: value is not one of its choice codes ['0', '1'] or labels"
    assert Path(sex.source_file).name == "data.csv"
    m = survey_lake["runs"]["conform"].metrics
    assert m["values_in"] == m["values_out"] + m["quarantined"]
    assert lake.read("silver.survey_values").count() == m["values_out"]


def test_identifiers_and_notes_stop_at_bronze(spark: SparkSession, survey_lake: dict[str, Any]) -> None:
    lake = Lake(spark, survey_lake["cfg"])
    silver = lake.read("silver.survey_values")
    fields = {(r[0], r[1]) for r in silver.select("project", "field").distinct().collect()}
    for line in (CASES / "redcap_examples" / "absent_fields.txt").read_text().splitlines():
        project, *absent = line.split()
        leaked = {f for f in absent if (project, f) in fields}
        assert not leaked, f"{project}: {leaked} reached silver"
    # no identifier value anywhere in the survey's silver and quarantine tables
    names = [t for t in lake.names() if t.startswith(("silver.survey", "quarantine.survey"))]
    assert "silver.survey_form_longitudinal_demographics" in names
    for t in names:
        text = " ".join(str(r.asDict()) for r in lake.read(t).collect())
        for value in (
            "Nutmeg",
            "Zharko",
            "nutty@mouse.com",
            "(405) 321-1111",
            "1983-09-23",
            "levon_and_barry",
            "Rose Cottage",
        ):
            assert value not in text, f"{value} in {t}"


def test_wide_table_and_participant_links(spark: SparkSession, survey_lake: dict[str, Any]) -> None:
    lake = Lake(spark, survey_lake["cfg"])
    wide = lake.read("silver.survey_form_longitudinal_demographics")
    assert "first_name" not in wide.columns and "comments" not in wide.columns
    r = wide.where(F.col("participant_key") == _pseudonym("survey:longitudinal", "220")).first()
    assert (r.event, r.instance, r.sex, r.given_birth, r.num_children, r.drink, r.bmi) == (
        "enrollment_arm_1",
        1,
        "0",
        "0",
        None,
        "3,4",
        "27.1",
    )
    bp = lake.read("silver.survey_form_repeating_instruments_bp")
    assert sorted(r.instance for r in bp.collect()) == [1, 1, 2, 3]
    links = {r.participant_key: r.person_key for r in lake.read("silver.survey_participant").collect()}
    assert links[_pseudonym("survey:simple", "1")] == _pseudonym("person", "pat-1")
    assert links[_pseudonym("survey:simple", "3")] is None
    assert len(links) == 5 + 3 + 2


def _ingest_refused(spark: SparkSession, cfg: Config, landing: Path) -> str:
    c = cfg.replace(**{"jobs.ingest_survey.root": str(landing)})
    with pytest.raises(InputError) as e:
        execute(spark, c, "ingest_survey", run_id="bad")
    lake = Lake(spark, c)
    assert not any(lake.exists(t) for t in ("bronze.survey_records", "bronze.survey_dictionary", "ops.ingested_files"))
    return str(e.value)


def test_export_not_matching_its_dictionary_is_refused_lake_unchanged(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    landing = _copy_projects(external, tmp_path / "redcap")
    d = landing / "longitudinal" / "dictionary.csv"
    d.write_text("".join(line for line in d.read_text().splitlines(keepends=True) if not line.startswith("age,")))
    msg = _ingest_refused(spark, cfg, landing)
    assert f"{landing / 'longitudinal' / 'data.csv'}, line 1: column(s) not in the data dictionary: ['age']" in msg


def test_duplicated_record_event_is_refused_naming_the_lines(
    spark: SparkSession, cfg: Config, external: Path, tmp_path: Path
) -> None:
    landing = _copy_projects(external, tmp_path / "redcap")
    data = landing / "repeating-instruments" / "data.csv"
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join([*lines, lines[2]]))  # bp instance 1 of record 1 again, as line 8
    msg = _ingest_refused(spark, cfg, landing)
    assert f"{data}, line 8: the same record / event / repeat instrument / instance as line 3" in msg
