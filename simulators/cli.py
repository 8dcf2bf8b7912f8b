"""`elevator-sim`: run a simulated fleet against a broker, or load-test a broker."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.clock import Clock, RealClock, ScaledClock
from gateway.profiles import Profile, ProfileError, load_profiles
from simulators.crew import ApiReporter
from simulators.fleet import Fleet
from simulators.labels import LabelWriter
from simulators.loadgen import run_load
from simulators.misbehave import MISBEHAVIOURS
from simulators.mqtt import MqttPublisher
from simulators.scenario import Scenario, ScenarioError, load_scenario
from simulators.scoring import (
    CONTROLLER_RAISED,
    SCORING_SCENARIO,
    Detection,
    Score,
    latency,
    recall,
    run_scenario,
    score,
)

app = typer.Typer(
    help="Simulated elevators that speak the gateway's MQTT contract, and a load generator.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

MQTT_URL_HELP = "Broker, mqtt://[user:pass@]host:port (mqtts:// for TLS)."


@app.command()
def run(
    elevators: Annotated[
        int | None,
        typer.Option(help="Number of cars; scales the scenario's mix (default: its own size)."),
    ] = None,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second (60: an hour a minute).")
    ] = 1.0,
    mqtt_url: Annotated[str, typer.Option(help=MQTT_URL_HELP)] = "mqtt://127.0.0.1:1883",
    seed: Annotated[
        int | None, typer.Option(help="Random seed (overrides the scenario's).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Write one label per injected fault here (.jsonl, or .csv)."),
    ] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario YAML (see simulators/scenario.py).")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(help="Stop after this many SIMULATED seconds (default: run until Ctrl-C)."),
    ] = None,
    connections: Annotated[
        int, typer.Option(help="MQTT connections the cars share (online topics published by us).")
    ] = 1,
    per_car: Annotated[
        bool,
        typer.Option(help="One MQTT connection per car, each with its own last will."),
    ] = False,
    misbehave: Annotated[
        str | None,
        typer.Option(
            help=f"Comma-separated misbehaviours to switch on: {', '.join(MISBEHAVIOURS)}."
        ),
    ] = None,
    misbehave_share: Annotated[
        float, typer.Option(help="Share of the cars that misbehave, with --misbehave.")
    ] = 0.1,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="Gateway base URL: crews report dispatch and arrival there (off if unset)."
        ),
    ] = None,
    api_token: Annotated[
        str | None, typer.Option(envvar="ELEVATOR_SIM_API_TOKEN", help="Dispatcher bearer token.")
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            help="Device profile the cars speak (e.g. lift-numeric; packaged or in "
            "GATEWAY_PROFILES_DIR); native: the contract."
        ),
    ] = "native",
    profile_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share of the cars that speak --profile.")
    ] = 1.0,
) -> None:
    """Run a fleet of simulated elevators publishing to an MQTT broker.

    Cars carry passengers by building type and hour, break down at the scenario's rates
    (entrapments among them), and get crews. Ctrl-C stops cleanly.
    """
    try:
        sc = load_scenario(scenario) if scenario else Scenario()
    except (ScenarioError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    if elevators is not None:
        sc = sc.resized(elevators)
    if seed is not None:
        sc = dataclasses.replace(sc, seed=seed)
    if misbehave:
        try:
            sc = dataclasses.replace(
                sc, misbehave=sc.misbehave.only(misbehave.split(","), misbehave_share)
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--misbehave") from None
    if api_url and not api_token:
        raise typer.BadParameter("--api-url needs --api-token", param_hint="--api-token")
    clock: Clock = ScaledClock(speed, sc.start) if speed != 1 or sc.start else RealClock()
    reporter = ApiReporter(api_url, api_token or "", clock) if api_url else None
    publisher = MqttPublisher(mqtt_url, connections=connections, per_car=per_car)
    writer = LabelWriter(labels) if labels else None
    speaks = _profile(profile)
    fleet = Fleet(sc, clock, publisher, labels=writer, reporter=reporter, profile=speaks,
                  profile_share=profile_share)  # fmt: skip
    try:
        fleet.start(duration if duration is not None else sc.duration_s)
    except ConnectionError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        with Live(
            _progress(fleet, speed), console=console, refresh_per_second=4, transient=True
        ) as live:
            while fleet.running and not stopping.wait(0.25):
                live.update(_progress(fleet, speed))
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
    console.print(_progress(fleet, speed))


def _profile(name: str) -> Profile | None:
    extra = os.environ.get("GATEWAY_PROFILES_DIR")
    try:
        profiles = {p.name: p for p in load_profiles(*([Path(extra)] if extra else []))}
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from None
    if name not in profiles:
        raise typer.BadParameter(f"unknown profile {name!r}: {sorted(profiles)}", "--profile")
    chosen = profiles[name]
    return None if chosen.contract else chosen


def _progress(fleet: Fleet, speed: float) -> Table:
    s = fleet.stats
    table = Table(title=f"{len(fleet.units)} elevators at {speed:g}x", show_header=False)
    hours, rem = divmod(int(s.sim_s), 3600)
    table.add_row("simulated time", f"{hours} h {rem // 60:02d} min (behind by {s.lag_s:.1f} s)")
    real_s = s.sim_s / speed if speed else 0
    rate = s.sent / real_s if real_s else 0.0
    table.add_row("frames sent", f"{s.sent:,}  ({rate:,.0f}/s real time)")
    table.add_row("by topic", ", ".join(f"{k} {v:,}" for k, v in sorted(s.frames.items())))
    faults = ", ".join(f"{k} {v}" for k, v in s.faults.most_common()) or "none yet"
    table.add_row("faults injected", faults)
    table.add_row("crew arrivals", str(fleet.crew_arrivals))
    if s.misbehaved:
        table.add_row("misbehaved", ", ".join(f"{k} {v:,}" for k, v in s.misbehaved.items()))
    return table


@app.command()
def load(
    rate: Annotated[
        str, typer.Option(help="Frames per second in all, or 'max' for as fast as it goes.")
    ] = "max",
    elevators: Annotated[int, typer.Option(help="Distinct elevator ids to publish as.")] = 1000,
    duration: Annotated[float, typer.Option(help="Wall-clock seconds to publish for.")] = 10.0,
    processes: Annotated[int, typer.Option(help="Publishing processes.")] = 1,
    mqtt_url: Annotated[str, typer.Option(help=MQTT_URL_HELP)] = "mqtt://127.0.0.1:1883",
) -> None:
    """Publish pre-built valid status frames at QoS 1 and report the rate the broker
    acknowledged."""
    try:
        target = None if rate == "max" else float(rate)
    except ValueError:
        raise typer.BadParameter("a number or 'max'", param_hint="--rate") from None
    try:
        report = run_load(mqtt_url, target, elevators, duration, processes)
    except (ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    console.print(
        f"{report.acked:,} of {report.sent:,} frames acknowledged in {report.seconds:.1f} s "
        f"by {report.processes} process(es): [bold]{report.rate:,.0f} frames/s[/bold]"
    )


@app.command("score")
def score_command(
    scenario: Annotated[
        Path, typer.Option(help="Labelled scenario YAML (default: the scoring scenario).")
    ] = SCORING_SCENARIO,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (overrides the scenario's).")
    ] = None,
) -> None:
    """Run a scenario straight into the rule engine (no broker, simulated time) and score
    the alerts against the injected faults: recall, latency, false alerts.

    Exits 1 if an entrapment was missed or an entrapment alert fired where none was."""
    try:
        sc = load_scenario(scenario)
    except (ScenarioError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--scenario") from None
    if seed is not None:
        sc = dataclasses.replace(sc, seed=seed)
    with console.status("simulating..."):
        run = run_scenario(sc)
    result = score(run)
    hours = (run.end - run.start).total_seconds() / 3600
    console.print(
        f"{sc.size} elevators, {hours:g} simulated hours, seed {sc.seed}: "
        f"{run.stats.sent:,} frames ({run.rejected.total():,} rejected, from "
        f"{len(run.flaky)} cars with flaky firmware), {len(run.alerts):,} alerts"
    )
    console.print(_entrapment_table(result))
    console.print(_fault_table(result, run.flaky))
    console.print(_false_alert_table(result))
    if result.recall < 1 or result.false_entrapment:
        raise typer.Exit(1)


def _percent(detections: list[Detection]) -> str:
    return f"{recall(detections):.1%}"


def _entrapment_table(result: Score) -> Table:
    table = Table(title="Entrapments: recall and detection latency (alert − label start)")
    for column in ("kind", "injected", "detected", "recall", "median s", "p90 s", "max s"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    groups = {**result.by_entrapment_kind(), "all": result.entrapments}
    for kind, detections in groups.items():
        lat = latency(detections)
        times = ("-", "-", "-") if lat is None else (lat.median_s, lat.p90_s, lat.max_s)
        table.add_row(
            kind if kind != CONTROLLER_RAISED else f"({kind}, any cause)",
            str(len(detections)),
            str(sum(d.alert is not None for d in detections)),
            _percent(detections),
            *(t if isinstance(t, str) else f"{t:.1f}" for t in times),
        )
    return table


def _fault_table(result: Score, flaky: frozenset[str]) -> Table:
    table = Table(title="Faults: recall per code (an alert of that kind up during the label)")
    for column in ("code", "injected", "detected", "recall", "missed on flaky firmware"):
        table.add_column(column, justify="left" if column == "code" else "right")
    for code, detections in result.by_fault_code().items():
        found = sum(d.alert is not None for d in detections)
        lost = sum(d.alert is None and d.label.elevator_id in flaky for d in detections)
        table.add_row(code, str(len(detections)), str(found), _percent(detections), str(lost))
    for code, count in sorted(result.unscored.items()):
        table.add_row(code, str(count), "-", "no rule opens it")
    for kind, count in sorted(result.cut_off.items()):
        table.add_row(kind, str(count), "-", "cut off by the end of the run")
    return table


def _false_alert_table(result: Score) -> Table:
    table = Table(title="Alerts where nothing was injected, per rule")
    table.add_column("rule")
    table.add_column("false alerts", justify="right")
    by_rule = Counter(a.rule for a in (*result.false_entrapment, *result.unexplained))
    for rule, count in sorted(by_rule.items()):
        table.add_row(rule, str(count))
    table.add_row("[bold]false entrapment alerts[/bold]", str(len(result.false_entrapment)))
    table.add_row("[bold]unexplained fault/accident alerts[/bold]", str(len(result.unexplained)))
    table.add_row(
        "offline alerts (reboots, flaky links; not labelled, not scored)",
        str(result.offline_alerts),
    )
    return table


def main() -> None:
    app()
