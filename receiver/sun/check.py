"""The coverage check: walk every hand-over of a period and list what would go wrong
before it does. Sans-IO: the period is a parameter.

- gap: nobody has the watch, or the centre on duty is out of hours and its roster has
  nobody on call;
- overlap: two centres open at the same instant (a tie the order of the sites breaks),
  or two overrides of one roster naming different people for the same time;
- nobody: an escalation step that would notify nobody (it would be skipped).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta

from .model import Routing, Site
from .schedule import Handover, Schedule, roster_timeline


@dataclass(frozen=True)
class Finding:
    kind: str
    """"gap", "overlap" or "nobody"."""
    start: datetime
    end: datetime
    text: str


@dataclass
class Coverage:
    start: datetime
    end: datetime
    handovers: list[Handover]
    findings: list[Finding]
    open_hours: dict[str, float]
    """Hours each centre has the watch within its business hours."""
    out_of_hours: dict[str, float]

    @property
    def ok(self) -> bool:
        return not self.findings


def _merge(findings: list[Finding]) -> list[Finding]:
    """Adjacent findings that say the same thing become one."""
    out: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.kind, f.text, f.start)):
        last = out[-1] if out else None
        if (
            last
            and (last.kind, last.text) == (finding.kind, finding.text)
            and (finding.start <= last.end)
        ):
            out[-1] = Finding(last.kind, last.start, max(last.end, finding.end), last.text)
        else:
            out.append(finding)
    return sorted(out, key=lambda f: (f.start, f.kind, f.text))


def _nobody(
    routing: Routing, roster_name: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    roster = routing.rosters[roster_name]
    return [(s.start, s.end) for s in roster_timeline(roster, start, end) if s.person is None]


def check(routing: Routing, start: datetime, days: int) -> Coverage:
    end = start + timedelta(days=days)
    schedule = Schedule(routing)
    watches = schedule.timeline(start, end)
    findings: list[Finding] = []
    open_hours = {site.name: 0.0 for site in routing.sites}
    out_of_hours = dict(open_hours)

    for watch in watches:
        if watch.site is None:
            findings.append(Finding("gap", watch.start, watch.end, "no centre has the watch"))
            continue
        hours = (watch.end - watch.start).total_seconds() / 3600
        (open_hours if watch.open else out_of_hours)[watch.site.name] += hours
        if watch.open:
            continue
        if watch.site.roster is None:
            findings.append(
                Finding(
                    "gap",
                    watch.start,
                    watch.end,
                    f"{watch.site.name} has the watch out of hours and no roster",
                )
            )
            continue
        for begin, finish in _nobody(routing, watch.site.roster, watch.start, watch.end):
            findings.append(
                Finding(
                    "gap",
                    begin,
                    finish,
                    f"{watch.site.name} has the watch out of hours and nobody is on call "
                    f"in roster {watch.site.roster}",
                )
            )

    # ties: two centres that open at the same instant
    openings: dict[datetime, list[Site]] = {}
    for site in routing.sites:
        for begin, _ in schedule.intervals(site, start, end):
            if begin >= start:
                openings.setdefault(begin, []).append(site)
    for moment, sites in openings.items():
        if len(sites) > 1:
            names = ", ".join(site.name for site in sites)
            findings.append(
                Finding(
                    "overlap",
                    moment,
                    moment,
                    f"{names} open at the same instant; {sites[0].name} (listed first) "
                    "takes the watch",
                )
            )
    for roster in routing.rosters.values():
        for first, second in itertools.combinations(roster.overrides, 2):
            begin, finish = max(first.start, second.start), min(first.end, second.end)
            if begin < finish and first.who != second.who and finish > start and begin < end:
                findings.append(
                    Finding(
                        "overlap",
                        begin,
                        finish,
                        f"roster {roster.name}: overrides for {first.who} and {second.who} "
                        f"overlap ({second.who}, listed later, wins)",
                    )
                )

    for policy in routing.policies.values():
        for number, step in enumerate(policy.steps, start=1):
            label = f"policy {policy.name} step {number}"
            for target in step.targets:
                kind, _, name = target.partition(":")
                if kind == "centre":
                    for watch in watches:
                        if watch.site is not None and watch.site.contact.empty:
                            findings.append(
                                Finding(
                                    "nobody",
                                    watch.start,
                                    watch.end,
                                    f"{label}: centre {watch.site.name} has no address",
                                )
                            )
                elif kind == "centres" and all(s.contact.empty for s in routing.sites):
                    findings.append(
                        Finding("nobody", start, end, f"{label}: no centre has an address")
                    )
                elif kind == "oncall":
                    for watch in watches:
                        if watch.site is None or watch.site.roster is None:
                            findings.append(
                                Finding(
                                    "nobody",
                                    watch.start,
                                    watch.end,
                                    f"{label}: oncall: the centre on duty has no roster",
                                )
                            )
                            continue
                        for begin, finish in _nobody(
                            routing, watch.site.roster, watch.start, watch.end
                        ):
                            findings.append(
                                Finding(
                                    "nobody",
                                    begin,
                                    finish,
                                    f"{label}: oncall: nobody in roster {watch.site.roster}",
                                )
                            )
                elif kind == "roster":
                    for begin, finish in _nobody(routing, name, start, end):
                        findings.append(
                            Finding("nobody", begin, finish, f"{label}: nobody in roster {name}")
                        )
                elif kind == "person" and routing.people[name].empty:
                    findings.append(
                        Finding("nobody", start, end, f"{label}: {name} has no address")
                    )
                elif kind == "group" and all(
                    routing.people[member].empty for member in routing.groups[name]
                ):
                    findings.append(
                        Finding("nobody", start, end, f"{label}: nobody to reach in group {name}")
                    )

    return Coverage(
        start,
        end,
        schedule.handovers(start, end),
        _merge(findings),
        open_hours,
        out_of_hours,
    )
