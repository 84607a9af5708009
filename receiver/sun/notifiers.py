"""The three ways a notification leaves the centre: a signed webhook (JSON POST), an
e-mail over SMTP, and a command (pagers, SMS gateways, chat tools). Each sends one
outbox row or raises `DeliveryError`; retrying is the outbox's business.

The webhook client is a minimal HTTP/1.1 client over asyncio streams: one POST, one
status line, `Connection: close`. It needs no dependency and does all a webhook needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from ..store import OutboxItem
from .model import Command, Smtp, Webhook

SIGNATURE_HEADER = "X-Callhome-Signature"
TIMESTAMP_HEADER = "X-Callhome-Timestamp"
KEY_HEADER = "Idempotency-Key"


class DeliveryError(Exception):
    """One attempt failed; the message says why in a line."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 over "<timestamp>." + body, so that a
    captured request cannot be replayed later with another timestamp."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float, tolerance: float = 300
) -> bool:
    """What a webhook receiver checks: the signature, and a timestamp within `tolerance`."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(now - stamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)


async def send_webhook(hook: Webhook, item: OutboxItem, now: float) -> None:
    body = item.payload.encode()
    url = urlsplit(hook.url)
    secure = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    stamp = int(now)
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\n"
        "User-Agent: callhome-receiver\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{TIMESTAMP_HEADER}: {stamp}\r\n"
        f"{SIGNATURE_HEADER}: {sign(hook.secret, stamp, body)}\r\n"
        f"{KEY_HEADER}: {item.idempotency_key}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer = None
    try:
        async with asyncio.timeout(hook.timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if secure else None
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
            status_line = await reader.readline()
    except TimeoutError:
        raise DeliveryError(f"webhook {hook.name}: no answer in {hook.timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"webhook {hook.name}: {exc.strerror or exc}") from None
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.decode("latin-1", "replace").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise DeliveryError(f"webhook {hook.name}: not an HTTP answer: {status_line[:60]!r}")
    status = int(parts[1])
    if not 200 <= status < 300:
        raise DeliveryError(f"webhook {hook.name}: HTTP {status}")


def _smtp_send(smtp: Smtp, item: OutboxItem) -> None:
    message = EmailMessage()
    message["From"] = smtp.sender
    message["To"] = item.address
    message["Subject"] = item.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="callhome")
    message["X-Callhome-Idempotency-Key"] = item.idempotency_key
    message.set_content(item.body)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout) as client:
            client.ehlo()
            if smtp.starttls != "never" and client.has_extn("starttls"):
                cafile = str(smtp.cafile) if smtp.cafile else None
                client.starttls(context=ssl.create_default_context(cafile=cafile))
                client.ehlo()
            elif smtp.starttls == "require":
                raise DeliveryError(f"smtp {smtp.host}: the server does not offer STARTTLS")
            if smtp.username and smtp.password:
                client.login(smtp.username, smtp.password)
            client.send_message(message)
    except smtplib.SMTPResponseException as exc:
        error = exc.smtp_error
        text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        raise DeliveryError(f"smtp {smtp.host}: refused: {exc.smtp_code} {text}") from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError(f"smtp {smtp.host}: refused the recipient {item.address}") from None
    except TimeoutError:
        raise DeliveryError(f"smtp {smtp.host}: no answer in {smtp.timeout:g} s") from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"smtp {smtp.host}: STARTTLS failed: {exc.reason or exc}") from None
    except (OSError, smtplib.SMTPException) as exc:
        if "timed out" in str(exc):  # smtplib reports a silent server as a disconnection
            raise DeliveryError(f"smtp {smtp.host}: no answer in {smtp.timeout:g} s") from None
        raise DeliveryError(f"smtp {smtp.host}: {exc}") from None


async def send_email(smtp: Smtp, item: OutboxItem) -> None:
    # smtplib blocks: a thread keeps the event loop (and the modem bank) running
    await asyncio.to_thread(_smtp_send, smtp, item)


async def send_command(command: Command, item: OutboxItem) -> None:
    """Run the command with the notification as JSON on its stdin and the essentials in
    CALLHOME_* variables; exit status 0 means delivered."""
    payload = json.loads(item.payload)
    env = {
        **os.environ,
        "CALLHOME_IDEMPOTENCY_KEY": item.idempotency_key,
        "CALLHOME_RECIPIENT": item.recipient,
        "CALLHOME_SUBJECT": item.subject,
        "CALLHOME_INCIDENT": str(payload.get("incident_id", "")),
        "CALLHOME_SEVERITY": str(payload.get("severity", "")),
    }
    try:
        process = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as exc:
        raise DeliveryError(f"command {command.name}: cannot run: {exc.strerror}") from None
    try:
        async with asyncio.timeout(command.timeout):
            _, err = await process.communicate(item.payload.encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise DeliveryError(
            f"command {command.name}: still running after {command.timeout:g} s"
        ) from None
    if process.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise DeliveryError(
            f"command {command.name}: exit status {process.returncode} {last[0][:200]}".rstrip()
        )
