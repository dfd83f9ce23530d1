"""De-identification rules on hand-made bronze rows: ZIP3 with HIPAA's restricted prefixes, the keyed
per-patient date shift across every table, and 90+ top-coding of the birth date.

The rows are shaped like bronze.synthea_* (every value a string, plus ``_rescued`` and provenance) and go
through the real builders of ``omicslake.ehr.conform``. The expected values are worked out here: ZIP3
and top-coded dates by hand (the arithmetic is in the comments), date offsets with Python's own ``hmac``
(an implementation independent of the Spark ``sha2`` one in ``ehr.deid``) and ``datetime`` arithmetic.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.contracts import check, load_contract
from omicslake.ehr import conform as C
from omicslake.ehr.deid import SMALL_ZIP3

KEY = b"deid-unit-test-key-0123456789abcdef"
OTHER_KEY = b"another-deid-test-key-fedcba9876543210"
META = "_rescued map<string,string>, _source_file string, _line bigint, _batch_id string"
PATIENTS = ["Id", "BIRTHDATE", "DEATHDATE", "GENDER", "RACE", "ETHNICITY", "ZIP", "STATE"]
ENCOUNTERS = ["Id", "START", "STOP", "PATIENT", "ENCOUNTERCLASS", "CODE", "DESCRIPTION", "TOTAL_CLAIM_COST"]
CONDITIONS = ["START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"]
OBSERVATIONS = ["DATE", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION", "VALUE", "UNITS"]
MEDICATIONS = ["START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION", "DISPENSES"]
PROCEDURES = ["START", "STOP", "PATIENT", "ENCOUNTER", "CODE", "DESCRIPTION"]
CONCEPT_SCHEMA = (
    "concept_id int, concept_name string, domain_id string, vocabulary_id string, concept_class_id string, "
    "standard_concept string, concept_code string, valid_start_date string, valid_end_date string, "
    "invalid_reason string"
)
# HHS, "Guidance Regarding Methods for De-identification of PHI" (2012), section 2.4 / 67 FR 53182, 53233-34:
# the 3-digit ZCTAs of 20,000 people or fewer (2000 census) whose ZIP3 must be reported as 000. Typed here
# from the published list, not copied from the code.
HIPAA_RESTRICTED_ZIP3 = {
    "036",
    "059",
    "063",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
}
TS = "yyyy-MM-dd HH:mm:ss"


def bronze(
    spark: SparkSession, columns: list[str], rows: list[tuple[str | None, ...]], file: str = "t.csv"
) -> DataFrame:
    """Bronze-shaped rows: the given string columns, no rescued values, line = 2, 3, ... (1 is the header)."""
    schema = ", ".join(f"`{c}` string" for c in columns) + ", " + META
    return spark.createDataFrame([(*r, None, file, i + 2, "batch_001") for i, r in enumerate(rows)], schema)


def patient(
    pid: str, birth: str | None, death: str | None = None, zip_code: str | None = "02139"
) -> tuple[str | None, ...]:
    return (pid, birth, death, "F", "white", "nonhispanic", zip_code, "Massachusetts")


def offset(key: bytes, pid: str, max_days: int) -> int:
    """The documented offset, with Python's hmac: the first 32 bits of HMAC-SHA256(key, 'date-shift' US id)
    modulo max_days, plus one, negated: in [-max_days, -1], always into the past."""
    h = int(hmac.new(key, ("date-shift\x1f" + pid).encode(), hashlib.sha256).hexdigest()[:8], 16)
    return -(h % max_days) - 1


def by_line(df: DataFrame, columns: list[str]) -> dict[int, dict[str, Any]]:
    """{_line: {column: value}}, timestamps as 'yyyy-MM-dd HH:mm:ss' text in the session's zone (UTC)."""
    types = dict(df.dtypes)
    sel = [F.date_format(c, TS).alias(c) if types[c] == "timestamp" else F.col(c) for c in columns]
    return {r["_line"]: {c: r[c] for c in columns} for r in df.select("_line", *sel).collect()}


