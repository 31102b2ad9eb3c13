"""Sending one delivery: the address checked at send time, the body signed per Standard
Webhooks, the answer judged."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address, ip_address

import httpx
from standardwebhooks.webhooks import Webhook as Signer

TIMEOUT_SECONDS = 15.0


class AddressRefused(Exception):
    """The URL may not be called (scheme, or an address that is not public)."""


def is_public(address: IPv4Address | IPv6Address) -> bool:
    """A global unicast address: not loopback, private, link-local, shared, reserved, multicast."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_url(url: str, *, allow_http: bool) -> httpx.URL:
    """The URL, if its form is one we call: https (or http when allowed), a host, no userinfo."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise AddressRefused("not a URL") from exc
    schemes = {"https", "http"} if allow_http else {"https"}
    if parsed.scheme not in schemes:
        raise AddressRefused("must be an https URL" if not allow_http else "must be http(s)")
    if not parsed.host:
        raise AddressRefused("must name a host")
    if parsed.userinfo:
        raise AddressRefused("must not carry credentials")
    return parsed


async def resolve(url: httpx.URL, *, allow_private: bool) -> str:
    """The address to call for the URL's host: every address it resolves to must be public
    (unless allowed); the first one is used, so a later DNS answer cannot redirect the call."""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            url.host, port, type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise AddressRefused(f"the host {url.host!r} does not resolve") from exc
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise AddressRefused(f"the host {url.host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not is_public(ip_address(address.split("%")[0])):
                raise AddressRefused(f"the host {url.host!r} resolves to a non-public address")
    return addresses[0]


def signature(secrets: list[str], *, msg_id: str, at: datetime, body: bytes) -> str:
    """`webhook-signature`: one `v1,<base64>` per secret, space-separated."""
    text = body.decode()
    return " ".join(Signer(s).sign(msg_id=msg_id, timestamp=at, data=text) for s in secrets)


@dataclass(frozen=True, slots=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def send(
    client: httpx.AsyncClient,
    *,
    url: str,
    msg_id: str,
    body: bytes,
    secrets: list[str],
    allow_http: bool,
    allow_private: bool,
) -> Outcome:
    """One attempt: signed anew with this attempt's time; never follows a redirect, never reads
    the receiver's body."""
    started = time.perf_counter()

    def done(code: int | None, error: str | None) -> Outcome:
        return Outcome(code, error, round((time.perf_counter() - started) * 1000, 1))

    try:
        parsed = check_url(url, allow_http=allow_http)
        address = await resolve(parsed, allow_private=allow_private)
    except AddressRefused as exc:
        return done(None, str(exc))
    at = datetime.now(UTC)
    host = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    headers = {
        "Host": host,
        "Content-Type": "application/json",
        "User-Agent": "cx-survey-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature(secrets, msg_id=msg_id, at=at, body=body),
    }
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    request = client.build_request(
        "POST",
        parsed.copy_with(host=address),
        content=body,
        headers=headers,
        extensions=extensions,
        timeout=TIMEOUT_SECONDS,
    )
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS + 1):
            response = await client.send(request, stream=True, follow_redirects=False)
            await response.aclose()
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        return done(None, type(exc).__name__)
    return done(response.status_code, None)
