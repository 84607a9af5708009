"""The `[web]` table of centre.toml: where the console listens and how."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modem_drivers.configfile import Table


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    behind_proxy: bool = False
    """Trust X-Forwarded-Proto from the reverse proxy (it terminates TLS)."""
    session_lifetime: float = 12 * 3600.0
    metrics_token: str | None = None
    """When set, /metrics wants `Authorization: Bearer <token>`."""

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def parse_listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_web(data: dict[str, Any], path: str | Path) -> WebConfig | None:
    """The console's settings, or None when `[web] listen` is not set (off)."""
    table = Table(data, "web", path)
    listen = table.get("listen", str)
    cert = table.path_value("tls_cert", None) if table.get("tls_cert", str) else None
    key = table.path_value("tls_key", None) if table.get("tls_key", str) else None
    proxy = table.get("behind_proxy", bool, False)
    lifetime = table.duration("session_lifetime", "12h", minimum=300.0, maximum=30 * 86400.0)
    token = table.get("metrics_token", str)
    table.finish()
    if (cert is None) != (key is None):
        raise table.error("tls_key" if key is None else "tls_cert", "give tls_cert and tls_key")
    if listen is None:
        return None
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise table.error("listen", str(exc)) from None
    return WebConfig(host, port, cert, key, proxy, lifetime, token or None)
