"""`rules check` and `rules test` as a user runs them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from gateway.rules.cli import app
from gateway.rules.spec import DEFAULT_RULES_DIR

runner = CliRunner()


def _copy_defaults(tmp_path: Path) -> Path:
    for src in DEFAULT_RULES_DIR.glob("*.yaml"):
        shutil.copy(src, tmp_path)
    return tmp_path


def test_check_passes_on_the_defaults() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_check_fails_with_file_and_line(tmp_path: Path) -> None:
    d = _copy_defaults(tmp_path)
    path = d / "faults.yaml"
    path.write_text(path.read_text().replace("code == 'OVERSPEED'", "code == 'OVERSPEDD'"))
    path = d / "accidents.yaml"
    text = path.read_text().replace("code == 'OVERSPEED'", "code == 'OVERSPEDD'")
    path.write_text(text)
    line = text.splitlines().index("    condition: code == 'OVERSPEDD' and state == 'raised'") + 1
    result = runner.invoke(app, ["check", str(d)])
    assert result.exit_code == 1
    assert f"accidents.yaml:{line}:" in result.output.replace("\n", "")
    assert "OVERSPEDD" in result.output


def test_test_passes_on_the_defaults() -> None:
    result = runner.invoke(app, ["test"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and not re.search(r"^FAIL", result.output, re.M)
    assert " 0 failed" in result.output


def test_test_reports_a_failing_case(tmp_path: Path) -> None:
    d = _copy_defaults(tmp_path)
    path = d / "entrapment.yaml"
    path.write_text(path.read_text().replace("hold: 20s", "hold: 25s", 1))
    result = runner.invoke(app, ["test", str(d)])
    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert "missing:    fire trapped_between_floors E1 at 28s" in result.output
