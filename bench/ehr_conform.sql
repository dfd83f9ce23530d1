-- The single-machine peer of conform_ehr (bench/ehr.py): the same conform of the same Synthea CSV
-- files, written as a DuckDB SQL script the way a data engineer would. Per silver table: type the
-- strings (a value that does not parse is a quarantine reason), keyed pseudonyms, unit conversion
-- (schemas/vocab/units.yaml as a table), concept ids, de-duplication on the natural key (the latest
-- delivery wins: later batch, then later line), the quarantine rules of schemas/silver/<table>.yaml,
-- then every silver table and its quarantine written to Parquet. Lines with the wrong number of
-- fields are DuckDB's rejects (read_csv store_rejects): conform_ehr quarantines them (well_formed).
--
-- bench/ehr_duckdb.py fills in the blanks: the raw tables (CREATE TABLE raw_<table> AS one read_csv
-- per file, with _file, _batch and _line), the unit table's rows, the path of concept.csv, the
-- pseudonym key, the reference date of the 90+ top-coding and the output folder.
-- Differences, on purpose: DuckDB has no HMAC, so a pseudonym is sha256(key || domain || id); the
-- output is Parquet, not Delta (no MERGE into an existing table: every run is a first load).

$raw

CREATE MACRO ts(x) AS coalesce(
    CASE WHEN regexp_full_match(x, '\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z') THEN try_strptime(x, '%Y-%m-%dT%H:%M:%SZ') END,
    CASE WHEN regexp_full_match(x, '\d{4}-\d{2}-\d{2}') THEN try_strptime(x, '%Y-%m-%d') END,
    CASE WHEN regexp_full_match(x, '\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}') THEN try_strptime(x, '%Y-%m-%d %H:%M:%S') END,
    CASE WHEN regexp_matches(x, '^\d{4}-\d{2}-\d{2}T') THEN try_cast(x AS TIMESTAMP) END
);
CREATE MACRO num(x) AS try_cast(x AS DOUBLE);
CREATE MACRO bad(raw, typed) AS (raw IS NOT NULL AND typed IS NULL);
CREATE MACRO pseudo(domain, id) AS sha256('$key' || chr(31) || domain || chr(31) || id);
CREATE MACRO nk4(a, b, c, d) AS concat_ws(chr(31), coalesce(a, ''), coalesce(b, ''), coalesce(c, ''), coalesce(d, ''));
CREATE MACRO ok(x) AS coalesce(x, false);  -- an expectation passes only when true (null breaks it)

CREATE TABLE units (u_code VARCHAR, u_name VARCHAR, u_unit VARCHAR, u_from VARCHAR, u_factor DOUBLE);
INSERT INTO units VALUES $units;
CREATE TABLE concept AS
    SELECT concept_id, concept_name, vocabulary_id, concept_code
    FROM read_csv('$concepts', header = true, all_varchar = false, quote = '"', escape = '"',
                  columns = {'concept_id': 'INTEGER', 'concept_name': 'VARCHAR', 'domain_id': 'VARCHAR',
                             'vocabulary_id': 'VARCHAR', 'concept_class_id': 'VARCHAR', 'standard_concept': 'VARCHAR',
                             'concept_code': 'VARCHAR', 'valid_start_date': 'VARCHAR', 'valid_end_date': 'VARCHAR',
                             'invalid_reason': 'VARCHAR'});

-- person ------------------------------------------------------------------------------------------
CREATE TABLE person_built AS
WITH typed AS (
    SELECT *, CAST(ts(BIRTHDATE) AS DATE) AS _birth, CAST(ts(DEATHDATE) AS DATE) AS _death FROM raw_patients
), aged AS (
    SELECT *, least(DATE '$ref_date', coalesce(_death, DATE '$ref_date')) AS _at FROM typed
)
SELECT
    pseudo('person', Id) AS person_key,
    GENDER AS gender_source_value,
    CASE GENDER WHEN 'M' THEN 8507 WHEN 'F' THEN 8532 END AS gender_concept_id,
    CASE WHEN _at >= _birth + INTERVAL 90 YEAR THEN CAST(_at - INTERVAL 90 YEAR AS DATE) ELSE _birth END AS birth_date,
    coalesce(_at >= _birth + INTERVAL 90 YEAR, false) AS age_90_plus,
    _death AS death_date,
    RACE AS race_source_value,
    ETHNICITY AS ethnicity_source_value,
    CASE WHEN ZIP IS NULL THEN NULL ELSE left(ZIP, 3) END AS zip3,
    STATE AS state,
    bad(BIRTHDATE, _birth) OR bad(DEATHDATE, _death) AS _parse_error,
    Id AS _nk, _file, _batch, _line
