"""`profiles check` and `profiles test`: validate profile files and run their cases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.profiles import Profile, ProfileError, compile_profiles, load_profiles
from gateway.profiles.cases import run_cases

app = typer.Typer(help="Device profiles: validate them and run their cases.", no_args_is_help=True)

DirArg = Annotated[
    Path | None,
    typer.Argument(
        file_okay=False,
        envvar="GATEWAY_PROFILES_DIR",
        help="A directory of extra *.yaml profiles (the packaged ones are always read).",
    ),
]


def _load_or_exit(directory: Path | None, console: Console) -> tuple[Profile, ...]:
    try:
        profiles = load_profiles(*([directory] if directory else []))
        compile_profiles(profiles)
    except ProfileError as exc:
        for error in exc.errors:
            console.print(f"[red]error[/red] {error}", highlight=False, soft_wrap=True)
        console.print(f"[red]{len(exc.errors)} error(s)[/red]")
        raise typer.Exit(1) from None
    return profiles


@app.command()
def check(directory: DirArg = None) -> None:
    """Validate every profile: schema, paths, maps against the contract, codes, topics."""
    console = Console()
    profiles = _load_or_exit(directory, console)
    for p in profiles:
        console.print(f"[green]ok[/green] {p.name}  [dim]{p.file}[/dim]", highlight=False)
    console.print(f"{len(profiles)} profiles, {sum(len(p.tests) for p in profiles)} cases")


@app.command()
def test(directory: DirArg = None) -> None:
    """Run the cases stored beside the profiles; exit 1 if any fails."""
    console = Console()
    results = run_cases(_load_or_exit(directory, console))
    for r in results:
        mark = "[green]PASS[/green]" if r.passed else "[red]FAIL[/red]"
        console.print(
            f"{mark} {r.profile}: {r.case.name}  [dim]{r.case.source}[/dim]", highlight=False
        )
        for problem in r.problems:
            console.print(f"     {problem}", highlight=False)
    failed = sum(not r.passed for r in results)
    console.print(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)
