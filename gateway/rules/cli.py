"""`rules check` and `rules test`: validate rule files and run the cases stored beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.rules.cases import run_cases
from gateway.rules.spec import DEFAULT_RULES_DIR, RuleError, RuleSet, load_rules

app = typer.Typer(help="Alert rules: validate them and run their test cases.", no_args_is_help=True)

DirArg = Annotated[
    Path,
    typer.Argument(file_okay=False, help="Directory of *.yaml rule files (default: the packaged)."),
]


def _load_or_exit(directory: Path, console: Console) -> RuleSet:
    try:
        return load_rules(directory)
    except RuleError as exc:
        for error in exc.errors:
            console.print(f"[red]error[/red] {error}", highlight=False, soft_wrap=True)
        console.print(f"[red]{len(exc.errors)} error(s)[/red]")
        raise typer.Exit(1) from None


@app.command()
def check(directory: DirArg = DEFAULT_RULES_DIR) -> None:
    """Validate every rule file: schema, unknown fields and codes, expressions, references."""
    console = Console()
    rules = _load_or_exit(directory, console)
    console.print(
        f"[green]ok[/green] {len(rules.rules)} rules, {len(rules.mutes)} exclusions, "
        f"{len(rules.cases)} test cases in {directory}"
    )


@app.command()
def test(directory: DirArg = DEFAULT_RULES_DIR) -> None:
    """Run the test cases stored beside the rules; exit 1 if any fails."""
    console = Console()
    results = run_cases(_load_or_exit(directory, console))
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        console.print(f"{mark} {r.case.name}  [dim]{r.case.source}[/dim]", highlight=False)
        for line in r.missing:
            console.print(f"     missing:    {line}", highlight=False)
        for line in r.unexpected:
            console.print(f"     unexpected: {line}", highlight=False)
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)