FROM aged;

CREATE TABLE person_checked AS
SELECT *,
    row_number() OVER (PARTITION BY _nk ORDER BY _batch DESC, _line DESC, _file DESC) > 1 AS _dup,
    list_filter([
        CASE WHEN _parse_error THEN 'parseable' END,
        CASE WHEN birth_date IS NULL THEN 'birth_date_present' END,
        CASE WHEN NOT ok(birth_date <= current_date) THEN 'birth_not_in_future' END,
        CASE WHEN NOT ok(death_date IS NULL OR death_date >= birth_date) THEN 'death_after_birth' END
    ], lambda x: x IS NOT NULL) AS _broken
FROM person_built;

CREATE TABLE silver_person AS SELECT * EXCLUDE (_dup, _broken, _parse_error) FROM person_checked WHERE NOT _dup AND len(_broken) = 0;
CREATE TABLE silver_death AS SELECT person_key, death_date, _file, _batch, _line FROM silver_person WHERE death_date IS NOT NULL;
CREATE TABLE persons AS SELECT person_key, birth_date AS _birth_date, death_date AS _death_date FROM silver_person;

-- visit_occurrence --------------------------------------------------------------------------------
CREATE TABLE visit_checked AS
WITH built AS (
    SELECT
        pseudo('visit', Id) AS visit_key,
        pseudo('person', PATIENT) AS person_key,
        CASE lower(ENCOUNTERCLASS) WHEN 'inpatient' THEN 9201 WHEN 'outpatient' THEN 9202 WHEN 'ambulatory' THEN 9202
            WHEN 'wellness' THEN 9202 WHEN 'emergency' THEN 9203 WHEN 'urgentcare' THEN 9203 END AS visit_concept_id,
        ENCOUNTERCLASS AS visit_source_value,
        CODE AS visit_source_code,
        ts(START) AS visit_start_datetime,
        ts(STOP) AS visit_end_datetime,
        num(TOTAL_CLAIM_COST) AS total_cost,
        bad(START, ts(START)) OR bad(STOP, ts(STOP)) OR bad(TOTAL_CLAIM_COST, num(TOTAL_CLAIM_COST)) AS _parse_error,
        Id AS _nk, _file, _batch, _line
    FROM raw_encounters
)
SELECT b.*,
    row_number() OVER (PARTITION BY _nk ORDER BY _batch DESC, _line DESC, _file DESC) > 1 AS _dup,
    list_filter([
        CASE WHEN _parse_error THEN 'parseable' END,
        CASE WHEN p.person_key IS NULL THEN 'person_exists' END,
        CASE WHEN visit_start_datetime IS NULL THEN 'start_present' END,
        CASE WHEN NOT ok(_birth_date IS NULL OR CAST(visit_start_datetime AS DATE) >= _birth_date) THEN 'not_before_birth' END,
        CASE WHEN NOT ok(_death_date IS NULL OR CAST(visit_start_datetime AS DATE) <= _death_date) THEN 'not_after_death' END,
        CASE WHEN NOT ok(visit_start_datetime <= current_localtimestamp()) THEN 'not_in_future' END,
        CASE WHEN NOT ok(visit_end_datetime IS NULL OR visit_end_datetime >= visit_start_datetime) THEN 'ends_after_start' END
    ], lambda x: x IS NOT NULL) AS _broken
FROM built b LEFT JOIN persons p USING (person_key);

