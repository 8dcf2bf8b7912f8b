"""Maintenance crews: rescues after an entrapment or a stopping fault, and routine visits.

A crew arrives after a delay drawn from a configurable distribution (a share of crews is
late, beyond the legal 30 minutes), checks in at the controller (`CREW_ON_SITE`), switches
the car to `inspection`, frees the passengers, repairs, and hands the car back in `normal`
mode. Every car also gets a routine `maintenance` session at least every 15 days.
Optionally the crew's app reports dispatch and arrival to the gateway's HTTP API.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from gateway.clock import Clock
from simulators.device import Device
from simulators.faults import Fault
from simulators.labels import Label, make_label

log = logging.getLogger(__name__)

Span = tuple[float, float]


@dataclass(frozen=True)
class DelayConfig:
    """How long a crew takes to arrive, in simulated seconds."""

    distribution: Literal["lognormal", "uniform", "fixed"] = "lognormal"
    median_s: float = 720.0  # lognormal median, or the fixed delay
    sigma: float = 0.4  # lognormal shape
    low_s: float = 300.0  # uniform bounds
    high_s: float = 1500.0
    late_share: float = 0.08  # crews that are late whatever the distribution says...
    late_s: Span = (1900.0, 3600.0)  # ...arriving this long after the fault

    def draw(self, rng: random.Random) -> float:
        if rng.random() < self.late_share:
            return rng.uniform(*self.late_s)
        if self.distribution == "lognormal":
            return rng.lognormvariate(math.log(self.median_s), self.sigma)
        if self.distribution == "uniform":
            return rng.uniform(self.low_s, self.high_s)
        return self.median_s


@dataclass(frozen=True)
class CrewConfig:
    delay: DelayConfig = field(default_factory=DelayConfig)
    dispatch_s: Span = (60.0, 240.0)  # fault to "crew dispatched" in the crew's app
    release_s: Span = (180.0, 480.0)  # arrival to starting to free the passengers
    repair_s: Span = (300.0, 1800.0)  # then until service is restored
    maintenance_days: Span = (12.0, 15.0)  # between routine visits
    maintenance_s: Span = (1800.0, 5400.0)  # length of a routine visit
    companies: tuple[str, ...] = ("Apex Lift Service", "Harbour Elevator Co", "Sunrise Lifts")


class ApiReporter:
    """Reports dispatch and arrival like a technician's app, on a thread of its own so a
    slow or absent gateway never holds up the fleet."""

    def __init__(
        self,
        base_url: str,
        token: str,
        clock: Clock,
        client: httpx.Client | None = None,
        lookup_attempts: int = 10,
        lookup_wait_s: float = 15.0,
    ) -> None:
        self._http = client or httpx.Client(base_url=base_url, timeout=10)
        self._http.headers["Authorization"] = f"Bearer {token}"
        self._clock = clock
        self._attempts = lookup_attempts
        self._wait_s = lookup_wait_s
        self._queue: queue.Queue[tuple[str, str, dict[str, Any]] | None] = queue.Queue()
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._work, name="crew-api", daemon=True)
        self._thread.start()

    def dispatched(self, elevator_id: str, kind: str, crew_id: str, company: str) -> None:
        body = {"crew_id": crew_id, "maintenance_company": company}
        self._queue.put((elevator_id, kind, {"dispatch": body}))

    def arrived(self, elevator_id: str, kind: str, crew_id: str, at: datetime) -> None:
        at_utc = at.astimezone(UTC).isoformat(timespec="milliseconds")
        self._queue.put((elevator_id, kind, {"arrival": {"crew_id": crew_id, "at": at_utc}}))

    def close(self) -> None:
        """Send what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()
        self._http.close()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            elevator_id, kind, action = item
            try:
                self._report(elevator_id, kind, action)
            except httpx.HTTPError as exc:
                self.failed += 1
                log.warning("crew report for %s failed: %s", elevator_id, exc)

    def _report(self, elevator_id: str, kind: str, action: dict[str, Any]) -> None:
        incident_id = self._find_incident(elevator_id, kind)
        if incident_id is None:
            self.failed += 1
            log.warning("no open incident for %s to report on", elevator_id)
            return
        [(step, body)] = action.items()
        r = self._http.post(f"/api/incidents/{incident_id}/{step}", json=body)
        r.raise_for_status()
        self.sent += 1

    def _find_incident(self, elevator_id: str, kind: str) -> str | None:
        # The gateway needs its rule's hold time before the incident exists: ask again.
        for attempt in range(self._attempts):
            if attempt:
                self._clock.sleep(self._wait_s)
            r = self._http.get(
                "/api/incidents", params={"state": "open", "elevator_id": elevator_id}
            )
            r.raise_for_status()
            incidents = r.json()
            if incidents:
                same_kind = [i for i in incidents if i.get("kind") == kind]
                return str((same_kind or incidents)[0]["id"])
        return None


