"""The EVALUATION corpus: held-out reports, never used to build a dictionary.

Written apart from `benchmarks.corpora.training`: other sites and hosts, other drives,
sensor chips, SEL events and log messages, journald timestamps instead of syslog ones,
other value ranges, reports that combine several sections, and sections the training
corpus does not have (a UPS, multipath, a kernel oops). Only what the tools fix (SMART
attribute names, lm-sensors key patterns, md and SEL wording) is shared, as it would be
in the field. Compression figures are measured here and only here.
"""

from __future__ import annotations

import random
from typing import Any

SEED = 4242
SITES = ("nyc3", "sjc1", "gru2", "syd4", "nrt1", "jnb1", "yyz2", "dxb1")
ROLES = ("pbx", "sbc", "hlr", "vm", "billing", "edge", "store")
DRIVES = (
    ("ST16000NM001G-2KK103", "SN03"),
    ("MTFDDAK960TDS", "D3MU001"),
    ("KINGSTON SEDC500M960G", "SCEKJ2.3"),
    ("WUH721816ALE6L4", "PCGNW232"),
    ("Samsung SSD 883 DCT 960GB", "HXT7404Q"),
    ("TOSHIBA MG08ACA16TE", "0102"),
)
ATTRS = (
    (1, "Raw_Read_Error_Rate"),
    (5, "Reallocated_Sector_Ct"),
    (9, "Power_On_Hours"),
    (12, "Power_Cycle_Count"),
    (173, "Wear_Leveling_Count"),
    (177, "Wear_Leveling_Count"),
    (183, "Runtime_Bad_Block"),
    (184, "End-to-End_Error"),
    (187, "Reported_Uncorrect"),
    (190, "Airflow_Temperature_Cel"),
    (192, "Power-Off_Retract_Count"),
    (193, "Load_Cycle_Count"),
    (194, "Temperature_Celsius"),
    (197, "Current_Pending_Sector"),
    (198, "Offline_Uncorrectable"),
    (199, "UDMA_CRC_Error_Count"),
    (241, "Total_LBAs_Written"),
    (242, "Total_LBAs_Read"),
)
JOURNAL = (
    ("kernel", "ata{n}.00: exception Emask 0x0 SAct 0x{hex} SErr 0x0 action 0x0"),
    ("kernel", "ata{n}.00: failed command: READ FPDMA QUEUED"),
    ("kernel", "md: recovery of RAID array {md}"),
    ("kernel", "nvme nvme{k}: I/O {n} QID {k} timeout, aborting"),
    ("kernel", "mlx5_core 0000:{bus}:00.0: Port module event: module 0, Cable unplugged"),
    ("kernel", "BUG: soft lockup - CPU#{k} stuck for 22s! [kworker/{k}:1:{pid}]"),
    ("smartd", "Device: /dev/{dev} [SAT], ATA error count increased from {n} to {n2}"),
    ("smartd", "Device: /dev/{dev} [SAT], FAILED SMART self-check. BACK UP DATA NOW!"),
    ("multipathd", "{mp}: remaining active paths: {k}"),
    ("multipathd", "checker failed path {maj}:{n} in map {mp}"),
    ("apcupsd", "Power failure."),
    ("apcupsd", "Running on UPS batteries."),
    ("freeswitch", "mod_sofia: gateway {gw} state change TRYING -> FAIL_WAIT"),
    ("opensips", "ERROR:tm:t_forward_nonack: no more branches to fork"),
    ("postgres", "LOG:  checkpoints are occurring too frequently ({n} seconds apart)"),
    ("crond", "(root) CMD (/usr/local/sbin/backup.sh --incremental)"),
)
SEL = (
    "Processor #0x0{k} | IERR | Asserted",
    "Power Unit #0x{k}1 | Redundancy Lost | Asserted",
    "Critical Interrupt #0x{k}4 | PCI PERR | Asserted",
    "Memory #0x{k}2 | Uncorrectable ECC | Asserted",
    "Temperature #0x3{k} | Upper Non-recoverable going high | Asserted",
    "Fan #0x5{k} | Fully Redundant | Deasserted",
    "Event Logging Disabled #0x0{k} | Log area reset/cleared | Asserted",
    "Physical Security #0x{k}7 | General Chassis intrusion | Asserted",
)