# --- ZIP3 ------------------------------------------------------------------------------------------


def test_restricted_zip3_list_is_hipaas() -> None:
    assert len(SMALL_ZIP3) == 17 and set(SMALL_ZIP3) == HIPAA_RESTRICTED_ZIP3


def test_zip3_restricted_prefixes_become_000_others_keep_three_digits(spark: SparkSession) -> None:
    d = C.Deid(KEY)
    restricted = sorted(HIPAA_RESTRICTED_ZIP3)
    cases: list[tuple[str | None, str | None]] = [(z + "01", "000") for z in restricted]  # 03601 -> 000, ...
    cases += [
        ("02139", "021"),  # Cambridge MA: an ordinary prefix
        ("03701", "037"),  # 037 is next to the restricted 036 but is not restricted itself
        ("05801", "058"),  # 058 next to 059
        ("10001", "100"),
        ("99501", "995"),
        ("00601", "006"),  # Puerto Rico: leading zeros kept
        ("02139-4307", "021"),  # ZIP+4
        ("021394307", "021"),  # ZIP+4 without the dash: the first 5 digits
        ("  02139 ", "021"),  # leading blanks
        ("2139", "021"),  # 4 digits: a ZIP whose leading zero was lost (read as a number) -> 02139
        ("6301", "000"),  # 4 digits -> 06301 -> 063, a restricted prefix
        ("601", "006"),  # 3 digits -> 00601 -> 006
        ("02139.0", "021"),  # a ZIP that went through a spreadsheet as a number
        ("ABCDE", None),  # does not start with 3 to 5 digits: null, never a guess
        ("MA 02139", None),
        ("12", None),
        ("", None),
        (None, None),
    ]
    rows = bronze(spark, PATIENTS, [patient(f"z{i}", "1970-01-01", zip_code=z) for i, (z, _) in enumerate(cases)])
    got = C.person_rows(rows, d).select("_line", "zip3")
    expected = spark.createDataFrame([(i + 2, want) for i, (_, want) in enumerate(cases)], "_line bigint, zip3 string")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


# --- keyed date shift ------------------------------------------------------------------------------

# Three patients, with events in every table. Patient b is born on a leap day and has events around one.
SHIFT_PATIENTS = [
    ("patient-a", "1960-03-15", None),
    ("patient-b", "1948-02-29", "2021-12-31"),
    ("patient-c", "2000-12-31", None),
]
# patient -> (visit start, visit stop, condition start, condition stop (dates), observation time,
#             drug start, drug stop, procedure start, procedure stop)
EVENTS = {
    "patient-a": (
        "2019-05-01T08:30:00Z",
        "2019-05-03T17:00:00Z",
        "2019-05-01",
        "2019-06-30",
        "2019-05-01T09:00:00Z",
        "2019-05-02T10:00:00Z",
        "2019-08-02T10:00:00Z",
        "2019-05-01T11:15:00Z",
        "2019-05-01T12:00:00Z",
    ),
    "patient-b": (
        "2020-02-28T23:59:59Z",
        "2020-03-01T00:00:01Z",
        "2020-02-29",
        None,
        "2020-02-29T06:00:00Z",
        "2020-02-29T07:00:00Z",
        None,
        "2020-02-29T08:00:00Z",
        "2020-02-29T08:30:00Z",
    ),
    "patient-c": (
        "2024-12-31T12:00:00Z",
        "2024-12-31T13:00:00Z",
        "2024-12-31",
        "2025-01-15",
        "2024-12-31T12:30:00Z",
        "2024-12-31T13:00:00Z",
        "2025-01-30T13:00:00Z",
        "2024-12-31T12:45:00Z",
        None,
    ),
}


