"""Rule files: every kind of error names its file and line; the condition language."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.rules import RuleError, load_rules
from gateway.rules.expr import ExprError, compile_expr, compile_mask
from gateway.rules.spec import DEFAULT_RULES_DIR

GOOD_RULE = """\
rules:
  - id: my_rule
    description: d
    stream: status
    condition: not moving
    opens: {kind: entrapment, severity: critical, class: entrapment}
"""


def errors_for(tmp_path: Path, text: str, *, with_defaults: bool = False) -> list[str]:
    if with_defaults:
        for src in DEFAULT_RULES_DIR.glob("*.yaml"):
            shutil.copy(src, tmp_path)
    (tmp_path / "zz.yaml").write_text(text)
    with pytest.raises(RuleError) as exc:
        load_rules(tmp_path)
    return list(exc.value.errors)


def test_the_default_rules_load() -> None:
    rules = load_rules()
    assert len(rules.rules) >= 20
    assert {m.id for m in rules.mutes} >= {"crew_in_charge", "unoccupied"}
    assert rules.settings.silence == 30


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("    stream: status\n", "    stream: status\n    colour: red\n", 5, "unknown field"),
        ("not moving", "code == 'OVERSPEDD'", 5, "unknown fault code"),
        ("kind: entrapment", "kind: NOT_A_CODE", 6, "unknown incident kind"),
        ("not moving", "not (moving", 5, "syntax error"),
        ("not moving", "__import__('os').system('x')", 5, "not allowed"),
        ("not moving", "moving.real", 5, "not allowed"),
        ("not moving", "movin", 5, "unknown name 'movin'"),
        ("not moving", "door == 'opne'", 5, "door is never 'opne'"),
        ("not moving", "moving == 'yes'", 5, "moving is a bool"),
        ("not moving", "door", 5, "not true/false"),
        ("not moving", "door < 'open'", 5, "not a number"),
        ("not moving", "0 < floor < 5", 5, "one comparison"),
        ("not moving", "door in door", 5, "literal list"),
        ("    stream: status\n", "    stream: status\n    hold: soon\n", 5, "not a duration"),
        ("    stream: status\n", "", 2, "stream: Field required"),
        ("    stream: status\n", "    stream: event\n", 2, "needs `code == '...'`"),
        ("    condition: not moving\n", "    condition: not moving\n    clears: cleared\n", 2,
         "only for event rules"),
        ("severity: critical", "severity: huge", 6, "severity"),
    ],
)  # fmt: skip
def test_each_kind_of_error_names_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, words: str
) -> None:
    assert old in GOOD_RULE
    errors = errors_for(tmp_path, GOOD_RULE.replace(old, new))
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'zz.yaml'}:{line}: "), errors
    assert words in errors[0]


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    [error] = errors_for(tmp_path, "rules:\n  - id: a\n    id: b\n")
    assert ":3:" in error and "duplicate key" in error
    (tmp_path / "zz.yaml").unlink()
    [error] = errors_for(tmp_path, "rules: [\n  {id: a\n")
    assert "zz.yaml:" in error and "YAML" in error


def test_cross_file_errors(tmp_path: Path) -> None:
    text = (
        GOOD_RULE.replace("my_rule", "trapped_between_floors")
        + "    escalate: {severity: critical, if_active: [no_such_rule]}\n"
        + "settings: {silence: 20s}\n"
        + "tests:\n  - name: t\n    frames: [{at: 0, status: {}}]\n"
        + "    expect: [{at: 1, fire: nope}]\n"
    )
    errors = errors_for(tmp_path, text, with_defaults=True)
    joined = "\n".join(errors)
    assert "zz.yaml:2: duplicate id 'trapped_between_floors'" in joined
    assert "zz.yaml:2: escalate.if_active names unknown rule 'no_such_rule'" in joined
    assert "settings are given in more than one file" in joined
    assert "zz.yaml:10: case 't' expects unknown rule 'nope'" in joined


def test_test_case_frames_are_checked(tmp_path: Path) -> None:
    text = GOOD_RULE + (
        "tests:\n"
        "  - name: t\n"
        "    frames:\n"
        "      - {at: 0, status: {dor: open}}\n"
        "      - {at: 1, event: OVERSPEDD}\n"
        "      - {at: 2, status: {door: ajar}}\n"
        "      - {at: 3}\n"
    )
    errors = errors_for(tmp_path, text)
    assert any(":10:" in e and "unknown status fields" in e for e in errors), errors
    assert any(":11:" in e and "unknown fault code" in e for e in errors), errors
    assert any(":12:" in e and "door" in e for e in errors), errors
    assert any(":13:" in e and "exactly one of" in e for e in errors), errors


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"no \*\.yaml"):
        load_rules(tmp_path)


# -- the condition language -------------------------------------------------------------------
def test_conditions_evaluate_over_attributes() -> None:
    """Status fields that take few values are read from the car's shared `status`."""
    status = SimpleNamespace(moving=False, door="fault", floor=3)
    car = SimpleNamespace(status=status, code="X_VENDOR_1", state="raised", speed_mps=0.5)
    assert compile_expr("not moving and door in ['closed', 'fault']").fn(car)
    assert compile_expr("floor >= 3 and 5 > floor and door not in ('open',)").fn(car)
    assert not compile_expr("moving or floor != 3").fn(car)
    assert compile_expr("code == 'X_VENDOR_1' and state == 'raised'").code == "X_VENDOR_1"
    assert compile_expr("True").fn(car) is True
    assert compile_expr("speed_mps > 0.4 and floor == 3").fn(car)