def _ts(rng: random.Random) -> str:
    return (
        f"2026-{rng.randrange(7, 12):02d}-{rng.randrange(1, 31):02d}T"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
        f".{rng.randrange(10**6):06d}+0000"
    )


def journal(rng: random.Random, host: str, count: int) -> list[str]:
    out = []
    for _ in range(count):
        unit, text = rng.choice(JOURNAL)
        text = text.format(
            n=rng.randrange(1, 600),
            n2=rng.randrange(600, 900),
            hex=f"{rng.randrange(16**4):x}",
            md=f"md{rng.randrange(10, 130)}",
            k=rng.randrange(8),
            pid=rng.randrange(100, 99999),
            dev=f"sd{'ghijklmn'[rng.randrange(8)]}",
            bus=f"{rng.randrange(16, 255):02x}",
            mp=f"mpath{'abcdef'[rng.randrange(6)]}",
            maj=rng.choice((8, 65, 253)),
            gw=f"carrier{rng.randrange(1, 5)}",
        )
        pid = "" if unit == "kernel" else f"[{rng.randrange(300, 65000)}]"
        out.append(f"{_ts(rng)} {host} {unit}{pid}: {text}")
    return out


def _who(rng: random.Random) -> tuple[str, dict[str, Any]]:
    host = f"{rng.choice(ROLES)}-{rng.randrange(1, 99):02d}.{rng.choice(SITES)}.example.com"
    return host, {
        "hostname": host,
        "serial": f"{rng.choice(('MXQ', 'J30', '7Z'))}{rng.randrange(10**7):07d}",
        "platform": rng.choice(
            (
                "Supermicro SYS-1029U-TR4",
                "Dell PowerEdge R650",
                "Cisco UCSC-C220-M5SX",
                "Gigabyte R282-Z90",
            )
        ),
        "os": rng.choice(("Rocky Linux 9.4", "Debian 12.7", "Ubuntu 24.04.1 LTS")),
        "kernel": f"{rng.choice(('5.14.0', '6.1.0', '6.8.0'))}-{rng.randrange(20, 500)}",
        "agent_version": f"2.{rng.randrange(3)}.{rng.randrange(30)}",
    }


def _envelope(
    rng: random.Random, severity: str, component: str, state: str, message: str
) -> tuple[str, dict[str, Any]]:
    host, who = _who(rng)
    return host, {
        "severity": severity,
        "component": component,
        "state": state,
        "message": message,
        "time": 1_790_000_000 + rng.randrange(10**7),
        "host": who,
    }


def raid(rng: random.Random) -> dict[str, Any]:
    name = f"md{rng.randrange(10, 130)}"
    count = rng.choice((3, 4, 6, 8))
    members = [f"nvme{i}n1p2" if rng.random() < 0.3 else f"sd{'ghijklmn'[i]}" for i in range(count)]
    level = rng.choice(("raid6", "raid10", "raid5"))
    done = rng.uniform(0, 99.9)
    host, report = _envelope(
        rng, "warning", name, "recovering", f"{name} rebuilding onto a spare, {done:.1f}% done"
    )
    report["raid"] = {
        "mdstat": f"{name} : active {level} "
        + " ".join(f"{m}[{i}]" for i, m in enumerate(members))
        + f"\n      {rng.randrange(10**9, 10**10)} blocks super 1.2 level {level[-1]}, 512k chunk, "
        f"algorithm 2 [{count}/{count - 1}] [{'U' * (count - 1)}_]\n      [{'=' * int(done // 5)}>"
        f"{'.' * (20 - int(done // 5))}]  recovery = {done:.1f}% "
        f"({rng.randrange(10**8)}/{rng.randrange(10**9)}) finish={rng.uniform(1, 900):.1f}min "
        f"speed={rng.randrange(20000, 200000)}K/sec\n",
        "detail": {
            "Raid Level": level,
            "Array Size": f"{rng.randrange(1, 60)} TiB",
            "State": "clean, degraded, recovering",
            "Active Devices": count - 1,
            "Working Devices": count,
            "Failed Devices": 0,
            "Spare Devices": 1,
            "Rebuild Status": f"{int(done)}% complete",
            "Events": rng.randrange(10**5),
        },
    }
    report["journal"] = journal(rng, host, rng.randrange(1, 6))
    return report