-- condition_occurrence ----------------------------------------------------------------------------
CREATE TABLE condition_checked AS
WITH built AS (
    SELECT
        pseudo('condition', nk4(PATIENT, ENCOUNTER, CODE, START)) AS condition_key,
        pseudo('person', PATIENT) AS person_key,
        CASE WHEN ENCOUNTER IS NOT NULL THEN pseudo('visit', ENCOUNTER) END AS visit_key,
        coalesce(c.concept_id, 0) AS condition_concept_id,
        CODE AS condition_source_value,
        coalesce(DESCRIPTION, c.concept_name) AS condition_name,
        CAST(ts(START) AS DATE) AS condition_start_date,
        CAST(ts(STOP) AS DATE) AS condition_end_date,
        bad(START, ts(START)) OR bad(STOP, ts(STOP)) AS _parse_error,
        nk4(PATIENT, ENCOUNTER, CODE, START) AS _nk, _file, _batch, _line
    FROM raw_conditions r
    LEFT JOIN concept c ON c.vocabulary_id = 'SNOMED' AND c.concept_code = r.CODE
)
SELECT b.*,
    row_number() OVER (PARTITION BY _nk ORDER BY _batch DESC, _line DESC, _file DESC) > 1 AS _dup,
    list_filter([
        CASE WHEN _parse_error THEN 'parseable' END,
        CASE WHEN p.person_key IS NULL THEN 'person_exists' END,
        CASE WHEN condition_start_date IS NULL THEN 'start_present' END,
        CASE WHEN NOT ok(_birth_date IS NULL OR condition_start_date >= _birth_date) THEN 'not_before_birth' END,
        CASE WHEN NOT ok(_death_date IS NULL OR condition_start_date <= _death_date) THEN 'not_after_death' END,
        CASE WHEN NOT ok(condition_start_date <= current_date) THEN 'not_in_future' END
    ], lambda x: x IS NOT NULL) AS _broken
FROM built b LEFT JOIN persons p USING (person_key);

-- measurement (observations, in the canonical unit) -----------------------------------------------
CREATE TABLE measurement_checked AS
WITH built AS (
    SELECT
        pseudo('measurement', nk4(PATIENT, ENCOUNTER, CODE, DATE)) AS measurement_key,
        pseudo('person', PATIENT) AS person_key,
        CASE WHEN ENCOUNTER IS NOT NULL THEN pseudo('visit', ENCOUNTER) END AS visit_key,
        coalesce(c.concept_id, 0) AS measurement_concept_id,
        CODE AS measurement_source_value,
        coalesce(u_name, DESCRIPTION, c.concept_name) AS measurement_name,
        ts(DATE) AS measurement_datetime,
        CASE WHEN u_factor IS NOT NULL THEN round(num(VALUE) * u_factor, 4) ELSE num(VALUE) END AS value_as_number,
        coalesce(u_unit, UNITS) AS unit_source_value,
        VALUE AS value_source_value,
        UNITS AS unit_as_delivered,
        coalesce(u_factor <> 1.0, false) AS unit_converted,
        (l_code IS NULL OR u_factor IS NOT NULL) AS _unit_known,
        bad(DATE, ts(DATE)) AS _parse_error,
        nk4(PATIENT, ENCOUNTER, CODE, DATE) AS _nk, _file, _batch, _line
    FROM raw_observations r
    LEFT JOIN units u ON u_code = r.CODE AND u_from = r.UNITS
    LEFT JOIN (SELECT DISTINCT u_code AS l_code FROM units) listed ON l_code = r.CODE
    LEFT JOIN concept c ON c.vocabulary_id = 'LOINC' AND c.concept_code = r.CODE
)
SELECT b.*,
    row_number() OVER (PARTITION BY _nk ORDER BY _batch DESC, _line DESC, _file DESC) > 1 AS _dup,
    list_filter([
        CASE WHEN _parse_error THEN 'parseable' END,
        CASE WHEN p.person_key IS NULL THEN 'person_exists' END,
        CASE WHEN measurement_datetime IS NULL THEN 'datetime_present' END,
        CASE WHEN NOT ok(_unit_known) THEN 'unit_known' END,
        CASE WHEN NOT ok(_birth_date IS NULL OR CAST(measurement_datetime AS DATE) >= _birth_date) THEN 'not_before_birth' END,
        CASE WHEN NOT ok(_death_date IS NULL OR CAST(measurement_datetime AS DATE) <= _death_date) THEN 'not_after_death' END,
        CASE WHEN NOT ok(measurement_datetime <= current_localtimestamp()) THEN 'not_in_future' END,
        CASE WHEN NOT ok(measurement_name IS DISTINCT FROM 'hba1c' OR value_as_number BETWEEN 3 AND 20) THEN 'hba1c_range' END,
        CASE WHEN NOT ok(measurement_name IS DISTINCT FROM 'glucose' OR value_as_number BETWEEN 10 AND 1500) THEN 'glucose_range' END,
        CASE WHEN NOT ok(measurement_name IS DISTINCT FROM 'weight' OR value_as_number BETWEEN 0.3 AND 400) THEN 'weight_range' END,
        CASE WHEN NOT ok(measurement_name IS DISTINCT FROM 'height' OR value_as_number BETWEEN 20 AND 260) THEN 'height_range' END,
        CASE WHEN NOT ok(measurement_name IS DISTINCT FROM 'bmi' OR value_as_number BETWEEN 8 AND 120) THEN 'bmi_range' END,
        CASE WHEN NOT ok(coalesce(measurement_name NOT IN ('sbp', 'dbp'), true) OR value_as_number BETWEEN 20 AND 300) THEN 'bp_range' END,
        CASE WHEN NOT ok(measurement_name IS DISTINCT FROM 'creatinine' OR value_as_number BETWEEN 0.05 AND 30) THEN 'creatinine_range' END
    ], lambda x: x IS NOT NULL) AS _broken
