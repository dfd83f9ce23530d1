"""OMOP CDM bronze rows in Synthea's shape (ehr/omop.py), on tiny hand-made tables: patient ids
through PERSON (the source id, the latest delivery's, else omop-person-<id>), a death from the
earliest DEATH row, a birth date from its parts, the datetime before the date."""

from __future__ import annotations

import chispa
from pyspark.sql import SparkSession

from omicslake.ehr import omop

META = "_source_file string, _file_sha256 string, _line bigint, _batch_id string, _rescued map<string,string>, _run_id string, _ingested_at string"


def _meta(line: int, batch: str = "b1") -> tuple[object, ...]:
    return ("f.csv", "0" * 64, line, batch, None, "r1", "2026-01-01 00:00:00")


def _person(spark: SparkSession):  # type: ignore[no-untyped-def]
    cols = (
        "person_id string, person_source_value string, gender_concept_id string, gender_source_value string, "
        "year_of_birth string, month_of_birth string, day_of_birth string, birth_datetime string, "
        f"race_source_value string, ethnicity_source_value string, {META}"
    )
    return spark.createDataFrame(
        [
            ("1", "MRN-A", "8507", None, "1950", "3", None, None, "white", "not hispanic", *_meta(2)),
            # person 1 again in a later delivery, with a new source id: the later one wins
            ("1", "MRN-A2", "8507", None, "1950", "3", None, None, "white", "not hispanic", *_meta(2, "b2")),
            ("2", " ", "0", "F", "1960", None, None, "1960-07-04 10:00:00", None, None, *_meta(3)),
        ],
        cols,
    )


def test_patients_take_the_source_id_the_earliest_death_and_the_birth_date_from_its_parts(spark: SparkSession) -> None:
    death = spark.createDataFrame(
        [("1", "2020-05-01", None), ("1", "2020-04-30", "2020-04-30 23:00:00")],
        "person_id string, death_date string, death_datetime string",
    )
    got = omop.patients(_person(spark), death).select("Id", "BIRTHDATE", "DEATHDATE", "GENDER", "_batch_id")
    want = spark.createDataFrame(
        [
            ("MRN-A", "1950-03-01", "2020-04-30 23:00:00", "M", "b1"),
            ("MRN-A2", "1950-03-01", "2020-04-30 23:00:00", "M", "b2"),
            # a blank person_source_value is no id: the fallback; birth_datetime before the parts
            ("omop-person-2", "1960-07-04 10:00:00", None, "F", "b1"),
        ],
        "Id string, BIRTHDATE string, DEATHDATE string, GENDER string, _batch_id string",
    )
    chispa.assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    # without a DEATH table nobody has died
    alone = omop.patients(_person(spark)).where("DEATHDATE IS NOT NULL").count()
    assert alone == 0


def test_events_map_person_ids_through_person_and_keep_an_unknown_one_visible(spark: SparkSession) -> None:
    cols = (
        "condition_occurrence_id string, person_id string, visit_occurrence_id string, "
        "condition_source_value string, condition_start_date string, condition_start_datetime string, "
        f"condition_end_date string, condition_end_datetime string, {META}"
    )
    rows = spark.createDataFrame(
        [
            ("c1", "1", "v1", "44054006", "2019-01-02", None, None, None, *_meta(2)),
            ("c2", "9", None, "38341003", "2019-02-03", "2019-02-03 08:30:00", None, None, *_meta(3)),
        ],
        cols,
    )
    want = spark.createDataFrame(
        [
            ("c1", "MRN-A2", "v1", "44054006", "2019-01-02", "SNOMED"),
            # person 9 is not in PERSON: it keeps the omop-person- form, for conform's person-exists rule
            ("c2", "omop-person-9", None, "38341003", "2019-02-03 08:30:00", "SNOMED"),
        ],
        "_ID string, PATIENT string, ENCOUNTER string, CODE string, START string, SYSTEM string",
    )
    got = omop.conditions(rows, _person(spark)).select(*want.columns)
    chispa.assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    # no PERSON table at all: every patient in the fallback form
    bare = {r.PATIENT for r in omop.conditions(rows).collect()}
    assert bare == {"omop-person-1", "omop-person-9"}
    table, shape, needs = omop.AS_SYNTHEA["conditions"]
    assert (table, shape, needs) == ("omop_condition_occurrence", omop.conditions, ("omop_person",))
