"""The TRAINING corpus: reports in the shapes the agent sends (md, SMART, sensors, IPMI
SEL, logs, inventory as JSON), for building the compression dictionary only.

Never measure compression on these (see `benchmarks.corpora.evaluation`). The fixed
vocabulary of the tools (SMART attribute names, lm-sensors keys, SEL event texts, md
states) is what a dictionary should learn; hosts, devices, values and log messages
here are this module's own.
"""

from __future__ import annotations

import random
from typing import Any

SEED = 1807
SEVERITIES = ("info", "notice", "warning", "error", "critical")
HOSTS = ("ams-core", "fra-edge", "lon-db", "par-mx", "mad-app", "vie-sbc", "waw-gw")
ATA_MODELS = (
    "ST4000NM0035-1V4107",
    "WDC WD4002FYYZ-01B7CB1",
    "HGST HUS726T4TALA6L4",
    "TOSHIBA MG04ACA400N",
    "Samsung SSD 860 PRO 512GB",
    "INTEL SSDSC2KB480G8",
)
NVME_MODELS = ("SAMSUNG MZQLB960HAJR-00007", "INTEL SSDPE2KX020T8", "Micron_7300_MTFDHBE1T9TDF")
ATA_ATTRIBUTES = (
    (1, "Raw_Read_Error_Rate", 6),
    (3, "Spin_Up_Time", 0),
    (4, "Start_Stop_Count", 20),
    (5, "Reallocated_Sector_Ct", 10),
    (7, "Seek_Error_Rate", 45),
    (9, "Power_On_Hours", 0),
    (10, "Spin_Retry_Count", 97),
    (12, "Power_Cycle_Count", 20),
    (187, "Reported_Uncorrect", 0),
    (188, "Command_Timeout", 0),
    (190, "Airflow_Temperature_Cel", 40),
    (194, "Temperature_Celsius", 0),
    (195, "Hardware_ECC_Recovered", 0),
    (197, "Current_Pending_Sector", 0),
    (198, "Offline_Uncorrectable", 0),
    (199, "UDMA_CRC_Error_Count", 0),
)
SEL_EVENTS = (
    ("Power Supply", "PS1 Status", "Power Supply AC lost"),
    ("Power Supply", "PS2 Status", "Failure detected"),
    ("Fan", "FAN3", "Lower Critical going low"),
    ("Temperature", "CPU1 Temp", "Upper Critical going high"),
    ("Memory", "DIMM_B2", "Correctable ECC"),
    ("Drive Slot / Bay", "Drive 4", "Drive Fault"),
    ("System Event", "Log area reset/cleared", "Asserted"),
    ("Watchdog 2", "OS Watchdog", "Hard reset"),
    ("Voltage", "12V", "Upper Non-critical going high"),
)
DAEMONS = ("kernel", "smartd", "mdadm", "systemd", "chronyd", "sshd", "ipmievd", "multipathd")
LOGS = (
    "md/raid1:{md}: Disk failure on {dev}, disabling device.",
    "md/raid1:{md}: Operation continuing on 1 devices.",
    "sd {scsi}: [{dev}] tag#{n} FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE",
    "blk_update_request: I/O error, dev {dev}, sector {sector} op 0x0:(READ)",
    "Device: /dev/{dev} [SAT], {n} Currently unreadable (pending) sectors",
    "Device: /dev/{dev} [SAT], SMART Usage Attribute: 194 Temperature_Celsius changed "
    "from {t} to {t2}",
    "EDAC MC0: 1 CE memory read error on CPU_SrcID#0_Ha#0_Chan#1_DIMM#0 (page:0x{hex})",
    "{svc}.service: Main process exited, code=exited, status=1/FAILURE",
    "{svc}.service: Failed with result 'exit-code'.",
    "Selected source {ip} (ntp.example.net)",
    "ipmievd: SEL: {sel}",
    "mce: [Hardware Error]: Machine check events logged",
    "e1000e 0000:00:1f.6 eno1: NIC Link is Down",
)
SERVICES = ("postgresql", "asterisk", "kamailio", "nginx", "callhome-agent", "rsyslog")