FROM built b LEFT JOIN persons p USING (person_key);

-- drug_exposure -----------------------------------------------------------------------------------
CREATE TABLE drug_checked AS
WITH built AS (
    SELECT
        pseudo('drug', nk4(PATIENT, ENCOUNTER, CODE, START)) AS drug_exposure_key,
        pseudo('person', PATIENT) AS person_key,
        CASE WHEN ENCOUNTER IS NOT NULL THEN pseudo('visit', ENCOUNTER) END AS visit_key,
        coalesce(c.concept_id, 0) AS drug_concept_id,
        CODE AS drug_source_value,
        coalesce(DESCRIPTION, c.concept_name) AS drug_name,
        ts(START) AS drug_exposure_start_datetime,
        ts(STOP) AS drug_exposure_end_datetime,
        num(DISPENSES) AS quantity,
        bad(START, ts(START)) OR bad(STOP, ts(STOP)) OR bad(DISPENSES, num(DISPENSES)) AS _parse_error,
        nk4(PATIENT, ENCOUNTER, CODE, START) AS _nk, _file, _batch, _line
    FROM raw_medications r
    LEFT JOIN concept c ON c.vocabulary_id = 'RxNorm' AND c.concept_code = r.CODE
)
SELECT b.*,
    row_number() OVER (PARTITION BY _nk ORDER BY _batch DESC, _line DESC, _file DESC) > 1 AS _dup,
    list_filter([
        CASE WHEN _parse_error THEN 'parseable' END,
        CASE WHEN p.person_key IS NULL THEN 'person_exists' END,
        CASE WHEN drug_exposure_start_datetime IS NULL THEN 'start_present' END,
        CASE WHEN NOT ok(_death_date IS NULL OR CAST(drug_exposure_start_datetime AS DATE) <= _death_date) THEN 'not_after_death' END,
        CASE WHEN NOT ok(drug_exposure_start_datetime <= current_localtimestamp()) THEN 'not_in_future' END
    ], lambda x: x IS NOT NULL) AS _broken
FROM built b LEFT JOIN persons p USING (person_key);

-- procedure_occurrence ----------------------------------------------------------------------------
CREATE TABLE procedure_checked AS
WITH built AS (
    SELECT
        pseudo('procedure', nk4(PATIENT, ENCOUNTER, CODE, START)) AS procedure_key,
        pseudo('person', PATIENT) AS person_key,
        CASE WHEN ENCOUNTER IS NOT NULL THEN pseudo('visit', ENCOUNTER) END AS visit_key,
        coalesce(c.concept_id, 0) AS procedure_concept_id,
        CODE AS procedure_source_value,
        coalesce(DESCRIPTION, c.concept_name) AS procedure_name,
        ts(START) AS procedure_datetime,
        ts(STOP) AS procedure_end_datetime,
        bad(START, ts(START)) OR bad(STOP, ts(STOP)) AS _parse_error,
        nk4(PATIENT, ENCOUNTER, CODE, START) AS _nk, _file, _batch, _line
    FROM raw_procedures r
    LEFT JOIN concept c ON c.vocabulary_id = 'SNOMED' AND c.concept_code = r.CODE
)
SELECT b.*,
    row_number() OVER (PARTITION BY _nk ORDER BY _batch DESC, _line DESC, _file DESC) > 1 AS _dup,
    list_filter([
        CASE WHEN _parse_error THEN 'parseable' END,
        CASE WHEN p.person_key IS NULL THEN 'person_exists' END,
        CASE WHEN procedure_datetime IS NULL THEN 'start_present' END,
        CASE WHEN NOT ok(_death_date IS NULL OR CAST(procedure_datetime AS DATE) <= _death_date) THEN 'not_after_death' END,
        CASE WHEN NOT ok(procedure_datetime <= current_localtimestamp()) THEN 'not_in_future' END
    ], lambda x: x IS NOT NULL) AS _broken