class CrewService:
    """The contracted maintenance company of one car."""

    def __init__(
        self,
        device: Device,
        rng: random.Random,
        cfg: CrewConfig,
        company: str,
        reporter: ApiReporter | None,
        on_visit_end: Callable[[Label], None],
    ) -> None:
        self.device = device
        self.company = company
        self.cfg = cfg
        self._rng = rng
        self._reporter = reporter
        self._on_visit_end = on_visit_end
        self._jobs = 0
        self._fault: Fault | None = None
        self._crew_id = ""
        self._phase = ""
        self._next_at = math.inf
        self._dispatch_at = math.inf
        # The first routine visit falls anywhere in the interval: cars are not in step.
        self._next_visit = rng.uniform(0, rng.uniform(*cfg.maintenance_days)) * 86400
        self._visit_start: float | None = None
        self.arrivals = 0

    @property
    def busy(self) -> bool:
        return self._fault is not None or self._visit_start is not None

    def dispatch(self, fault: Fault, now: float) -> None:
        self._jobs += 1
        self._fault = fault
        self._crew_id = f"{self.device.elevator_id}-C{self._jobs}"
        self._phase = "en_route"
        self._next_at = now + self.cfg.delay.draw(self._rng)
        self._dispatch_at = now + self._rng.uniform(*self.cfg.dispatch_s)

    def step(self, now: float, car_free: bool) -> None:
        """Advance the current job; start a routine visit when due and the car is free."""
        if self._fault is not None:
            self._rescue_step(self._fault, now)
        elif self._visit_start is not None:
            if now >= self._next_at:
                self._end_visit(now)
        elif now >= self._next_visit and car_free:
            self._start_visit(now)

    def _rescue_step(self, fault: Fault, now: float) -> None:
        car = self.device.car
        if now >= self._dispatch_at:
            self._dispatch_at = math.inf
            if self._reporter is not None:
                self._reporter.dispatched(
                    self.device.elevator_id, fault.kind, self._crew_id, self.company
                )
        if now < self._next_at:
            return
        if self._phase == "en_route":
            self.arrivals += 1
            self.device.raise_event("CREW_ON_SITE", {"crew_id": self._crew_id})
            car.mode = "inspection"
            fault.crew_arrived()
            if self._reporter is not None:
                self._reporter.arrived(
                    self.device.elevator_id, fault.kind, self._crew_id, self.device.time(now)
                )
            self._phase = "freeing" if fault.kind == "entrapment" else "repairing"
            self._next_at = now + self._rng.uniform(*self.cfg.release_s)
        elif self._phase == "freeing":
            fault.free_passengers()
            self._phase, self._next_at = "waiting_release", now
        elif self._phase == "waiting_release":
            if fault.freed:
                self._phase = "repairing"
                self._next_at = now + self._rng.uniform(*self.cfg.repair_s)
        elif self._phase == "repairing":
            self.device.clear_event("CREW_ON_SITE", {"crew_id": self._crew_id})
            fault.resolve(now)
            self._fault = None
            self._dispatch_at = math.inf

    def _start_visit(self, now: float) -> None:
        self._jobs += 1
        self._crew_id = f"{self.device.elevator_id}-M{self._jobs}"
        car = self.device.car
        car.mode = "maintenance"
        car.abandon_calls()
        self.device.raise_event("CREW_ON_SITE", {"crew_id": self._crew_id})
        self._visit_start = now
        self._next_at = now + self._rng.uniform(*self.cfg.maintenance_s)

    def _end_visit(self, now: float) -> None:
        assert self._visit_start is not None
        self.device.car.mode = "normal"
        self.device.clear_event("CREW_ON_SITE", {"crew_id": self._crew_id})

        self._on_visit_end(
            make_label(self.device, "maintenance", None, self._visit_start, now, ("CREW_ON_SITE",))
        )
        self._visit_start = None
        self._next_visit = now + self._rng.uniform(*self.cfg.maintenance_days) * 86400