def _host(rng: random.Random) -> dict[str, Any]:
    return {
        "host": f"{rng.choice(HOSTS)}{rng.randrange(1, 40):02d}",
        "serial": f"CZ{rng.randrange(10**8):08d}",
        "model": rng.choice(("ProLiant DL380 Gen10", "PowerEdge R740", "ThinkSystem SR650")),
        "agent": f"1.{rng.randrange(6)}.{rng.randrange(12)}",
    }


def _syslog(rng: random.Random, count: int) -> list[str]:
    lines = []
    for _ in range(count):
        text = rng.choice(LOGS).format(
            md=f"md{rng.randrange(4)}",
            dev=f"sd{'abcdef'[rng.randrange(6)]}",
            scsi=f"{rng.randrange(8)}:0:{rng.randrange(4)}:0",
            n=rng.randrange(1, 900),
            sector=rng.randrange(10**9),
            t=rng.randrange(30, 50),
            t2=rng.randrange(50, 70),
            hex=f"{rng.randrange(16**6):x}",
            svc=rng.choice(SERVICES),
            ip=f"10.{rng.randrange(255)}.{rng.randrange(255)}.{rng.randrange(255)}",
            sel=" | ".join(rng.choice(SEL_EVENTS)),
        )
        lines.append(
            f"{rng.choice(('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun'))} {rng.randrange(1, 29):2d} "
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} "
            f"{rng.choice(DAEMONS)}[{rng.randrange(100, 30000)}]: {text}"
        )
    return lines


def _head(rng: random.Random, component: str, state: str) -> dict[str, Any]:
    return {
        "severity": rng.choice(SEVERITIES),
        "component": component,
        "state": state,
        "message": f"{component} is {state}",
        "time": 1_760_000_000 + rng.randrange(10**7),
        "system": _host(rng),
    }


def md(rng: random.Random) -> dict[str, Any]:
    name = f"md{rng.randrange(4)}"
    disks = [f"sd{c}{rng.randrange(1, 4)}" for c in "abcd"[: rng.choice((2, 2, 4))]]
    failed = rng.choice(disks)
    members = [
        {"name": d, "state": "faulty" if d == failed else "active sync", "slot": i}
        for i, d in enumerate(disks)
    ]
    level = "raid1" if len(disks) == 2 else rng.choice(("raid5", "raid6", "raid10"))
    blocks = rng.randrange(10**8, 10**9)
    status = "".join("_" if d == failed else "U" for d in disks)
    mdstat = (
        f"Personalities : [raid1] [raid6] [raid5] [raid4] [raid10]\n{name} : active "
        f"{level} "
        + " ".join(f"{d}[{i}]" + ("(F)" if d == failed else "") for i, d in enumerate(disks))
        + f"\n      {blocks} blocks super 1.2 [{len(disks)}/{len(disks) - 1}] [{status}]\n"
        "      bitmap: 2/8 pages [8KB], 65536KB chunk\n\nunused devices: <none>\n"
    )
    report = _head(rng, name, "degraded")
    report["data"] = {
        "arrays": [
            {
                "device": f"/dev/{name}",
                "level": level,
                "state": "clean, degraded",
                "raid_devices": len(disks),
                "active_devices": len(disks) - 1,
                "failed_devices": 1,
                "spare_devices": 0,
                "uuid": f"{rng.randrange(16**32):032x}",
                "members": members,
            }
        ],
        "mdstat": mdstat,
    }
    report["log"] = _syslog(rng, rng.randrange(2, 8))
    return report


