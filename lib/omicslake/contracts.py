"""Schema contracts: ``schemas/<layer>/<table>.yaml`` loaded, enforced and checked.

A contract lists columns (name, Spark SQL type, nullability, PHI class), keys and
expectations. ``enforce`` casts a DataFrame to the contract's columns and order, and
``check`` evaluates the expectations, splitting rows into kept and quarantined ones.

Expectation kinds: ``not_null`` (column), ``range`` (column, min, max), ``allowed``
(column, values), ``unique`` (columns), ``expr`` (a SQL boolean that must hold).
Actions: ``warn`` (count only), ``quarantine`` (the row goes to quarantine.<table>), ``fail``
(raise ExpectationFailed, so the job writes nothing).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from omicslake.errors import ContractError, ExpectationFailed
from omicslake.io.delta import check_identifier
from omicslake.resources import resource_dir

log = logging.getLogger(__name__)

PHI_CLASSES = ("none", "direct", "quasi", "pseudonym", "date")
Action = Literal["warn", "quarantine", "fail"]


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column: name, Spark SQL type string, whether it may be null, PHI class (one of
    ``PHI_CLASSES``) and description."""

    name: str
    type: str
    nullable: bool = True
    phi: str = "none"
    description: str = ""


@dataclass(frozen=True)
class PatternSpec:
    """Columns whose names come from config (features, PCs): a glob and the type they all have."""

    pattern: str
    type: str
    phi: str = "none"
    description: str = ""


@dataclass(frozen=True)
class Expectation:
    """One expectation of a contract (kinds and actions in the module docstring): its name, kind, action,
    and the fields its kind reads (column, columns, min, max, values, expr)."""

    name: str
    kind: str
    action: Action
    column: str | None = None
    columns: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    values: tuple[Any, ...] = ()
    expr: str | None = None

    def violated(self) -> Column:
        """A boolean column, true where a row breaks this expectation (row-level kinds)."""
        if self.kind == "not_null":
            return F.col(self.column).isNull()  # type: ignore[arg-type]
        if self.kind == "range":
            c = F.col(self.column)  # type: ignore[arg-type]
            bad = F.lit(False)
            if self.min is not None:
                bad = bad | (c < F.lit(self.min))
            if self.max is not None:
                bad = bad | (c > F.lit(self.max))
            return F.coalesce(bad, F.lit(False))
        if self.kind == "allowed":
            c = F.col(self.column)  # type: ignore[arg-type]
            return F.coalesce(~c.isin(list(self.values)), F.lit(False))
        if self.kind == "expr":
            return F.coalesce(~F.expr(self.expr), F.lit(True))  # type: ignore[arg-type]
        if self.kind == "unique":
            w = Window.partitionBy(*self.columns)
            return F.count(F.lit(1)).over(w) > 1
        raise ContractError(f"expectation {self.name}: unknown kind {self.kind!r}")

    def reason(self) -> str:
        """The quarantine reason in words: ``<column> outside [min, max]``, ``<column> not in allowed values``,
        ``<column> is null``, ``duplicate key (<columns>)``, else ``fails <expr>``."""
        if self.kind == "range":
            return f"{self.column} outside [{self.min}, {self.max}]"
        if self.kind == "allowed":
            return f"{self.column} not in allowed values"
        if self.kind == "not_null":
            return f"{self.column} is null"
        if self.kind == "unique":
            return f"duplicate key ({', '.join(self.columns)})"
        return f"fails {self.expr}"


def parse_type(type_string: str) -> T.DataType:
    """A Spark SQL type or schema string (``double``, ``array<string>``, ``a int, b string``) as a
    DataType, parsed by Spark itself, once per string in a process; each call returns new objects.

    Each parse is a JVM call reached through package lookups, and a bare type is first tried as a
    schema, which raises a Java exception that PySpark converts (about 15 ms): a features table's
    ~150 pattern columns were parsed again at every write. The JSON Spark returns is kept."""
    return T._parse_datatype_json_string(_type_json(type_string))  # noqa: SLF001