FROM built b LEFT JOIN persons p USING (person_key);

-- write: silver tables and their quarantine, then the counts ----------------------------------------
COPY silver_person TO '$out/person.parquet' (FORMAT parquet);
COPY silver_death TO '$out/death.parquet' (FORMAT parquet);
COPY (SELECT * EXCLUDE (_dup, _broken, _parse_error) FROM visit_checked WHERE NOT _dup AND len(_broken) = 0) TO '$out/visit_occurrence.parquet' (FORMAT parquet);
COPY (SELECT * EXCLUDE (_dup, _broken, _parse_error) FROM condition_checked WHERE NOT _dup AND len(_broken) = 0) TO '$out/condition_occurrence.parquet' (FORMAT parquet);
COPY (SELECT * EXCLUDE (_dup, _broken, _parse_error) FROM measurement_checked WHERE NOT _dup AND len(_broken) = 0) TO '$out/measurement.parquet' (FORMAT parquet);
COPY (SELECT * EXCLUDE (_dup, _broken, _parse_error) FROM drug_checked WHERE NOT _dup AND len(_broken) = 0) TO '$out/drug_exposure.parquet' (FORMAT parquet);
COPY (SELECT * EXCLUDE (_dup, _broken, _parse_error) FROM procedure_checked WHERE NOT _dup AND len(_broken) = 0) TO '$out/procedure_occurrence.parquet' (FORMAT parquet);
COPY (
    SELECT 'person' AS table_name, _nk AS row_key, _broken AS rules, _file, _line FROM person_checked WHERE NOT _dup AND len(_broken) > 0
    UNION ALL SELECT 'visit_occurrence', _nk, _broken, _file, _line FROM visit_checked WHERE NOT _dup AND len(_broken) > 0
    UNION ALL SELECT 'condition_occurrence', _nk, _broken, _file, _line FROM condition_checked WHERE NOT _dup AND len(_broken) > 0
    UNION ALL SELECT 'measurement', _nk, _broken, _file, _line FROM measurement_checked WHERE NOT _dup AND len(_broken) > 0
    UNION ALL SELECT 'drug_exposure', _nk, _broken, _file, _line FROM drug_checked WHERE NOT _dup AND len(_broken) > 0
    UNION ALL SELECT 'procedure_occurrence', _nk, _broken, _file, _line FROM procedure_checked WHERE NOT _dup AND len(_broken) > 0
) TO '$out/quarantine.parquet' (FORMAT parquet);

CREATE TABLE counts AS
SELECT 'person' AS table_name, count(*) FILTER (NOT _dup AND len(_broken) = 0) AS silver,
       count(*) FILTER (NOT _dup AND len(_broken) > 0) AS quarantined, count(*) FILTER (_dup) AS duplicates FROM person_checked
UNION ALL SELECT 'death', (SELECT count(*) FROM silver_death), 0, 0
UNION ALL SELECT 'visit_occurrence', count(*) FILTER (NOT _dup AND len(_broken) = 0), count(*) FILTER (NOT _dup AND len(_broken) > 0), count(*) FILTER (_dup) FROM visit_checked
UNION ALL SELECT 'condition_occurrence', count(*) FILTER (NOT _dup AND len(_broken) = 0), count(*) FILTER (NOT _dup AND len(_broken) > 0), count(*) FILTER (_dup) FROM condition_checked
UNION ALL SELECT 'measurement', count(*) FILTER (NOT _dup AND len(_broken) = 0), count(*) FILTER (NOT _dup AND len(_broken) > 0), count(*) FILTER (_dup) FROM measurement_checked
UNION ALL SELECT 'drug_exposure', count(*) FILTER (NOT _dup AND len(_broken) = 0), count(*) FILTER (NOT _dup AND len(_broken) > 0), count(*) FILTER (_dup) FROM drug_checked
UNION ALL SELECT 'procedure_occurrence', count(*) FILTER (NOT _dup AND len(_broken) = 0), count(*) FILTER (NOT _dup AND len(_broken) > 0), count(*) FILTER (_dup) FROM procedure_checked;