def disk(rng: random.Random) -> dict[str, Any]:
    model, firmware = rng.choice(DRIVES)
    dev = f"sd{'ghijklmn'[rng.randrange(8)]}"
    pending = rng.randrange(1, 400)
    host, report = _envelope(
        rng,
        rng.choice(("warning", "error")),
        f"/dev/{dev}",
        "pending sectors",
        f"{pending} sectors pending reallocation on {dev}",
    )
    rows = []
    for ident, name in rng.sample(ATTRS, rng.randrange(10, len(ATTRS))):
        norm = rng.randrange(60, 201)
        raw = pending if ident == 197 else rng.choice((0, rng.randrange(10**6)))
        rows.append(
            {
                "id": ident,
                "name": name,
                "value": norm,
                "worst": norm,
                "thresh": rng.choice((0, 0, 10, 36, 45)),
                "raw": {"value": raw, "string": str(raw)},
            }
        )
    report["smart"] = {
        "device": {"name": f"/dev/{dev}", "type": "sat"},
        "model_name": model,
        "serial_number": f"Z{rng.randrange(36**7):X}",
        "firmware_version": firmware,
        "rotation_rate": rng.choice((0, 7200)),
        "smart_status": {"passed": False},
        "ata_smart_attributes": {"table": sorted(rows, key=lambda r: r["id"])},
        "ata_smart_error_log": {"summary": {"count": rng.randrange(1, 90)}},
        "ata_smart_self_test_log": {
            "standard": {
                "table": [
                    {
                        "type": {"string": "Extended offline"},
                        "status": {"string": "Completed: read failure", "passed": False},
                        "lifetime_hours": rng.randrange(10**4),
                        "lba": rng.randrange(10**9),
                    }
                ]
            }
        },
        "temperature": {"current": rng.randrange(28, 52)},
    }
    report["journal"] = journal(rng, host, rng.randrange(0, 4))
    return report


def thermal(rng: random.Random) -> dict[str, Any]:
    _, report = _envelope(
        rng, "critical", "cpu-package", "overheat", "package temperature above critical for 40 s"
    )
    chips: dict[str, Any] = {
        "k10temp-pci-00c3": {
            "Adapter": "PCI adapter",
            "Tctl": {"temp1_input": float(rng.randrange(60, 99))},
            "Tccd1": {"temp3_input": float(rng.randrange(60, 99))},
        },
        "acpitz-acpi-0": {
            "Adapter": "ACPI interface",
            "temp1": {"temp1_input": float(rng.randrange(20, 60)), "temp1_crit": 105.0},
        },
        "it8728-isa-0a30": {"Adapter": "ISA adapter"},
    }
    for fan in range(1, rng.randrange(3, 7)):
        chips["it8728-isa-0a30"][f"fan{fan}"] = {
            f"fan{fan}_input": float(rng.randrange(0, 9000)),
            f"fan{fan}_min": float(rng.choice((0, 600))),
            f"fan{fan}_alarm": 0.0,
        }
    for label in ("in0", "in1", "3VSB", "Vbat"):
        chips["it8728-isa-0a30"][label] = {
            "in_input": round(rng.uniform(0.5, 3.6), 3),
            "in_max": 3.06,
        }
    report["sensors"] = chips
    report["trend"] = [round(rng.uniform(80, 100), 1) for _ in range(rng.randrange(5, 30))]
    return report


def bmc(rng: random.Random) -> dict[str, Any]:
    _, report = _envelope(rng, "error", "bmc", "sel", "new SEL entries since the last call")
    report["sel"] = [
        {"id": i + 1, "when": _ts(rng)[:19], "event": rng.choice(SEL).format(k=rng.randrange(1, 9))}
        for i in range(rng.randrange(2, 20))
    ]
    report["bmc"] = {
        "firmware": f"{rng.randrange(1, 6)}.{rng.randrange(90):02d}",
        "ipmi_version": "2.0",
        "sel_used_percent": rng.randrange(100),
    }
    return report