@functools.lru_cache(maxsize=4096)
def _type_json(type_string: str) -> str:
    return T._parse_datatype_string(type_string).json()  # noqa: SLF001 - pyspark's public-enough parser


@dataclass(frozen=True)
class Contract:
    """A table's contract (``schemas/<layer>/<table>.yaml``): columns in order, keys, expectations,
    description, source file, whether undeclared columns are allowed, partition columns, pattern columns
    and helper columns."""

    table: str
    columns: tuple[ColumnSpec, ...]
    keys: tuple[str, ...] = ()
    expectations: tuple[Expectation, ...] = ()
    description: str = ""
    source: str = ""
    allow_extra: bool = False
    partition_by: tuple[str, ...] = field(default=())
    patterns: tuple[PatternSpec, ...] = ()
    helpers: tuple[ColumnSpec, ...] = ()  # columns the checks read that are never written (see parse_contract)

    def validate(self, schema: T.StructType) -> None:
        """ContractError naming the table and column unless every column of schema is declared
        (by name or pattern) with the declared type, and every declared column is there."""
        import fnmatch

        declared = {c.name: c for c in self.columns}
        expected = {f.name: f.dataType for f in self.struct().fields}
        problems = []
        for f in schema.fields:
            if f.name in declared:
                if f.dataType != expected[f.name]:
                    problems.append(
                        f"column {f.name} is {f.dataType.simpleString()}, the contract says {declared[f.name].type}"
                    )
                continue
            pat = next((p for p in self.patterns if fnmatch.fnmatchcase(f.name, p.pattern)), None)
            if pat is None:
                if not self.allow_extra:
                    problems.append(f"column {f.name} ({f.dataType.simpleString()}) is not in the contract")
            elif f.dataType != parse_type(pat.type):
                problems.append(
                    f"column {f.name} is {f.dataType.simpleString()}, the contract says {pat.type} (pattern {pat.pattern})"
                )
        missing = [n for n in declared if n not in schema.fieldNames()]
        if missing:
            problems.append(f"column(s) {missing} missing")
        if problems:
            raise ContractError(
                f"{self.table}: " + "; ".join(problems) + f" (contract {self.source}): declare the "
                "column there with its type and PHI class, or do not write it"
            )

    @property
    def names(self) -> list[str]:
        """The declared column names, in order."""
        return [c.name for c in self.columns]

    def ddl(self) -> str:
        """The declared columns as a Spark DDL string (``name type, ...``, names backquoted)."""
        return ", ".join(f"`{c.name}` {c.type}" for c in self.columns)

    def struct(self) -> T.StructType:
        """The Spark schema (parsed by Spark itself, so any Spark SQL type string works)."""
        parsed = parse_type(self.ddl())
        assert isinstance(parsed, T.StructType)
        return T.StructType(
            [
                T.StructField(f.name, f.dataType, spec.nullable)
                for f, spec in zip(parsed.fields, self.columns, strict=True)
            ]
        )

    def phi_columns(self, *classes: str) -> list[str]:
        """The declared column names whose PHI class is one of ``classes``, in order."""
        return [c.name for c in self.columns if c.phi in classes]


def contract_path(table: str, schemas_dir: Path | None = None) -> Path | None:
    """``schemas/<layer>/<table>.yaml``, or the template that names it: ``features_{cohort}.yaml``
    is the contract of every ``gold.features_<cohort>``. None when there is neither."""
    layer, _, name = table.partition(".")
    folder = (schemas_dir or resource_dir("schemas")) / layer
    exact = folder / f"{name}.yaml"
    if exact.exists():
        return exact
    for template in sorted(folder.glob("*{*}*.yaml")):
        regex = re.sub(r"\\\{[a-z_]+\\\}", "[A-Za-z0-9_]+", re.escape(template.stem))
        if re.fullmatch(regex, name):
            return template
    return None


