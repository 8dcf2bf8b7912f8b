"""The condition language: a typed subset of Python expression syntax, compiled to functions.

Python's own parser reads the text; the tree is checked and only these forms are allowed:
names of frame fields and derived state, constants, `and`/`or`/`not`, one comparison
(`==`, `!=`, `<`, `<=`, `>`, `>=`) or `in`/`not in` a literal list. Names are typed, so
`door == 'opne'`, `moving == 'yes'` or `code == 'OVERSPEDD'` are load errors, not silent
never-true rules. The checked tree, names rewritten as attributes of the one argument, is
then compiled by Python into a single function: the text itself is never run.

The functions read attributes of whatever object they are given (the engine's per-elevator
state): the status fields in SHARED_STATUS from its `status` (an object the engine shares
between cars in the same state), every other name from itself. General-purpose evaluators
cost 9-900 µs a condition here, these well under 1 µs (`bench/rules_eval.py`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from gateway.frames import FAULT_CODES, VENDOR_CODE_RE, StatusBody

Fn = Callable[[Any], Any]

_BOOL: Final = "bool"
_NUMBER: Final = "number"
_CODE: Final = "code"


# A status frame's fields that describe the car (not the frame's identity and time).
_STATUS_FIELDS: Final = tuple(
    info
    for info in msgspec.inspect.type_info(StatusBody).fields  # type: ignore[union-attr]
    if info.name not in ("v", "elevator_id", "seq", "boot", "ts")
)


def _status_types() -> dict[str, str | frozenset[str]]:
    types: dict[str, str | frozenset[str]] = {}
    for info in _STATUS_FIELDS:
        if isinstance(info.type, msgspec.inspect.BoolType):
            types[info.name] = _BOOL
        elif isinstance(info.type, msgspec.inspect.LiteralType):
            types[info.name] = frozenset(info.type.values)
        else:
            types[info.name] = _NUMBER
    return types


# The status fields that take few values (all but the floats): read from `c.status`.
SHARED_STATUS: Final = tuple(
    info.name for info in _STATUS_FIELDS if not isinstance(info.type, msgspec.inspect.FloatType)
)

# Every name a condition may use, with its type: a string kind, or the set of its values.
NAMES: Final[dict[str, str | frozenset[str]]] = {
    **_status_types(),
    "status_seen": _BOOL,  # a status frame has arrived since the gateway started
    "occupied_latched": _BOOL,  # `occupied`, held until the door has opened
    "online": _BOOL,  # connected and not silent
    "since_moving_s": _NUMBER,  # seconds since the car last moved (at the last status frame)
    "door_cycles_60s": _NUMBER,  # door openings in the last 60 s (counted up to 16)
    "code": _CODE,  # the event frame being evaluated ("" outside events)
    "state": frozenset({"raised", "cleared", ""}),
}


class ExprError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled condition. Equal when the source text is equal."""

    source: str
    fn: Fn = field(compare=False, repr=False)
    code: str | None = field(default=None, compare=False)  # an event code it requires


def compile_expr(source: str) -> Expr:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"syntax error in {source!r}: {exc.msg}") from None
    return Expr(source, _function(_boolean(tree.body)), _pinned_code(tree.body))


def _function(body: ast.expr) -> Fn:
    """A checked condition as `lambda c: <body>`: one call per evaluation, not one per node."""
    args = ast.arguments(
        posonlyargs=[], args=[ast.arg("c")], kwonlyargs=[], kw_defaults=[], defaults=[]
    )
    tree = ast.fix_missing_locations(ast.Expression(ast.Lambda(args, body)))
    # A tree of names, constants, comparisons and and/or/not only (checked): no builtins.
    return eval(compile(tree, "<condition>", "eval"), {"__builtins__": {}})  # type: ignore[no-any-return]


def compile_mask(conditions: Sequence[tuple[Expr, int]]) -> Callable[[Any], int]:
    """One function for several conditions: the bits of those that hold, OR-ed together
    (`lambda c: (b0 if cond0 else 0) | ...`). A frame evaluates a rule set in one call,
    not one per rule: the conditions are pure, so evaluating them all changes nothing."""
    mask: ast.expr = ast.Constant(0)
    for expr, bits in conditions:
        test = _boolean(ast.parse(expr.source.strip(), mode="eval").body)
        term = ast.IfExp(test, ast.Constant(bits), ast.Constant(0))
        mask = term if isinstance(mask, ast.Constant) else ast.BinOp(mask, ast.BitOr(), term)
    return _function(mask)


