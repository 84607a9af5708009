"""The `[supervision]` table of the centre's config file (centre.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modem_drivers.configfile import Table

from .engine import EngineConfig
from .incidents import GroupingConfig

FACTORS = ("port", "site", "exchange", "model", "carrier")
"""Device attributes outages may be grouped by."""


@dataclass(frozen=True)
class SupervisionSettings:
    enabled: bool = True
    engine: EngineConfig = field(default_factory=EngineConfig)
    grouping: GroupingConfig = field(default_factory=GroupingConfig)
    schedule_lead: float = 3600.0
    """How early a message may come and still count for a calendar slot."""
    exchange_digits: int = 6
    """How many leading digits of a caller ID name its exchange (a grouping factor)."""
    paths: dict[str, str] = field(default_factory=dict)
    """Bank port -> path name. Ports not named are the path "modem" (the ports of one
    hunt group are one path, since which of them answers is chance); the TCP
    listener's port "ip" is the path "ip"."""
    command_poll: float = 2.0
    lease_check: float = 2.0
    """How often a receiver tries supervision's lease, and its holder checks it (several
    receivers on one store): a dead leader is replaced within about this long."""
    """How often the running engine looks for operators' commands (ack, on test)."""
    probe: str | None = None
    """The centre's own test device (enrolled like a client, calling the bank on its
    own line): its silence puts the bank's inbound path in doubt."""
    port_silent_after: int = 20
    """A bank port that answered nothing while the others answered this many calls is
    a trouble (0: never)."""

    def path_of(self, port: str) -> str:
        # the TCP listener's calls come on the port named "ip" (the IP path)
        return self.paths.get(port, "ip" if port == "ip" else "modem")


def parse_supervision(table: Table) -> SupervisionSettings:
    """Read `[supervision]`; errors name the file and the key."""
    engine = EngineConfig(
        skew_bound=table.duration("skew_bound", "5m", minimum=1.0, maximum=30 * 86400.0),
        storm_threshold=table.number("storm_threshold", int, 100, minimum=0, maximum=10**6),
        storm_window=table.duration("storm_window", "1m", minimum=1.0, maximum=86400.0),
        storm_quiet=table.duration("storm_quiet", "10m", minimum=1.0, maximum=7 * 86400.0),
    )
    factors = table.strings("group_by", list(FACTORS[:4]))
    for index, factor in enumerate(factors):
        if factor not in FACTORS:
            raise table.error(f"group_by[{index}]", f"{factor!r}: one of {', '.join(FACTORS)}")
    grouping = GroupingConfig(
        factors=tuple(factors),
        window=table.duration("group_window", "10m", minimum=1.0, maximum=86400.0),
        threshold=table.number("group_threshold", int, 10, minimum=0, maximum=10**6),
        interval=table.duration("group_interval", "1m", minimum=1.0, maximum=86400.0),
    )
    paths_table = table.table("paths")
    paths = {port: paths_table.get(port, str) for port in list(paths_table.data)}
    for port, name in paths.items():
        if not name:
            raise paths_table.error(port, "expected a path name")
    paths_table.finish()
    settings = SupervisionSettings(
        enabled=table.get("enabled", bool, True),
        engine=engine,
        grouping=grouping,
        schedule_lead=table.duration("schedule_lead", "1h", minimum=0.0, maximum=12 * 3600.0),
        exchange_digits=table.number("exchange_digits", int, 6, minimum=1, maximum=15),
        paths=paths,
        command_poll=table.duration("command_poll", "2s", minimum=0.1, maximum=3600.0),
        lease_check=table.duration("lease_check", "2s", minimum=0.1, maximum=60.0),
        probe=table.get("probe_device", str, None) or None,
        port_silent_after=table.number("port_silent_after", int, 20, minimum=0, maximum=10**6),
    )
    table.finish()
    return settings