def load_contract(table: str, schemas_dir: Path | None = None) -> Contract:
    """The contract of ``<layer>.<table>`` from ``schemas/<layer>/<table>.yaml`` (or its template)."""
    layer, _, name = table.partition(".")
    path = contract_path(table, schemas_dir)
    if path is None:
        raise ContractError(
            f"no contract for {table}: {(schemas_dir or resource_dir('schemas')) / layer / (name + '.yaml')} does not exist"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML ({exc})") from exc
    contract = parse_contract(raw, table, str(path))
    return replace(contract, table=table) if "{" in path.stem else contract


# Spark SQL's primitive type names (lower-cased), as its DDL parser accepts them; decimal, char and
# varchar also take a size in parentheses; array<>, map<> and struct<> nest.
_PRIMITIVES = frozenset(
    "string boolean tinyint byte smallint short int integer bigint long float real double date timestamp "
    "timestamp_ntz timestamp_ltz binary void decimal dec numeric".split()
)
_SIZED = frozenset({"decimal", "dec", "numeric", "char", "character", "varchar"})
_TYPE_TOKEN = re.compile(
    r"\s*(?:(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<quoted>`(?:[^`]|``)+`)|(?P<num>\d+)|(?P<sym>[<>(),:])"
    r"|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"))"
)


