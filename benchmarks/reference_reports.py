"""Synthetic but realistic call-home messages, for the dictionary and the benchmarks.

Reports look like what an installed system sends when a component degrades: who it is,
what broke, sensor readings, counters (mostly zero) and a log excerpt. They are
synthetic: the dictionary trained on them should be retrained on real reports.
"""

from __future__ import annotations

import random
from typing import Any

COMPONENTS = (
    "psu1",
    "psu2",
    "fan1",
    "fan2",
    "fan3",
    "disk0",
    "disk1",
    "disk2",
    "raid0",
    "cpu0",
    "cpu1",
    "dimm3",
    "nic0",
    "nic1",
    "ups",
    "modem",
    "controller-a",
    "controller-b",
    "battery",
    "temperature",
)
STATES = ("ok", "degraded", "failed", "missing", "recovering", "rebuilding", "overheat")
SEVERITIES = ("info", "notice", "warning", "error", "critical")
MODELS = ("ftServer 6800", "ftServer 4900", "continuum 1200", "vos 2500")
LOG_TEMPLATES = (
    "kernel: {dev}: link is {updown}",
    "raid: array {array} degraded, member {dev} removed",
    "smartd: Device: /dev/{dev}, {n} Currently unreadable (pending) sectors",
    "psu: {dev} input voltage {v} V out of range",
    "fan: {dev} speed {rpm} RPM below threshold",
    "ipmi: sensor {dev} reading {t} C crossed upper critical",
    "watchdog: service {svc} restarted after {n} s",
    "ntpd: time offset {ms} ms",
    "ecc: corrected error on {dev}, count {n}",
    "systemd: {svc}.service: main process exited, status={n}",
)
SERVICES = ("db", "billing", "switch", "mediation", "sshd", "ntpd", "callhome-agent")


def system(rng: random.Random) -> dict[str, Any]:
    return {
        "host": f"site{rng.randrange(1000):03d}-node{rng.randrange(8)}",
        "serial": f"SN{rng.randrange(10**9):09d}",
        "model": rng.choice(MODELS),
        "firmware": f"{rng.randrange(1, 9)}.{rng.randrange(20)}.{rng.randrange(100)}",
        "uptime": rng.randrange(10**7),
        "boots": rng.randrange(200),
    }


def log_lines(rng: random.Random, count: int) -> list[str]:
    lines = []
    for _ in range(count):
        template = rng.choice(LOG_TEMPLATES)
        lines.append(
            template.format(
                dev=rng.choice(COMPONENTS),
                updown=rng.choice(("up", "down")),
                array=f"md{rng.randrange(4)}",
                n=rng.randrange(300),
                v=rng.randrange(90, 260),
                rpm=rng.randrange(300, 9000),
                t=rng.randrange(40, 95),
                svc=rng.choice(SERVICES),
                ms=rng.randrange(-900, 900),
            )
        )
    return lines


def report(rng: random.Random, size: str = "medium") -> dict[str, Any]:
    components = {"small": 3, "medium": 8, "large": 18}[size]
    logs = {"small": 2, "medium": 10, "large": 30}[size]
    data: dict[str, Any] = {}
    for name in rng.sample(COMPONENTS, components):
        data[name] = {
            "state": rng.choice(STATES),
            "temp_c": rng.randrange(20, 90),
            "errors": rng.choice((0, 0, 0, 0, rng.randrange(1, 50))),
            "volts": round(rng.uniform(3.0, 12.5), 2),
        }
    component = rng.choice(COMPONENTS)
    return {
        "severity": rng.choice(SEVERITIES),
        "component": component,
        "state": rng.choice(STATES[1:]),
        "message": f"{component} reports {rng.choice(STATES[1:])}",
        "time": 1_764_000_000 + rng.randrange(10**7),
        "system": system(rng),
        "data": data,
        "counters": {f"err_{i}": rng.choice((0, 0, 0, rng.randrange(100))) for i in range(8)},
        "log": log_lines(rng, logs),
    }


def line_test(rng: random.Random) -> dict[str, Any]:
    return {
        "skew_ms": rng.randrange(-2000, 2000),
        "previous": {
            "result": rng.choice(("ok", "ok", "ok", "busy", "no-answer")),
            "connect_ms": rng.randrange(5000, 30000),
            "total_ms": rng.randrange(8000, 60000),
            "rate": rng.choice((2400, 9600, 14400, 28800, 31200, 33600)),
        },
    }


def inventory(rng: random.Random) -> dict[str, Any]:
    return {
        "system": system(rng),
        "components": [
            {"name": name, "state": "ok", "serial": f"C{rng.randrange(10**7)}"}
            for name in rng.sample(COMPONENTS, 10)
        ],
        "software": {svc: f"{rng.randrange(1, 5)}.{rng.randrange(10)}" for svc in SERVICES},
    }


def reference_set(seed: int = 2026) -> dict[str, dict[str, Any]]:
    """The benchmark's reports: small, medium, large, and 64 KiB of incompressible data."""
    rng = random.Random(seed)
    blob = random.Random(seed + 1).randbytes(65536)
    return {
        "small": report(rng, "small"),
        "medium": report(rng, "medium"),
        "large": report(rng, "large"),
        "64KiB": {
            "severity": "error",
            "component": "controller-a",
            "state": "failed",
            "message": "core dump",
            "blob": blob,
        },
        "line-test": line_test(rng),
    }
