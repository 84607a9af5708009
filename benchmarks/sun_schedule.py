"""How long follow-the-sun's decisions take, on the worked example (three centres).

    python -m benchmarks.sun_schedule [--runs 5]

Figures (medians of `--runs` runs): one `on_duty` lookup, one `on_call` lookup, one
escalation decision (an OPENED event through routes and the first step), and the
coverage check of a whole year (`callhome-receiver oncall check --days 365`). All in
process time of this machine; no I/O.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from receiver.incident_events import Change, IncidentEvent, Severity
from receiver.sun.check import check
from receiver.sun.escalation import Escalator
from receiver.sun.model import load_routing
from receiver.sun.schedule import Schedule, on_call

EXAMPLE = Path(__file__).parents[1] / "docs" / "follow-the-sun.toml"


def median_time(function, repeat: int, runs: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            function()
        samples.append((time.perf_counter() - start) / repeat)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    routing = load_routing(EXAMPLE)
    schedule = Schedule(routing)
    at = datetime(2026, 3, 10, 11, 59, tzinfo=UTC)
    roster = routing.rosters["paris-oncall"]
    counter = iter(range(10**9))

    def escalate() -> None:
        incident = next(counter)
        event = IncidentEvent(
            incident,
            Change.OPENED,
            "device_down",
            Severity.CRITICAL,
            "x",
            at.timestamp(),
            at.timestamp(),
        )
        Escalator(routing).handle(event, at.timestamp())

    figures = [
        ("on_duty lookup", median_time(lambda: schedule.on_duty(at), 200, runs), "ms"),
        ("on_call lookup", median_time(lambda: on_call(roster, at), 200, runs), "ms"),
        ("escalation decision (OPENED)", median_time(escalate, 100, runs), "ms"),
        (
            "coverage check, 365 days",
            median_time(lambda: check(routing, at, 365), 1, runs),
            "s",
        ),
    ]
    print(f"follow the sun, {EXAMPLE.name}, median of {runs} runs")
    for name, seconds, unit in figures:
        value = seconds * 1000 if unit == "ms" else seconds
        print(f"  {name:<32} {value:8.3f} {unit}")
    days = len(schedule.handovers(at, at + timedelta(days=365)))
    print(f"  hand-overs in the year          {days:8d}")


if __name__ == "__main__":
    main()