def type_error(text: str) -> str | None:
    """Why ``text`` is not a Spark SQL data type in DDL form (``bigint``, ``decimal(10,2)``,
    ``array<string>``, ``map<string,double>``, ``struct<a:int,b:string>``), or None when it is.

    A small recursive-descent parser, not Spark's (a contract is parsed before any session exists);
    a unit test holds it to Spark's own parser on every type of the shipped contracts."""
    tokens: list[tuple[str, str]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _TYPE_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return f"unexpected {text[pos:].strip()[:1]!r} at position {pos}"
        tokens.append((m.lastgroup or "", m.group(m.lastgroup or 0)))
        pos = m.end()
    i = 0

    def peek() -> str:
        return tokens[i][1].lower() if i < len(tokens) else ""

    def take(want: str) -> None:
        nonlocal i
        if peek() != want:
            raise ValueError(f"expected {want!r}, got {peek() or 'the end'!r}")
        i += 1

    def size() -> int:
        nonlocal i
        if i >= len(tokens) or tokens[i][0] != "num":
            raise ValueError(f"expected a size, got {peek() or 'the end'!r}")
        i += 1
        return int(tokens[i - 1][1])

    def dtype() -> None:
        nonlocal i
        word = peek()
        if i >= len(tokens) or tokens[i][0] != "word":
            raise ValueError(f"expected a type, got {word or 'the end'!r}")
        i += 1
        if word == "array":
            take("<")
            dtype()
            take(">")
        elif word == "map":
            take("<")
            dtype()
            take(",")
            dtype()
            take(">")
        elif word == "struct":  # struct<>, struct<a:int,b string NOT NULL COMMENT 'text'>
            take("<")
            while peek() != ">":
                if i >= len(tokens) or tokens[i][0] not in ("word", "quoted"):
                    raise ValueError(f"expected a field name, got {peek() or 'the end'!r}")
                i += 1
                if peek() == ":":
                    i += 1
                dtype()
                if peek() == "not":
                    take("not")
                    take("null")
                if peek() == "comment":
                    i += 1
                    if i >= len(tokens) or tokens[i][0] != "str":
                        raise ValueError(f"expected a quoted comment, got {peek() or 'the end'!r}")
                    i += 1
                if peek() != ",":
                    break
                i += 1
                if peek() == ">":
                    raise ValueError("expected a field name after ',', got '>'")
            take(">")
        elif word in _SIZED and peek() == "(":
            take("(")
            precision = size()
            if peek() == "," and word not in ("char", "character", "varchar"):
                take(",")
                scale = size()
                if scale > precision:
                    raise ValueError(f"decimal scale {scale} is larger than its precision {precision}")
            if word not in ("char", "character", "varchar") and precision > 38:
                raise ValueError(f"decimal precision {precision} is over Spark's 38")
            take(")")
        elif word in ("char", "character", "varchar"):
            raise ValueError(f"{word} needs a length, e.g. {word}(10)")
        elif word not in _PRIMITIVES:
            raise ValueError(f"unknown type {word!r}")

    try:
        dtype()
        if i != len(tokens):
            raise ValueError(f"unexpected {tokens[i][1]!r} after the type")
    except ValueError as exc:
        return str(exc)
    return None


def _check_type(text: str, what: str, source: str) -> None:
    why = type_error(text)
    if why is not None:
        raise ContractError(f"{source}: {what}: type {text!r} is not a Spark SQL type ({why})")


def _column_specs(raw: Any, section: str, source: str) -> list[ColumnSpec]:
    cols = []
    for i, c in enumerate(raw or []):
        if not isinstance(c, dict) or "name" not in c or "type" not in c:
            raise ContractError(f"{source}: {section}[{i}] needs at least name and type")
        extra = set(c) - {"name", "type", "nullable", "phi", "description"}
        if extra:
            raise ContractError(f"{source}: {section}[{i}] ({c['name']}): unknown key {sorted(extra)[0]!r}")
        check_identifier(c["name"], f"column name in {source}")
        phi = c.get("phi", "none")
        if phi not in PHI_CLASSES:
            raise ContractError(f"{source}: column {c['name']}: phi must be one of {PHI_CLASSES}, got {phi!r}")
        _check_type(str(c["type"]), f"{section} {c['name']}", source)
        cols.append(ColumnSpec(c["name"], str(c["type"]), bool(c.get("nullable", True)), phi, c.get("description", "")))
    return cols


# Words of Spark SQL's expression grammar that are not column names (compared upper-cased).
_SQL_WORDS = frozenset(
    "AND OR NOT IS NULL TRUE FALSE IN BETWEEN LIKE ILIKE RLIKE REGEXP DISTINCT FROM CASE WHEN THEN ELSE END AS "
    "INTERVAL YEAR YEARS MONTH MONTHS WEEK WEEKS DAY DAYS HOUR HOURS MINUTE MINUTES SECOND SECONDS "
    "MILLISECOND MILLISECONDS MICROSECOND MICROSECONDS TO ANY SOME ALL EXISTS ESCAPE DIV UNKNOWN".split()
)
_TOKEN = re.compile(
    r"(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")|(?P<quoted>`(?:[^`]|``)+`)|(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?[A-Za-z]*)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<arrow>->)|(?P<other>\S)"
)


def expression_columns(expr: str) -> list[str]:
    """The column names a Spark SQL boolean expression reads, in order of appearance.

    A small tokenizer, not Spark's parser (a contract is parsed before any session exists):
    string literals and numbers are skipped, a word followed by ``(`` is a function, a word after
    ``AS`` (inside ``CAST``) is a type, lambda variables (``x -> ...``) and the SQL words of
    ``_SQL_WORDS`` are not columns, ``a.b`` reads column ``a``, a backticked name is a column.
    An expression using grammar it does not know reports a word as a column: a loud error at
    load time, never a silent pass.
    """
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    lambdas: set[str] = set()
    for i, (kind, _text) in enumerate(tokens):  # x -> ..., (x, y) -> ...
        if kind != "arrow":
            continue
        j = i - 1
        if j >= 0 and tokens[j][0] == "word":
            lambdas.add(tokens[j][1])
        elif j >= 0 and tokens[j][1] == ")":
            while j >= 0 and tokens[j][1] != "(":
                if tokens[j][0] == "word":
                    lambdas.add(tokens[j][1])
                j -= 1
    out: list[str] = []
    for i, (kind, text) in enumerate(tokens):
        prev = tokens[i - 1][1] if i else ""
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if prev == ".":  # a field of a struct column, read through its column
            continue
        if kind == "quoted":
            name = text[1:-1].replace("``", "`")
        elif kind == "word":
            if nxt == "(" or text.upper() in _SQL_WORDS or text in lambdas or prev.upper() == "AS":
                continue
            name = text
        else:
            continue
        if name not in out:
            out.append(name)
    return out


