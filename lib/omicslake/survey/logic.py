"""A small, safe evaluator of REDCap branching logic ("Show field only if...").

The logic is tokenised and parsed into a tree by a recursive-descent parser; nothing is ever
handed to Python's ``eval``. Supported: ``[field]``, ``[checkbox(code)]``, ``[event][field]``
(the row's own event only), string literals in single or double quotes, numbers, the comparisons
``= == <> != < > <= >=``, ``and`` / ``or`` / ``not`` (any case, also ``&&`` / ``||``) and
parentheses. Functions (``datediff``, ``sum``...), smart variables and arithmetic are not
supported: ``parse`` raises ``LogicError`` naming what it met.

Comparison follows REDCap: when both sides are numbers they compare as numbers, else as strings;
an empty value equals ``''`` and makes an ordering comparison (``<``, ``>``...) false.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from omicslake.errors import InputError


class LogicError(InputError):
    """Branching logic that the evaluator does not support or that is malformed."""


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<ref>\[[A-Za-z0-9_]+(?:\([A-Za-z0-9_-]+\))?\])
  | (?P<str>'[^']*'|"[^"]*")
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<op><>|!=|<=|>=|==|=|<|>)
  | (?P<bool>&&|\|\||\band\b|\bor\b|\bnot\b|\bAND\b|\bOR\b|\bNOT\b)
  | (?P<paren>[()])
  | (?P<other>\S+)
)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Ref:
    """A field reference: field name, checkbox code (or None), event (or None)."""

    field: str
    code: str | None = None
    event: str | None = None


@dataclass(frozen=True)
class Lit:
    """A literal (string or number) as written, without its quotes."""

    value: str


@dataclass(frozen=True)
class Cmp:
    """A comparison ``left op right`` (op one of = <> < > <= >=, or ``truthy`` for a bare reference)."""

    op: str
    left: Ref | Lit
    right: Ref | Lit


@dataclass(frozen=True)
class BoolOp:
    """``and`` / ``or`` over two or more parts."""

    op: str  # "and" | "or"
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """``not`` of a part."""

    part: Node


Node = Cmp | BoolOp | Not | Ref | Lit


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        kind = m.lastgroup or "other"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _ref(token: str) -> Ref:
    inner = token[1:-1]
    if "(" in inner:
        name, code = inner[:-1].split("(", 1)
        return Ref(name, code)
    return Ref(inner)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise LogicError(f"branching logic {self.text!r} ends too early")
        self.i += 1
        return t

    def parse(self) -> Node:
        node = self.expr_or()
        if self.peek() is not None:
            raise LogicError(f"branching logic {self.text!r}: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def _is_bool(self, word: str) -> bool:
        t = self.peek()
        return t is not None and t[0] == "bool" and t[1].lower() in ({"or", "||"} if word == "or" else {"and", "&&"})

    def expr_or(self) -> Node:
        parts = [self.expr_and()]
        while self._is_bool("or"):
            self.take()
            parts.append(self.expr_and())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def expr_and(self) -> Node:
        parts = [self.expr_not()]
        while self._is_bool("and"):
            self.take()
            parts.append(self.expr_not())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def expr_not(self) -> Node:
        t = self.peek()
        if t is not None and t[0] == "bool" and t[1].lower() == "not":
            self.take()
            return Not(self.expr_not())
        return self.comparison()

    def comparison(self) -> Node:
        t = self.peek()
        if t is not None and t == ("paren", "("):
            self.take()
            node = self.expr_or()
            if self.take() != ("paren", ")"):
                raise LogicError(f"branching logic {self.text!r}: a parenthesis is not closed")
            return node
        left = self.operand()
        t = self.peek()
        if t is None or t[0] != "op":
            if isinstance(left, Ref):  # a bare reference is true when it is non-empty and not 0
                return Cmp("truthy", left, Lit(""))
            raise LogicError(f"branching logic {self.text!r}: a literal alone is not a condition")
        op = self.take()[1]
        right = self.operand()
        return Cmp({"==": "=", "!=": "<>"}.get(op, op), left, right)

    def operand(self) -> Ref | Lit:
        kind, tok = self.take()
        if kind == "ref":
            ref = _ref(tok)
            nxt = self.peek()
            if nxt is not None and nxt[0] == "ref" and ref.code is None:  # [event][field]
                self.take()
                inner = _ref(nxt[1])
                return Ref(inner.field, inner.code, ref.field)
            return ref
        if kind == "str":
            return Lit(tok[1:-1])
        if kind == "num":
            return Lit(tok)
        raise LogicError(
            f"branching logic {self.text!r}: {tok!r} is not supported (only fields, literals, comparisons, "
            "and/or/not and parentheses; no functions or arithmetic)"
        )


def parse(text: str) -> Node:
    """The tree of one branching-logic text; LogicError when it is malformed or unsupported."""
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", re.sub(r"\[[^\]]*\]", "", text))
    for fn in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", bare):
        if fn.lower() not in ("and", "or", "not"):
            raise LogicError(f"branching logic {text!r}: function {fn!r} is not supported")
    return _Parser(text).parse()


def fields_of(node: Node) -> set[str]:
    """The field names a tree refers to (checkbox references by their field name)."""
    if isinstance(node, Ref):
        return {node.field}
    if isinstance(node, Cmp):
        return fields_of(node.left) | fields_of(node.right)
    if isinstance(node, BoolOp):
        return set().union(*[fields_of(p) for p in node.parts])
    if isinstance(node, Not):
        return fields_of(node.part)
    return set()


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _compare(op: str, a: str, b: str) -> bool:
    if op == "truthy":
        return a not in ("", "0")
    x, y = _num(a), _num(b)
    if op in ("=", "<>"):
        same = (x == y) if (x is not None and y is not None) else (a == b)
        return same if op == "=" else not same
    if a == "" or b == "":
        return False
    if x is not None and y is not None:
        return {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def evaluate(node: Node, value: Callable[[Ref], str]) -> bool:
    """Evaluate a tree; ``value(ref)`` gives a reference's raw export value ('' when empty) and may
    raise LogicError (e.g. for another event's field)."""
    if isinstance(node, Cmp):
        left = value(node.left) if isinstance(node.left, Ref) else node.left.value
        right = value(node.right) if isinstance(node.right, Ref) else node.right.value
        return _compare(node.op, left, right)
    if isinstance(node, BoolOp):
        if node.op == "and":
            return all(evaluate(p, value) for p in node.parts)
        return any(evaluate(p, value) for p in node.parts)
    if isinstance(node, Not):
        return not evaluate(node.part, value)
    raise LogicError(f"cannot evaluate {node!r} as a condition")
