"""Schema contracts: parsing errors, enforcement and expectations with their actions."""

from __future__ import annotations

from pathlib import Path

import chispa
import pytest
import yaml
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from omicslake.contracts import check, enforce, expression_columns, load_contract, parse_contract
from omicslake.errors import ContractError, ExpectationFailed, IdentifierError

RAW = {
    "table": "silver.lab",
    "keys": ["id"],
    "columns": [
        {"name": "id", "type": "bigint", "nullable": False},
        {"name": "code", "type": "string", "phi": "none"},
        {"name": "value", "type": "double"},
        {"name": "zip", "type": "string", "phi": "quasi"},
    ],
    "expectations": [
        {"name": "value_range", "kind": "range", "column": "value", "min": 3, "max": 20, "action": "quarantine"},
        {"name": "code_known", "kind": "allowed", "column": "code", "values": ["4548-4"], "action": "quarantine"},
        {"name": "value_present", "kind": "not_null", "column": "value", "action": "warn"},
    ],
}


def test_ops_runs_contract_loads_and_parses_types(spark: SparkSession) -> None:
    c = load_contract("ops.runs")
    struct = c.struct()
    assert struct["outputs"].dataType.elementType["rows"].dataType == T.LongType()
    assert struct["run_id"].nullable is False


def test_enforce_casts_and_orders(spark: SparkSession) -> None:
    c = parse_contract(RAW, "silver.lab")
    df = spark.createDataFrame([("02118", "7.5", "4548-4", 1)], "zip string, value string, code string, id int")
    out = df.transform(enforce(c))
    expected = spark.createDataFrame([(1, "4548-4", 7.5, "02118")], c.struct())
    chispa.assert_df_equality(out, expected, ignore_nullable=True)
    assert c.phi_columns("quasi") == ["zip"]


def test_enforce_missing_and_extra_columns(spark: SparkSession) -> None:
    c = parse_contract(RAW, "silver.lab")
    with pytest.raises(ContractError, match=r"silver.lab: column\(s\) \['zip'\] missing"):
        spark.createDataFrame([(1, "x", 1.0)], "id bigint, code string, value double").transform(enforce(c))
    with pytest.raises(ContractError, match=r"\['ssn'\] are not in the contract"):
        spark.createDataFrame(
            [(1, "x", 1.0, "z", "s")], "id bigint, code string, value double, zip string, ssn string"
        ).transform(enforce(c))


def test_check_routes_rows_by_first_failed_rule(spark: SparkSession) -> None:
    c = parse_contract(RAW, "silver.lab")
    df = spark.createDataFrame(
        [(1, "4548-4", 6.0, "a"), (2, "4548-4", 25.0, "b"), (3, "XXXX", 30.0, "c"), (4, "4548-4", None, "d")],
        c.struct(),
    )
    res = check(df, c)
    assert sorted(r.id for r in res.kept.collect()) == [1, 4]  # null value only warns
    q = {r.id: (r.rule, r.reason) for r in res.quarantined.collect()}
    assert q == {2: ("value_range", "value outside [3, 20]"), 3: ("value_range", "value outside [3, 20]")}
    assert res.counts == {"value_range": 2, "code_known": 1, "value_present": 1}


def test_fail_action_raises_with_counts(spark: SparkSession) -> None:
    raw = dict(RAW, expectations=[{"name": "unique_id", "kind": "unique", "columns": ["id"], "action": "fail"}])
    c = parse_contract(raw, "silver.lab")
    df = spark.createDataFrame([(1, "a", 5.0, "z"), (1, "b", 6.0, "z")], c.struct())
    with pytest.raises(ExpectationFailed, match=r"unique_id \(2 rows\).*Nothing was written"):
        check(df, c)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"columns": [{"name": "a"}]}, "needs at least name and type"),
        ({"columns": [{"name": "a", "type": "int", "phi": "secret"}]}, "phi must be one of"),
        ({"columns": [{"name": "a", "type": "int"}], "keys": ["b"]}, "key 'b' is not a column"),
        (
            {"columns": [{"name": "a", "type": "int"}], "expectations": [{"kind": "regex", "column": "a"}]},
            "unknown kind 'regex'",
        ),
        (
            {
                "columns": [{"name": "a", "type": "int"}],
                "expectations": [{"kind": "not_null", "column": "a", "action": "drop"}],
            },
            "action must be",
        ),
        ({"colums": []}, "unknown key 'colums'"),
    ],
)
def test_contract_errors(raw: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ContractError, match=message):
        parse_contract(raw, "silver.x", "schemas/silver/x.yaml")