def smart(rng: random.Random) -> dict[str, Any]:
    dev = f"/dev/sd{'abcdefgh'[rng.randrange(8)]}"
    table = []
    for ident, name, thresh in ATA_ATTRIBUTES:
        value = rng.choice((100, 100, 99, 98, 253, 200, 117, 64))
        raw = rng.choice((0, 0, 0, rng.randrange(1, 50000)))
        table.append(
            {
                "id": ident,
                "name": name,
                "value": value,
                "worst": value - rng.randrange(3),
                "thresh": thresh,
                "when_failed": "",
                "flags": {
                    "value": rng.choice((50, 51, 34, 50, 18, 26)),
                    "string": rng.choice(("POSR-K ", "PO--CK ", "-O--CK ", "PO-R-- ")),
                },
                "raw": {"value": raw, "string": str(raw)},
            }
        )
    report = _head(rng, dev, rng.choice(("failing", "pending sectors", "ok")))
    report["data"] = {
        "smartctl": {"version": [7, rng.choice((2, 3, 4))], "exit_status": rng.choice((0, 4, 64))},
        "device": {"name": dev, "info_name": f"{dev} [SAT]", "type": "sat", "protocol": "ATA"},
        "model_name": rng.choice(ATA_MODELS),
        "serial_number": f"{rng.randrange(16**8):08X}",
        "firmware_version": rng.choice(("SN05", "RA04", "0B3", "RVT04B6Q")),
        "user_capacity": {"blocks": 7814037168, "bytes": 4000787030016},
        "smart_status": {"passed": rng.random() < 0.6},
        "ata_smart_attributes": {"revision": 10, "table": rng.sample(table, rng.randrange(8, 16))},
        "power_on_time": {"hours": rng.randrange(100, 60000)},
        "power_cycle_count": rng.randrange(5, 200),
        "temperature": {"current": rng.randrange(25, 60)},
    }
    if rng.random() < 0.3:
        report["data"]["nvme_smart_health_information_log"] = {
            "critical_warning": 0,
            "temperature": rng.randrange(30, 70),
            "available_spare": 100,
            "available_spare_threshold": 10,
            "percentage_used": rng.randrange(0, 30),
            "data_units_read": rng.randrange(10**9),
            "data_units_written": rng.randrange(10**9),
            "media_errors": rng.randrange(3),
            "num_err_log_entries": rng.randrange(50),
            "unsafe_shutdowns": rng.randrange(40),
        }
        report["data"]["model_name"] = rng.choice(NVME_MODELS)
    return report


def sensors(rng: random.Random) -> dict[str, Any]:
    chips: dict[str, Any] = {
        "coretemp-isa-0000": {"Adapter": "ISA adapter"},
        "nct6775-isa-0290": {"Adapter": "ISA adapter"},
    }
    for core in range(rng.choice((4, 8))):
        chips["coretemp-isa-0000"][f"Core {core}"] = {
            f"temp{core + 2}_input": float(rng.randrange(30, 95)),
            f"temp{core + 2}_max": 84.0,
            f"temp{core + 2}_crit": 100.0,
            f"temp{core + 2}_crit_alarm": 0.0,
        }
    for fan in range(1, 5):
        chips["nct6775-isa-0290"][f"fan{fan}"] = {
            f"fan{fan}_input": float(rng.choice((0, rng.randrange(400, 3000)))),
            f"fan{fan}_min": 300.0,
            f"fan{fan}_alarm": float(rng.random() < 0.2),
        }
    for volt in range(0, 6):
        chips["nct6775-isa-0290"][f"in{volt}"] = {
            f"in{volt}_input": round(rng.uniform(0.8, 3.4), 3),
            f"in{volt}_min": 0.0,
            f"in{volt}_max": 1.744,
            f"in{volt}_alarm": 0.0,
        }
    report = _head(rng, rng.choice(("fan2", "cpu0", "vcore")), rng.choice(("overheat", "low")))
    report["data"] = {"sensors": chips}
    return report