def shift_tables(spark: SparkSession, d: C.Deid) -> dict[str, dict[int, dict[str, Any]]]:
    """The six builders on the rows above; per table {_line: {date column: value}}. Line i + 2 is
    patient i."""
    pids = [p for p, _, _ in SHIFT_PATIENTS]
    concepts = spark.createDataFrame([], CONCEPT_SCHEMA)
    ev = [EVENTS[p] for p in pids]
    enc = bronze(
        spark,
        ENCOUNTERS,
        [
            (f"enc-{p}", e[0], e[1], p, "ambulatory", "185345009", "visit", "100.0")
            for p, e in zip(pids, ev, strict=True)
        ],
    )
    cond = bronze(
        spark,
        CONDITIONS,
        [(e[2], e[3], p, f"enc-{p}", "44054006", "Diabetes") for p, e in zip(pids, ev, strict=True)],
    )
    obs = bronze(
        spark,
        OBSERVATIONS,
        [(e[4], p, f"enc-{p}", "4548-4", "HbA1c", "6.1", "%") for p, e in zip(pids, ev, strict=True)],
    )
    med = bronze(
        spark,
        MEDICATIONS,
        [(e[5], e[6], p, f"enc-{p}", "860975", "metformin", "30") for p, e in zip(pids, ev, strict=True)],
    )
    proc = bronze(
        spark,
        PROCEDURES,
        [(e[7], e[8], p, f"enc-{p}", "430193006", "counselling") for p, e in zip(pids, ev, strict=True)],
    )
    return {
        "person": by_line(
            C.person_rows(bronze(spark, PATIENTS, [patient(*p) for p in SHIFT_PATIENTS]), d),
            ["birth_date", "death_date"],
        ),
        "visit": by_line(C.visit_rows(enc, d), ["visit_start_datetime", "visit_end_datetime"]),
        "condition": by_line(C.condition_rows(cond, d, concepts), ["condition_start_date", "condition_end_date"]),
        "measurement": by_line(C.measurement_rows(obs, d, concepts, {}), ["measurement_datetime"]),
        "drug": by_line(C.drug_rows(med, d, concepts), ["drug_exposure_start_datetime", "drug_exposure_end_datetime"]),
        "procedure": by_line(C.procedure_rows(proc, d, concepts), ["procedure_datetime", "procedure_end_datetime"]),
    }


def source_dates(pid: str) -> dict[str, dict[str, str | None]]:
    """The same dates as delivered, in the output's text form (a timestamp 'T...Z' becomes
    'yyyy-MM-dd HH:mm:ss')."""
    birth, death = next((b, x) for p, b, x in SHIFT_PATIENTS if p == pid)
    e = [None if v is None else v.replace("T", " ").rstrip("Z") for v in EVENTS[pid]]
    return {
        "person": {"birth_date": birth, "death_date": death},
        "visit": {"visit_start_datetime": e[0], "visit_end_datetime": e[1]},
        "condition": {"condition_start_date": e[2], "condition_end_date": e[3]},
        "measurement": {"measurement_datetime": e[4]},
        "drug": {"drug_exposure_start_datetime": e[5], "drug_exposure_end_datetime": e[6]},
        "procedure": {"procedure_datetime": e[7], "procedure_end_datetime": e[8]},
    }