def test_column_names_are_identifiers() -> None:
    with pytest.raises(IdentifierError):
        parse_contract({"columns": [{"name": "a; drop", "type": "int"}]}, "silver.x")


def test_missing_contract_file(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"no contract for silver.none: .*none.yaml does not exist"):
        load_contract("silver.none", tmp_path)


CONTRACTS = Path(__file__).resolve().parents[1] / "data" / "contracts"


def test_an_expression_naming_an_unknown_column_fails_when_the_contract_is_read() -> None:
    folder = CONTRACTS / "unknown_column"
    with pytest.raises(ContractError) as err:
        load_contract("silver.lab", folder)
    msg = str(err.value)
    assert msg.startswith(f"{folder / 'silver' / 'lab.yaml'}: expectation 'value_ok' reads column 'valeu'"), msg


def test_an_expression_may_read_helpers_functions_literals_and_types() -> None:
    c = load_contract("silver.lab", CONTRACTS / "helper_column")
    assert [h.name for h in c.helpers] == ["_unit_known"] and "_unit_known" not in c.names  # never written
    assert expression_columns(c.expectations[0].expr or "") == ["_unit_known", "unit", "value"]


@pytest.mark.parametrize(
    ("expr", "columns"),
    [
        (
            "measurement_name IS DISTINCT FROM 'bmi' OR value_as_number BETWEEN 8 AND 120",
            ["measurement_name", "value_as_number"],
        ),
        ("coalesce(measurement_name NOT IN ('sbp', 'dbp'), true)", ["measurement_name"]),
        ("size(_parse_errors) = 0", ["_parse_errors"]),
        ("exists(codes, c -> c = 'x') AND s.field > 1", ["codes", "s"]),
        ("`odd name` IS NULL AND d >= current_date() - INTERVAL 3 DAYS", ["odd name", "d"]),
        ("note = 'it''s \"AND\" a, b'", ["note"]),
    ],
)
def test_expression_columns(expr: str, columns: list[str]) -> None:
    assert expression_columns(expr) == columns


def test_every_expectation_of_every_contract_reads_declared_columns() -> None:
    from omicslake.resources import resource_dir

    tables = [
        f"{p.parent.name}.{p.stem}"
        for p in sorted((resource_dir("schemas")).glob("*/*.yaml"))
        if p.parent.name != "vocab"
    ]
    assert len(tables) > 40
    for t in tables:
        load_contract(t)  # parse_contract checks every expectation's columns


def _shipped() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """(file name, parsed YAML) of every file under the shipped schemas/."""
    from omicslake.resources import resource_dir

    return [(p.name, yaml.safe_load(p.read_text()) or {}) for p in sorted(resource_dir("schemas").rglob("*.yaml"))]


TYPES = [
    "string",
    "BIGINT",
    "Integer",
    "decimal(10,2)",
    "decimal(10)",
    "decimal",
    "varchar(10)",
    "timestamp_ntz",
    "array<string>",
    "map<string,string>",
    "map<string, array<double>>",
    "struct<a:int,b:array<double>>",
    "struct<a int, `b c`: string>",
    "struct<>",
    "array<struct<x:date>>",
    "integr",
    "array<string",
    "map<string>",
    "decimal(10,2,3)",
    "string string",
    "int,",
    "char(3,2)",
    "array<>",
    "struct<a:>",
    "map<string,int",
    "",
    "varchar",
    "decimal(x)",
    "array(string)",
    "list<int>",
    "struct<a:int NOT NULL, b:string COMMENT 'the b'>",
    "decimal(38,38)",
    "struct<a:int,>",
    "struct<a:decimal(10,2),>",
    "decimal(40,2)",
    "decimal(5,10)",
    "struct<a:int COMMENT>",
]