def sel(rng: random.Random) -> dict[str, Any]:
    entries = []
    for index in range(rng.randrange(3, 14)):
        kind, sensor, event = rng.choice(SEL_EVENTS)
        entries.append(
            f"{index + 1:4x} | {rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}/"
            f"2026 | {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
            f"{rng.randrange(60):02d} | {kind} {sensor} | {event} | "
            f"{rng.choice(('Asserted', 'Deasserted'))}"
        )
    report = _head(rng, "bmc", "events")
    report["data"] = {
        "sel": entries,
        "sel_info": {
            "entries": len(entries),
            "free_space": rng.randrange(1000, 16000),
            "percent_used": rng.randrange(1, 99),
        },
    }
    return report


def logs(rng: random.Random) -> dict[str, Any]:
    report = _head(rng, rng.choice(SERVICES), rng.choice(("failed", "restarted", "flapping")))
    report["log"] = _syslog(rng, rng.randrange(5, 40))
    return report


def inventory(rng: random.Random) -> dict[str, Any]:
    return {
        "system": _host(rng),
        "time": 1_760_000_000 + rng.randrange(10**7),
        "bios": {
            "vendor": rng.choice(("HPE", "Dell Inc.", "Lenovo")),
            "version": f"U{rng.randrange(30, 50)} v{rng.randrange(1, 3)}.{rng.randrange(90)}",
            "date": f"{rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}/2025",
        },
        "cpus": [
            {
                "socket": f"Proc {i + 1}",
                "model": "Intel(R) Xeon(R) Gold 6230R CPU @ 2.10GHz",
                "cores": 26,
                "threads": 52,
            }
            for i in range(2)
        ],
        "memory": [
            {
                "locator": f"PROC {1 + i // 6} DIMM {1 + i % 6}",
                "size_mb": 32768,
                "type": "DDR4",
                "speed_mts": 2933,
                "manufacturer": "HPE",
                "serial": f"{rng.randrange(16**8):08X}",
                "part": "P03052-091",
            }
            for i in range(rng.choice((4, 8, 12)))
        ],
        "disks": [
            {
                "name": f"sd{c}",
                "model": rng.choice(ATA_MODELS),
                "serial": f"{rng.randrange(16**8):08X}",
                "size_bytes": 4000787030016,
            }
            for c in "abcd"[: rng.randrange(2, 5)]
        ],
        "nics": [
            {
                "name": n,
                "mac": ":".join(f"{rng.randrange(256):02x}" for _ in range(6)),
                "driver": rng.choice(("i40e", "bnxt_en", "ixgbe")),
                "firmware": f"{rng.randrange(1, 9)}.{rng.randrange(50)}",
            }
            for n in ("eno1", "eno2")
        ],
        "packages": {
            p: f"{rng.randrange(1, 16)}.{rng.randrange(20)}.{rng.randrange(9)}"
            for p in (
                "linux-image",
                "openssl",
                "mdadm",
                "smartmontools",
                "ipmitool",
                "lm-sensors",
                "callhome",
            )
        },
    }


def line_test(rng: random.Random) -> dict[str, Any]:
    return {
        "time": 1_760_000_000 + rng.randrange(10**7),
        "skew_ms": rng.randrange(-900, 900),
        "previous": {
            "result": "ok",
            "connect_ms": rng.randrange(8000, 25000),
            "total_ms": rng.randrange(10000, 40000),
            "rate": rng.choice((2400, 14400, 31200, 33600)),
        },
    }


SHAPES = (md, smart, sensors, sel, logs, inventory)