def plus_days(text: str | None, days: int) -> str | None:
    """A 'yyyy-MM-dd' or 'yyyy-MM-dd HH:mm:ss' text moved by whole days (calendar arithmetic, UTC)."""
    if text is None:
        return None
    if len(text) == 10:
        return (dt.date.fromisoformat(text) + dt.timedelta(days=days)).isoformat()
    return (dt.datetime.fromisoformat(text) + dt.timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")


def as_value(v: Any) -> str | None:
    return None if v is None else str(v)


def test_date_shift_moves_every_date_of_a_patient_by_one_keyed_offset(spark: SparkSession) -> None:
    d = C.Deid(KEY, date_shift=True, max_days=365)
    got = shift_tables(spark, d)
    offsets = {p: offset(KEY, p, 365) for p, _, _ in SHIFT_PATIENTS}
    # The three offsets (worked out with Python's hmac): -359, -151 and -19 days.
    assert offsets == {"patient-a": -359, "patient-b": -151, "patient-c": -19}
    for i, (pid, _, _) in enumerate(SHIFT_PATIENTS):
        for table, cols in source_dates(pid).items():
            out = {c: as_value(v) for c, v in got[table][i + 2].items()}
            # e.g. patient-a's visit 2019-05-01 08:30:00 - 359 days = 2018-05-07 08:30:00 (time of day
            # kept); patient-b's birth 1948-02-29 - 151 days = 1947-10-01
            assert out == {c: plus_days(v, offsets[pid]) for c, v in cols.items()}, (pid, table)
    assert got["person"][3]["birth_date"] == dt.date(1947, 10, 1)
    assert got["visit"][2]["visit_start_datetime"] == "2018-05-07 08:30:00"


def test_date_shift_keeps_every_interval_of_a_patient(spark: SparkSession) -> None:
    """Intervals between a patient's events (in seconds for times, days for dates, and age at each event)
    are those of the source, whatever the offset."""
    got = shift_tables(spark, C.Deid(KEY, date_shift=True, max_days=365))

    def instants(i: int, pid: str, g: dict[str, dict[int, dict[str, Any]]] | None) -> list[dt.datetime]:
        """Every date of the patient as a datetime (dates at midnight), in one fixed order."""
        src = source_dates(pid)
        out = []
        for table, cols in src.items():
            for c in cols:
                v = as_value(g[table][i + 2][c]) if g is not None else src[table][c]
                if v is not None:
                    out.append(dt.datetime.fromisoformat(v))
        return out

    for i, (pid, _, _) in enumerate(SHIFT_PATIENTS):
        before, after = instants(i, pid, None), instants(i, pid, got)
        assert len(before) == len(after) > 5
        assert [b - before[0] for b in before] == [a - after[0] for a in after], pid


def test_date_shift_offsets_range_spread_and_key(spark: SparkSession) -> None:
    """Over 1,000 patients: every offset is the documented one, in [-7, -1] (never 0, never forward), all 7
    values occur, the offsets are deterministic for a key and change with the key."""
    pids = [f"p{i:04d}" for i in range(1000)]
    rows = bronze(spark, PATIENTS, [patient(p, "2000-01-01") for p in pids])

    def offsets(key: bytes, max_days: int) -> dict[int, int]:
        out = C.person_rows(rows, C.Deid(key, date_shift=True, max_days=max_days))
        return {
            r["_line"]: r["d"]
            for r in out.select("_line", F.datediff("birth_date", F.lit("2000-01-01")).alias("d")).collect()
        }

    small = offsets(KEY, 7)
    assert small == {i + 2: offset(KEY, p, 7) for i, p in enumerate(pids)}
    assert set(small.values()) == set(range(-7, 0))  # 0 and forward never, every day back to 7
    wide = offsets(KEY, 365)
    assert wide == {i + 2: offset(KEY, p, 365) for i, p in enumerate(pids)}
    assert all(-365 <= v <= -1 for v in wide.values())
    assert min(wide.values()) < -300 and max(wide.values()) > -65  # the whole range is used
    # different patients generally different: 1,000 draws from 365 values leave about
    # 365 * (1 - exp(-1000/365)) = 341 distinct values
    assert len(set(wide.values())) > 300
    assert offsets(KEY, 365) == wide  # deterministic for a key
    other = offsets(OTHER_KEY, 365)
    assert other == {i + 2: offset(OTHER_KEY, p, 365) for i, p in enumerate(pids)}
    assert sum(other[k] != wide[k] for k in wide) > 985  # a collision has probability 1/365 per patient


def test_no_date_shift_when_off(spark: SparkSession) -> None:
    got = shift_tables(spark, C.Deid(KEY, date_shift=False))
    for i, (pid, _, _) in enumerate(SHIFT_PATIENTS):
        for table, cols in source_dates(pid).items():
            assert {c: as_value(v) for c, v in got[table][i + 2].items()} == cols, (pid, table)


# --- 90+ top-coding --------------------------------------------------------------------------------


def top_coded(spark: SparkSession, d: C.Deid, people: list[tuple[str | None, ...]]) -> DataFrame:
    return C.person_rows(bronze(spark, PATIENTS, people), d).select(
        "_line", "birth_date", "year_of_birth", "age_90_plus", "death_date"
    )


TOP_SCHEMA = "_line bigint, birth_date date, year_of_birth int, age_90_plus boolean, death_date date"


def test_ages_over_89_are_top_coded_to_the_reference_date_minus_90_years(spark: SparkSession) -> None:
    """docs/ehr.md and schemas/silver/person.yaml: ages over 89 at the reference date (at death for a
    decedent) get the birth date 'that date minus 90 years' and age_90_plus; 89-year-olds keep theirs.
    Reference 2025-01-01, so the top-coded birth date of the living is 1935-01-01."""
    d = C.Deid(KEY, reference_date="2025-01-01")
    people = [
        patient("t1", "1935-01-01"),  # 90th birthday on the reference date: 90, top-coded (same date)
        patient("t2", "1935-01-02"),  # turns 90 the day after: 89, kept
        patient("t3", "1934-12-31"),  # 90 years and 1 day: -> 1935-01-01
        patient("t4", "1920-07-04", "2024-03-01"),  # died at 103: age at death counts -> 2024-03-01 - 90 y = 1934-03-01
        patient("t5", "1935-06-30"),  # 89 and a half: kept
        patient("t6", "1960-03-15"),  # 64: kept
        patient("t7", None),  # no birth date: nothing to top-code
        patient("t8", "1930-13-45"),  # does not parse: null (and quarantined as unparseable)
    ]
    expected = spark.createDataFrame(
        [
            (2, dt.date(1935, 1, 1), 1935, True, None),
            (3, dt.date(1935, 1, 2), 1935, False, None),
            (4, dt.date(1935, 1, 1), 1935, True, None),
            (5, dt.date(1934, 3, 1), 1934, True, dt.date(2024, 3, 1)),
            (6, dt.date(1935, 6, 30), 1935, False, None),
            (7, dt.date(1960, 3, 15), 1960, False, None),
            (8, None, None, False, None),
            (9, None, None, False, None),
        ],
        TOP_SCHEMA,
    )
    assert_df_equality(top_coded(spark, d, people), expected, ignore_row_order=True, ignore_nullable=True)


def test_top_coding_at_month_ends_and_leap_days(spark: SparkSession) -> None:
    # Reference 2024-02-29 (a leap day): 90 years before is 1934-02-28 (1934 has no 29 February).
    leap = [patient("l1", "1934-02-28"), patient("l2", "1934-03-01"), patient("l3", "1934-02-27")]
    expected = spark.createDataFrame(
        [
            (2, dt.date(1934, 2, 28), 1934, True, None),  # 90th birthday on 2024-02-28, the day before: 90
            (3, dt.date(1934, 3, 1), 1934, False, None),  # 90 on 2024-03-01, the day after: 89
            (4, dt.date(1934, 2, 28), 1934, True, None),  # 90 years and 2 days: -> 1934-02-28
        ],
        TOP_SCHEMA,
    )
    assert_df_equality(
        top_coded(spark, C.Deid(KEY, reference_date="2024-02-29"), leap),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    # Reference 2026-02-28: someone born on 1936-02-29 has no birthday in 2026; the rule counts the
    # 28th (the earlier, safer side) and top-codes to 1936-02-28. Born 1936-03-01: 89, kept.
    common = [patient("c1", "1936-02-29"), patient("c2", "1936-03-01"), patient("c3", "1936-02-28")]
    expected = spark.createDataFrame(
        [
            (2, dt.date(1936, 2, 28), 1936, True, None),
            (3, dt.date(1936, 3, 1), 1936, False, None),
            (4, dt.date(1936, 2, 28), 1936, True, None),
        ],
        TOP_SCHEMA,
    )
    assert_df_equality(
        top_coded(spark, C.Deid(KEY, reference_date="2026-02-28"), common),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_top_coding_reads_the_shifted_birth_date(spark: SparkSession) -> None:
    """With date_shift on, the age is that of the published (shifted) birth date, so no published birth
    date says 90 or more. old-exact's offset is -162 days, old-minus1's -9, patient-c's -19 (Python's hmac).
    The shift moves a birth back, so it can make a person of 89 as delivered 90 as published."""
    d = C.Deid(KEY, date_shift=True, max_days=365, reference_date="2025-01-01")
    assert (offset(KEY, "old-exact", 365), offset(KEY, "old-minus1", 365), offset(KEY, "patient-c", 365)) == (
        -162,
        -9,
        -19,
    )
    people = [
        patient(
            "old-exact", "1935-06-12"
        ),  # 89 as delivered; - 162 days = 1935-01-01: 90 on the reference date, top-coded
        patient("old-minus1", "1935-01-11"),  # - 9 days = 1935-01-02: 89, kept (shifted)
        patient("patient-c", "1935-01-01"),  # 90 as delivered, - 19 days = 1934-12-13: 90, top-coded
    ]
    expected = spark.createDataFrame(
        [
            (2, dt.date(1935, 1, 1), 1935, True, None),
            (3, dt.date(1935, 1, 2), 1935, False, None),
            (4, dt.date(1935, 1, 1), 1935, True, None),
        ],
        TOP_SCHEMA,
    )
    assert_df_equality(top_coded(spark, d, people), expected, ignore_row_order=True, ignore_nullable=True)


def test_top_coding_measures_a_decedents_age_at_death(spark: SparkSession) -> None:
    # d1: born 1920-01-01, died 1930-06-01 aged 10 (105 at the reference date 2025-01-01): not top-coded
    # (anchoring at the reference date made the birth 1935-01-01, five years after the death).
    # d2: born 1900-03-01, died 1995-07-15 aged 95: top-coded to 1995-07-15 - 90 y = 1905-07-15.
    # d3: born 1905-01-01, died 1994-12-31 aged 89: kept.
    rows = C.person_rows(
        bronze(
            spark,
            PATIENTS,
            [
                patient("d1", "1920-01-01", "1930-06-01"),
                patient("d2", "1900-03-01", "1995-07-15"),
                patient("d3", "1905-01-01", "1994-12-31"),
            ],
        ),
        C.Deid(KEY, reference_date="2025-01-01"),
    )
    got = {r._line: (str(r.birth_date), r.age_90_plus) for r in rows.collect()}
    assert sorted(got.values()) == sorted([("1920-01-01", False), ("1905-07-15", True), ("1905-01-01", False)])
    r = rows.first()
    assert r is not None and r.birth_date <= r.death_date
    result = check(rows, load_contract("silver.person"))
    assert [q.rule for q in result.quarantined.collect()] == []
    result.release()


def test_date_shift_never_moves_a_date_into_the_future(spark: SparkSession) -> None:
    # patient-c's offset is -19 days: a birth yesterday becomes a birth 20 days ago, not one in the
    # future (it was +19 until the offsets went past-only, and this birth was quarantined)
    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    rows = C.person_rows(
        bronze(spark, PATIENTS, [patient("patient-c", yesterday)]), C.Deid(KEY, date_shift=True, max_days=365)
    )
    result = check(rows, load_contract("silver.person"))
    assert [q.rule for q in result.quarantined.collect()] == []  # birth_not_in_future
    result.release()


def test_a_date_shift_of_less_than_one_day_is_a_config_error(spark: SparkSession) -> None:
    import pytest

    from omicslake.ehr.deid import shift_days
    from omicslake.errors import ConfigError

    for days in (0, -3):
        with pytest.raises(ConfigError, match=r"jobs\.conform_ehr\.date_shift_max_days must be at least 1"):
            shift_days(KEY, F.col("PATIENT"), days)