def _pinned_code(node: ast.expr) -> str | None:
    """The code in a top-level `code == '...'` conjunct: lets the engine index event rules."""
    parts = node.values if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And) else [node]
    for part in parts:
        if (
            isinstance(part, ast.Compare)
            and isinstance(part.left, ast.Name)
            and part.left.id == "code"
            and isinstance(part.ops[0], ast.Eq)
            and isinstance(part.comparators[0], ast.Constant)
        ):
            return part.comparators[0].value
    return None


def _compile(node: ast.expr) -> tuple[ast.expr, str | frozenset[str]]:
    """The node checked, with its type; names become attributes of the argument `c`."""
    if isinstance(node, ast.Name):
        if node.id not in NAMES:
            raise ExprError(f"unknown name {node.id!r} (known: {', '.join(sorted(NAMES))})")
        owner: ast.expr = ast.Name("c", ast.Load())
        if node.id in SHARED_STATUS:
            owner = ast.Attribute(owner, "status", ast.Load())
        return ast.Attribute(owner, node.id, ast.Load()), NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ast.UnaryOp(ast.Not(), _boolean(node.operand)), _BOOL
    if isinstance(node, ast.BoolOp):
        return ast.BoolOp(node.op, [_boolean(v) for v in node.values]), _BOOL
    if isinstance(node, ast.Compare):
        return _compare(node), _BOOL
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return ast.Constant(node.value), _BOOL
    raise ExprError(f"not allowed in a condition: {ast.unparse(node)!r}")


def _boolean(node: ast.expr) -> ast.expr:
    checked, typ = _compile(node)
    if typ != _BOOL:
        raise ExprError(f"{ast.unparse(node)!r} is not true/false; compare it with a value")
    return checked


# The same comparison with its sides swapped (`5 < x` is `x > 5`).
_MIRROR: Final = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}


def _compare(node: ast.Compare) -> ast.expr:
    text = ast.unparse(node)
    if len(node.ops) != 1:
        raise ExprError(f"one comparison at a time, join them with `and`: {text!r}")
    op_type = type(node.ops[0])
    left, right = node.left, node.comparators[0]
    if op_type in (ast.In, ast.NotIn):
        if not isinstance(right, ast.List | ast.Tuple | ast.Set):
            raise ExprError(f"`in` needs a literal list on its right: {text!r}")
        getter, typ = _name(left, text)
        values = frozenset(_constant(e, typ, left, text) for e in right.elts)
        return ast.Compare(getter, [op_type()], [ast.Constant(values)])
    if isinstance(left, ast.Constant) and isinstance(right, ast.Name):
        left, right = right, left
        op_type = _MIRROR.get(op_type, op_type)
    getter, typ = _name(left, text)
    if op_type not in (ast.Eq, ast.NotEq) and typ != _NUMBER:
        raise ExprError(f"{ast.unparse(left)} is not a number; only == and != apply: {text!r}")
    return ast.Compare(getter, [op_type()], [ast.Constant(_constant(right, typ, left, text))])


def _name(node: ast.expr, text: str) -> tuple[ast.expr, str | frozenset[str]]:
    if not isinstance(node, ast.Name):
        raise ExprError(f"compare a name with a constant: {text!r}")
    return _compile(node)


def _constant(node: ast.expr, typ: str | frozenset[str], name: ast.expr, text: str) -> Any:
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
    ):
        node = ast.Constant(-node.operand.value)  # a negative number, e.g. a basement floor
    if not isinstance(node, ast.Constant):
        raise ExprError(f"compare a name with a constant: {text!r}")
    value = node.value
    label = ast.unparse(name)
    if typ == _BOOL:
        ok = isinstance(value, bool)
    elif typ == _NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif typ == _CODE:
        if isinstance(value, str) and (value in FAULT_CODES or VENDOR_CODE_RE.fullmatch(value)):
            return value
        raise ExprError(f"unknown fault code {value!r} (not in the catalogue, no X_ prefix)")
    else:
        assert isinstance(typ, frozenset)
        if value not in typ:
            known = ", ".join(repr(v) for v in sorted(typ))
            raise ExprError(f"{label} is never {value!r} (it is one of {known}): {text!r}")
        ok = True
    if not ok:
        raise ExprError(f"{label} is a {typ}, not {value!r}: {text!r}")
    return value