def service(rng: random.Random) -> dict[str, Any]:
    unit = rng.choice(("freeswitch", "opensips", "postgres", "multipathd", "apcupsd"))
    host, report = _envelope(
        rng,
        rng.choice(("notice", "warning", "error")),
        unit,
        rng.choice(("restarted", "degraded", "down")),
        f"{unit} restarted {rng.randrange(2, 9)} times in an hour",
    )
    report["journal"] = journal(rng, host, rng.randrange(6, 45))
    if unit == "apcupsd":
        report["ups"] = {
            "STATUS": "ONBATT",
            "LINEV": f"{rng.uniform(0, 20):.1f} Volts",
            "BCHARGE": f"{rng.uniform(20, 100):.1f} Percent",
            "TIMELEFT": f"{rng.uniform(2, 40):.1f} Minutes",
            "MODEL": "Smart-UPS 1500",
        }
    if unit == "multipathd":
        report["paths"] = {f"mpath{c}": {"active": rng.randrange(0, 4), "total": 4} for c in "abcd"}
    return report


def oops(rng: random.Random) -> dict[str, Any]:
    host, report = _envelope(rng, "critical", "kernel", "oops", "kernel oops, system kept running")
    frames = [
        f" {rng.choice(('? ', ''))}{fn}+0x{rng.randrange(16**3):x}/0x{rng.randrange(16**3):x}"
        for fn in rng.sample(
            (
                "__schedule",
                "blk_mq_run_hw_queue",
                "nvme_queue_rq",
                "process_one_work",
                "worker_thread",
                "kthread",
                "ret_from_fork",
                "mlx5e_napi_poll",
                "net_rx_action",
            ),
            6,
        )
    ]
    report["oops"] = {
        "trace": ["Call Trace:", *frames],
        "tainted": rng.choice(("G           OE", "G        W  OE")),
    }
    report["journal"] = journal(rng, host, rng.randrange(2, 10))
    return report


def hardware(rng: random.Random) -> dict[str, Any]:
    _, who = _who(rng)
    return {
        "host": who,
        "collected": _ts(rng),
        "board": {
            "vendor": "Supermicro",
            "product": rng.choice(("X11DPU", "H12SSL-i")),
            "bios": f"{rng.randrange(1, 4)}.{rng.randrange(10)}a",
        },
        "dimms": [
            {
                "slot": f"P{1 + i % 2}-DIMM{'ABCDEF'[i // 2]}1",
                "gb": rng.choice((16, 32, 64)),
                "mfr": rng.choice(("Micron", "SK Hynix", "Samsung")),
                "pn": rng.choice(("36ASF4G72PZ-2G9E2", "HMA84GR7CJR4N-WM")),
                "sn": f"{rng.randrange(16**8):08x}",
            }
            for i in range(rng.randrange(2, 12))
        ],
        "storage": [
            {"dev": f"/dev/{d}", "model": rng.choice(DRIVES)[0], "tb": rng.choice((0.96, 1.92, 16))}
            for d in ("sdg", "sdh", "nvme0n1")
        ],
        "network": {
            n: {
                "speed": rng.choice(("10000Mb/s", "25000Mb/s")),
                "driver": rng.choice(("mlx5_core", "ice", "bnxt_en")),
            }
            for n in ("ens1f0", "ens1f1", "eno1")
        },
        "software": {
            p: f"{rng.randrange(1, 30)}.{rng.randrange(40)}"
            for p in (
                "kernel",
                "freeswitch",
                "postgresql",
                "mdadm",
                "smartmontools",
                "ipmitool",
                "callhome-agent",
            )
        },
    }


def combined(rng: random.Random) -> dict[str, Any]:
    """What a degraded system often sends: one event with several sections."""
    report = disk(rng)
    report.update({k: v for k, v in raid(rng).items() if k in ("raid",)})
    report["sensors"] = thermal(rng)["sensors"]
    return report


SHAPES = (raid, disk, thermal, bmc, service, oops, hardware, combined)