@pytest.mark.parametrize(
    "bad",
    ["", "1", "'open'", "floor", "f(moving)", "[moving]", "moving if door else floor", "lambda: 1"],
)
def test_anything_else_is_refused(bad: str) -> None:
    with pytest.raises(ExprError):
        compile_expr(bad)


# Random conditions over three names, checked against a reference evaluator of the tree.
_LEAF = st.one_of(
    st.tuples(st.just("name"), st.sampled_from(["moving", "occupied"])),
    st.tuples(st.just("eq"), st.sampled_from(["open", "closed", "fault"])),
    st.tuples(st.just("in"), st.lists(st.sampled_from(["open", "closed", "fault"]), min_size=1)),
    st.tuples(st.just("lt"), st.integers(-3, 10)),
)
_TREE = st.recursive(
    _LEAF,
    lambda kids: st.one_of(
        st.tuples(st.just("not"), kids),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(kids, min_size=2, max_size=5)),
    ),
    max_leaves=12,
)


def _render(t: Any) -> str:
    match t:
        case ("name", n):
            return n
        case ("eq", v):
            return f"door == {v!r}"
        case ("in", vs):
            return f"door in {vs!r}"
        case ("lt", n):
            return f"floor < {n}"
        case ("not", k):
            return f"not ({_render(k)})"
        case (op, ks):
            return "(" + f" {op} ".join(_render(k) for k in ks) + ")"
    raise AssertionError(t)


def _reference(t: Any, car: Any) -> bool:
    match t:
        case ("name", n):
            return bool(getattr(car, n))
        case ("eq", v):
            return car.door == v
        case ("in", vs):
            return car.door in vs
        case ("lt", n):
            return car.floor < n
        case ("not", k):
            return not _reference(k, car)
        case ("and", ks):
            return all(_reference(k, car) for k in ks)
        case ("or", ks):
            return any(_reference(k, car) for k in ks)
    raise AssertionError(t)


# The part of a car's status the generated conditions read.
_CAR = st.builds(
    SimpleNamespace,
    moving=st.booleans(),
    occupied=st.booleans(),
    door=st.sampled_from(["open", "closed", "fault", "closing"]),
    floor=st.integers(-5, 12),
)


@settings(max_examples=300, deadline=None)
@given(_TREE, _CAR)
def test_compiled_conditions_agree_with_a_reference(tree: Any, car: Any) -> None:
    got = compile_expr(_render(tree)).fn(SimpleNamespace(status=car))
    assert bool(got) == _reference(tree, car)


@settings(max_examples=100, deadline=None)
@given(st.lists(_TREE, max_size=6), _CAR)
def test_a_mask_holds_the_bits_of_the_conditions_that_hold(trees: list[Any], car: Any) -> None:
    """The rule engine evaluates a rule set in one call: bit i set iff condition i holds."""
    exprs = [compile_expr(_render(t)) for t in trees]
    bits = [1 << i for i in range(len(exprs))]
    view = SimpleNamespace(status=car)
    expected = sum(b for e, b in zip(exprs, bits, strict=True) if e.fn(view))
    assert compile_mask(list(zip(exprs, bits, strict=True)))(view) == expected