def parse_contract(raw: dict[str, Any], table: str, source: str = "<inline>") -> Contract:
    """A contract from its parsed YAML. Every column type is checked here, when the contract is
    read, to be a Spark SQL type (``type_error``), and every expectation: its kind and action,
    and that every column it reads (``column``, ``columns``, the
    columns of an ``expr``) is a column of the contract or one of its ``helpers`` (columns the
    job adds for the checks and drops before the write). ContractError names the file, the
    expectation and the column."""
    known = {
        "table",
        "description",
        "columns",
        "keys",
        "expectations",
        "allow_extra",
        "partition_by",
        "patterns",
        "helpers",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ContractError(f"{source}: unknown key {unknown[0]!r}; known keys: {sorted(known)}")
    cols = _column_specs(raw.get("columns"), "columns", source)
    helpers = _column_specs(raw.get("helpers"), "helpers", source)
    names = {c.name for c in cols}
    readable = names | {h.name for h in helpers}
    pats = []
    for i, p in enumerate(raw.get("patterns") or []):
        if not isinstance(p, dict) or "pattern" not in p or "type" not in p:
            raise ContractError(f"{source}: patterns[{i}] needs pattern and type")
        phi = p.get("phi", "none")
        if phi not in PHI_CLASSES:
            raise ContractError(f"{source}: pattern {p['pattern']}: phi must be one of {PHI_CLASSES}, got {phi!r}")
        _check_type(str(p["type"]), f"pattern {p['pattern']}", source)
        pats.append(PatternSpec(str(p["pattern"]), str(p["type"]), phi, p.get("description", "")))
    keys = tuple(raw.get("keys") or ())
    for k in keys:
        if k not in names:
            raise ContractError(f"{source}: key {k!r} is not a column")
    exps = []
    for i, e in enumerate(raw.get("expectations") or []):
        kind = e.get("kind")
        action = e.get("action", "quarantine")
        if action not in ("warn", "quarantine", "fail"):
            raise ContractError(f"{source}: expectations[{i}]: action must be warn, quarantine or fail")
        if kind not in ("not_null", "range", "allowed", "unique", "expr"):
            raise ContractError(f"{source}: expectations[{i}]: unknown kind {kind!r}")
        col = e.get("column")
        ename = e.get("name") or f"{kind}_{col or i}"
        if kind == "expr" and not isinstance(e.get("expr"), str):
            raise ContractError(f"{source}: expectation {ename!r}: kind expr needs an expr (a SQL boolean)")
        read = (
            ([col] if col is not None else [])
            + list(e.get("columns") or ())
            + (expression_columns(e["expr"]) if kind == "expr" else [])
        )
        for name in read:
            if name not in readable:
                raise ContractError(
                    f"{source}: expectation {ename!r} reads column {name!r}, which is neither a column nor a helper of "
                    f"the contract; fix the expectation or declare the column (helpers: columns the job adds for the checks)"
                )
        exps.append(
            Expectation(
                name=ename,
                kind=kind,
                action=action,
                column=col,
                columns=tuple(e.get("columns") or ()),
                min=e.get("min"),
                max=e.get("max"),
                values=tuple(e.get("values") or ()),
                expr=e.get("expr"),
            )
        )
    return Contract(
        table=raw.get("table", table),
        columns=tuple(cols),
        keys=keys,
        expectations=tuple(exps),
        description=raw.get("description", ""),
        source=source,
        allow_extra=bool(raw.get("allow_extra", False)),
        partition_by=tuple(raw.get("partition_by") or ()),
        patterns=tuple(pats),
        helpers=tuple(helpers),
    )


def enforce(contract: Contract) -> Any:
    """Transform: cast df to the contract's columns, in order. Missing columns are an error."""

    def _enforce(df: DataFrame) -> DataFrame:
        have = set(df.columns)
        missing = [c for c in contract.names if c not in have]
        if missing:
            raise ContractError(
                f"{contract.table}: column(s) {missing} missing (contract {contract.source}); "
                f"the DataFrame has {sorted(have)}"
            )
        extra = sorted(have - set(contract.names))
        if extra and not contract.allow_extra:
            raise ContractError(
                f"{contract.table}: column(s) {extra} are not in the contract {contract.source}; "
                "add them there (with a PHI class) or drop them"
            )
        struct = contract.struct()
        return df.select(*[F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in struct.fields])

    return _enforce


@dataclass(frozen=True)
class CheckResult:
    """What ``check`` gives: the rows kept, the rows quarantined (with rule and reason), violations per
    expectation name, and the cached flagged rows behind both (``release`` them)."""

    kept: DataFrame
    quarantined: DataFrame  # the contract's columns + rule, reason
    counts: dict[str, int]  # violations per expectation name
    flagged: DataFrame | None = None  # cached rows with their flags: unpersist once kept/quarantined are written

    def release(self) -> None:
        """Unpersist the cached flagged rows (once kept and quarantined are written); nothing to do when the
        contract had no expectations."""
        if self.flagged is not None:
            self.flagged.unpersist()


def check(df: DataFrame, contract: Contract, cache: bool = True) -> CheckResult:
    """Evaluate the contract's expectations on df (already enforced).

    One pass computes a violation flag per expectation; one aggregate counts them. A ``fail``
    expectation with violations raises before anything is written. The flagged rows are cached
    (``release`` them) unless ``cache`` is false: for a df that is itself materialised, whose flags
    are cheaper to recompute than to keep a second copy of.
    """
    exps = list(contract.expectations)
    if not exps:
        empty = (
            df.limit(0).withColumn("rule", F.lit(None).cast("string")).withColumn("reason", F.lit(None).cast("string"))
        )
        return CheckResult(df, empty, {})
    flagged = df.select("*", *[e.violated().alias(f"__x{i}") for i, e in enumerate(exps)])
    if cache:
        flagged = flagged.cache()
    agg = flagged.agg(*[F.sum(F.col(f"__x{i}").cast("long")).alias(f"__x{i}") for i in range(len(exps))]).first()
    counts = {e.name: int(agg[i] or 0) for i, e in enumerate(exps)}  # type: ignore[index]
    failed = {e.name: counts[e.name] for e in exps if e.action == "fail" and counts[e.name]}
    if failed:
        flagged.unpersist()
        raise ExpectationFailed(
            f"{contract.table}: expectations with action 'fail' violated: "
            + ", ".join(f"{n} ({c} rows)" for n, c in failed.items())
            + f"; see {contract.source}. Nothing was written."
        )
    for e in exps:
        if e.action == "warn" and counts[e.name]:
            log.warning("%s: %d rows break %s (%s), kept", contract.table, counts[e.name], e.name, e.reason())
    q_idx = [i for i, e in enumerate(exps) if e.action == "quarantine"]
    any_q = F.lit(False)
    for i in q_idx:
        any_q = any_q | F.col(f"__x{i}")
    # The first quarantine rule a row breaks names it.
    rule = F.lit(None).cast("string")
    reason = F.lit(None).cast("string")
    for i in reversed(q_idx):
        rule = F.when(F.col(f"__x{i}"), F.lit(exps[i].name)).otherwise(rule)
        reason = F.when(F.col(f"__x{i}"), F.lit(exps[i].reason())).otherwise(reason)
    flag_cols = [f"__x{i}" for i in range(len(exps))]
    kept = flagged.where(~any_q).drop(*flag_cols)
    quarantined = flagged.where(any_q).withColumn("rule", rule).withColumn("reason", reason).drop(*flag_cols)
    return CheckResult(kept, quarantined, counts, flagged if cache else None)