def corpus(count: int = 160, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [SHAPES[index % len(SHAPES)](rng) for index in range(count)]


# -- what the agent sends, held out: its events on other machines ------------------------
#
# The agent's field names and its collectors' wording are the project's own (as a tool's
# vocabulary is); the checks, devices, units, values and the Nagios plugins' free text
# here are not in the training corpus.

PLUGIN_TEXTS = (
    "DISK CRITICAL - free space: /var/spool/asterisk {n} MB ({p}% inode=91%);",
    "PROCS WARNING: {n} processes with command name 'freeswitch'",
    "NTP CRITICAL: Offset {f} secs, stratum best:16 worst:16",
    "LOAD WARNING - load average: {f}, {f}, {f}",
    "SIP OK: 200 OK - {n} ms response time",
    "PGSQL CRITICAL - no connection to 'billing' (could not connect to server)",
)


def _agent_check(rng: random.Random) -> tuple[str, str, float | None, str | None]:
    kind = rng.randrange(7)
    if kind == 0:
        md = f"md{rng.randrange(10, 130)}"
        total = rng.choice((3, 4, 6, 8))
        done = rng.uniform(0, 99.9)
        return (
            f"md/{md}",
            rng.choice(
                (
                    f"raid6: degraded, {total - 1} of {total} members; recovery {done:.1f}% "
                    f"at {rng.uniform(5, 900):.1f} MiB/s, {rng.uniform(1, 900):.1f} min left",
                    f"raid10: clean, {total} of {total} members, 1 spare",
                    f"inactive raid5; mdadm says {rng.choice(('degraded', 'FAILED'))}",
                )
            ),
            float(total - 1),
            "members",
        )
    if kind == 1:
        dev = rng.choice(("sdg", "sdh", "sdk", "nvme0n1", "nvme2n1"))
        return (
            f"smart/{dev}",
            rng.choice(
                (
                    f"Runtime_Bad_Block {rng.randrange(1, 300)}; "
                    f"End-to-End_Error {rng.randrange(5)}",
                    f"media errors {rng.randrange(1, 99)}; "
                    f"percentage used {rng.randrange(80, 120)}%",
                    "healthy",
                    f"smartctl took more than {rng.choice((20, 30))} s",
                )
            ),
            None,
            None,
        )
    if kind == 2:
        label = rng.choice(("Tctl", "Tccd1", "CPU1 Temp", "Inlet Temp"))
        temp = rng.randrange(20, 105)
        return (
            f"ipmi/{label.replace(' ', '_')}",
            f"{temp} degrees C, {rng.choice(('ok', 'upper critical', 'upper non-critical'))}",
            float(temp),
            "C",
        )
    if kind == 3:
        unit = rng.choice(("freeswitch", "opensips", "apcupsd", "multipathd", "postgresql@16-main"))
        return f"systemd/{unit}.service", f"failed ({unit} daemon)", None, None
    if kind == 4:
        mount = rng.choice(("/var/spool/asterisk", "/data", "/opt/billing", "/boot/efi"))
        if rng.random() < 0.3:
            return f"fs{mount}", "read-only (/dev/mapper/vg0-data, xfs)", None, None
        used = rng.uniform(70, 100)
        return f"fs{mount}", f"{used:.3g}% used", float(f"{used:.3g}"), "%"
    if kind == 5:
        volts = round(rng.uniform(10.5, 13.5), 3)  # sysfs gives millivolts
        return (
            f"hwmon/it8728/in{rng.randrange(6)}",
            f"12V: {volts:.3g} V (above 12.6 V)",
            volts,
            "V",
        )
    name = rng.choice(("check_disk", "check_procs", "check_ntp", "check_load", "check_sip"))
    text = rng.choice(PLUGIN_TEXTS).format(
        n=rng.randrange(1, 5000), p=rng.randrange(1, 10), f=f"{rng.uniform(0, 40):.2f}"
    )
    return f"plugin/{name}", text, None, None


def agent_events(count: int = 120, seed: int = SEED + 1) -> list[dict[str, Any]]:
    """Held-out agent events (built by the agent's own content function)."""
    from callhome.wire.messages import agent_event_content

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        check, text, value, unit = _agent_check(rng)
        now = 1_790_000_000 + rng.randrange(10**7)
        state, previous = rng.sample(("OK", "WARNING", "CRITICAL", "UNKNOWN"), 2)
        out.append(
            agent_event_content(
                check=check,
                event=rng.choice(("change", "change", "flapping", "stable")),
                state=state,
                previous=previous,
                since=now - rng.randrange(0, 86400),
                time=now,
                text=text,
                value=value,
                unit=unit,
            )
        )
    return out