def test_type_check_agrees_with_sparks_own_parser_on_every_contract_type(spark: SparkSession) -> None:
    """type_error (run when a contract is read, before any session) says yes exactly where Spark's
    session's SQL parser (parseDataType) does, on every type of the shipped contracts and on made-up
    good and bad ones."""
    from omicslake.contracts import type_error

    shipped = {
        str(c["type"])
        for _, raw in _shipped()
        for key in ("columns", "helpers", "patterns")
        for c in raw.get(key) or []
    }
    assert len(shipped) >= 8, shipped
    parser = spark._jsparkSession.sessionState().sqlParser()  # noqa: SLF001
    for text in sorted(shipped) + TYPES:
        try:
            parser.parseDataType(text)
            spark_ok = True
        except Exception:  # noqa: BLE001 - py4j's ParseException
            spark_ok = False
        assert (type_error(text) is None) == spark_ok, (text, type_error(text))
    assert sum(type_error(t) is None for t in TYPES) == 17  # both kinds are really there


def test_a_column_type_spark_does_not_know_fails_when_the_contract_is_read() -> None:
    raw = {"columns": [{"name": "age", "type": "integr"}]}
    with pytest.raises(
        ContractError, match=r"x.yaml: columns age: type 'integr' is not a Spark SQL type \(unknown type 'integr'\)"
    ):
        parse_contract(raw, "silver.t", "x.yaml")


def test_every_contract_expression_is_valid_spark_sql(spark: SparkSession) -> None:
    """What parse_contract cannot check without a session (it checks the columns an expression
    reads): every ``expr`` of the shipped contracts parses with Spark's SQL parser."""

    parser = spark._jsparkSession.sessionState().sqlParser()  # noqa: SLF001
    exprs = [
        (name, e["expr"]) for name, raw in _shipped() for e in raw.get("expectations") or [] if e.get("kind") == "expr"
    ]
    assert len(exprs) >= 5, exprs
    bad = []
    for name, expr in [*exprs, ("made-up", "age > > AND (")]:
        try:
            parser.parseExpression(expr)
        except Exception:  # noqa: BLE001 - py4j's ParseException
            bad.append(name)
    assert bad == ["made-up"]


@pytest.mark.parametrize(
    "text",
    [
        "double",
        "bigint",
        "decimal(10,2)",
        "array<string>",
        "map<string,array<double>>",
        "struct<a: int, b: string>",
        "timestamp_ntz",
        "`x y` int, b string NOT NULL",
    ],
)
def test_parse_type_is_sparks_parse_as_new_objects_from_one_jvm_call(spark: SparkSession, text: str) -> None:
    import py4j.clientserver

    from omicslake.contracts import parse_type

    first = parse_type(text)
    assert first == T._parse_datatype_string(text)  # noqa: SLF001
    if isinstance(first, T.StructType):
        first.add("added", T.IntegerType())  # a caller changing its copy changes no later result
    calls = []
    send = py4j.clientserver.ClientServerConnection.send_command
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            py4j.clientserver.ClientServerConnection,
            "send_command",
            lambda self, command: calls.append(command) or send(self, command),
        )
        again = parse_type(text)
    assert calls == []  # parsed by Spark once per string: no JVM call the second time
    assert again == T._parse_datatype_string(text)  # noqa: SLF001
    if isinstance(first, T.StructType):  # mutable (atomic types are PySpark's singletons)
        assert again is not first and "added" not in again.fieldNames()