def corpus(count: int = 600, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    items = [SHAPES[index % len(SHAPES)](rng) for index in range(count)]
    return items + [line_test(rng) for _ in range(count // 10)]


# -- what the agent sends (callhome/client/agent): its own message shapes ---------------
#
# The field names and the collectors' wording are the project's (docs/protocol.md §10,
# callhome/client/agent/collectors), fixed like a tool's vocabulary; the checks, values
# and hosts here are this module's own. Built with the agent's own content functions.

STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")


def _check_and_text(rng: random.Random) -> tuple[str, str, float | None, str | None]:
    kind = rng.randrange(8)
    if kind == 0:
        md = f"md{rng.randrange(4)}"
        total = rng.choice((2, 4))
        text = rng.choice(
            (
                f"raid1: degraded, {total - 1} of {total} members",
                f"raid1: clean, {total} of {total} members",
                f"raid1: failed member sd{'abcd'[rng.randrange(4)]}1",
                f"raid1: degraded, {total - 1} of {total} members; recovery "
                f"{rng.uniform(0, 99):.1f}% at {rng.uniform(20, 200):.1f} MiB/s, "
                f"{rng.uniform(1, 300):.1f} min left",
            )
        )
        return f"md/{md}", text, float(total - 1), "members"
    if kind == 1:
        dev = f"sd{'abcdef'[rng.randrange(6)]}"
        text = rng.choice(
            (
                "healthy",
                f"Reallocated_Sector_Ct {rng.randrange(1, 90)}",
                f"Current_Pending_Sector {rng.randrange(1, 90)}",
                "SMART overall-health self-assessment FAILED",
                "SMART not available or not enabled",
            )
        )
        return f"smart/{dev}", text, None, None
    if kind == 2:
        dev = f"sd{'abcdef'[rng.randrange(6)]}"
        temp = rng.randrange(30, 70)
        return f"smart/{dev}/temperature", f"{temp} °C", float(temp), "C"
    if kind == 3:
        core = rng.randrange(8)
        temp = rng.randrange(40, 100)
        why = rng.choice(("", " (high 84 °C)", " (critical 100 °C)"))
        return f"hwmon/coretemp/temp{core + 2}", f"Core {core}: {temp} °C{why}", float(temp), "C"
    if kind == 4:
        fan = rng.randrange(1, 5)
        rpm = rng.choice((0, rng.randrange(300, 3000)))
        return f"hwmon/nct6775/fan{fan}", f"{rpm} RPM (minimum 300 RPM)", float(rpm), "RPM"
    if kind == 5:
        unit = rng.choice(SERVICES)
        return (
            f"systemd/{unit}.service",
            rng.choice(("failed", f"failed ({unit} server)", "no longer failed")),
            None,
            None,
        )
    if kind == 6:
        mount = rng.choice(("/", "/var", "/srv", "/home", "/var/lib/postgresql"))
        used = rng.uniform(50, 100)
        return f"fs{mount}", f"{used:.3g}% used", float(f"{used:.3g}"), "%"
    entries = rng.randrange(1, 40)
    _kind, sensor, event = rng.choice(SEL_EVENTS)
    return (
        "ipmi/sel",
        f"{entries} problem events; last 2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        f" {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
        f" {sensor}: {event}",
        float(entries),
        None,
    )


def agent_event(rng: random.Random) -> dict[str, Any]:
    from callhome.wire.messages import agent_event_content

    check, text, value, unit = _check_and_text(rng)
    now = 1_760_000_000 + rng.randrange(10**7)
    state, previous = rng.sample(STATES[:3], 2)
    return agent_event_content(
        check=check,
        event=rng.choice(("change", "change", "change", "flapping", "stable")),
        state=state,
        previous=previous,
        since=now - rng.randrange(0, 600),
        time=now,
        text=text,
        value=value,
        unit=unit,
    )


def agent_line_test(rng: random.Random) -> dict[str, Any]:
    from callhome.wire.messages import agent_line_test_content

    checks = rng.randrange(3, 30)
    bad = rng.randrange(0, 3)
    health = f"{checks} checks: {checks - bad} OK" + (
        f", {bad} WARNING ({', '.join(_check_and_text(rng)[0] for _ in range(bad))})" if bad else ""
    )
    return agent_line_test_content(line_test(rng), health)


def agent_corpus(count: int = 600, seed: int = SEED + 1) -> list[dict[str, Any]]:
    """The agent's own messages: events, and line tests with their health line."""
    rng = random.Random(seed)
    return [agent_event(rng) if i % 4 else agent_line_test(rng) for i in range(count)]
