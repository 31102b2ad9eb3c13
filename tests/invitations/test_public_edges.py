"""The public routes' edges: CORS for configured origins, the rate limit per client address
(X-Forwarded-For believed only from trusted proxies), no key needed or looked at."""

from __future__ import annotations

from ipaddress import ip_network

import httpx

from tests.factories import standard_setup
from tests.invitations.conftest import ORIGIN, AppFactory, Clock, invitation_body, issue

PUBLIC = "/v1/public/invitations"


async def _token(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post("/v1/invitations", json=invitation_body(), headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def test_cors_preflight_admits_the_configured_origin_only(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    token = await _token(inv_client, inv_admin)
    url = f"{PUBLIC}/{token}/response"
    preflight = await inv_client.options(
        url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    refused = await inv_client.options(
        url,
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    # The real request from the page carries the header too, on success and on error.
    shown = await inv_client.get(f"{PUBLIC}/{token}", headers={"Origin": ORIGIN})
    assert shown.headers["access-control-allow-origin"] == ORIGIN
    missing = await inv_client.get(f"{PUBLIC}/{'A' * 32}", headers={"Origin": ORIGIN})
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == ORIGIN


async def test_the_public_rate_limit_is_per_client_address(
    make_app: AppFactory, moment: Clock
) -> None:
    app = make_app(
        public_rate_limit_per_second=1.0,
        public_rate_limit_burst=3,
        trusted_proxies=[ip_network("127.0.0.0/8")],
    )
    headers = await issue(app)
    direct = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    proxied = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with (
        httpx.AsyncClient(transport=direct, base_url="http://test") as client,
        httpx.AsyncClient(transport=proxied, base_url="http://test") as proxy,
    ):
        await standard_setup(client, headers)
        token = await _token(client, headers)
        # Keyed routes are not limited by address.
        for _ in range(5):
            assert (await client.get("/v1/invitations", headers=headers)).status_code == 200
        for _ in range(3):
            assert (await client.get(f"{PUBLIC}/{token}")).status_code == 200
        limited = await client.get(f"{PUBLIC}/{token}")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        assert limited.headers["content-type"] == "application/problem+json"
        assert "address" in limited.json()["detail"]
        # Even a forged token spends the address's tokens (no free probing).
        assert (await client.get(f"{PUBLIC}/{'B' * 32}")).status_code == 429
        # A header the client wrote itself changes nothing: its peer is not a trusted proxy.
        spoofed = await client.get(f"{PUBLIC}/{token}", headers={"X-Forwarded-For": "198.51.100.1"})
        assert spoofed.status_code == 429
        # Behind the trusted proxy, each forwarded client has its own bucket.
        for _ in range(3):
            r = await proxy.get(f"{PUBLIC}/{token}", headers={"X-Forwarded-For": "198.51.100.1"})
            assert r.status_code == 200
        r = await proxy.get(f"{PUBLIC}/{token}", headers={"X-Forwarded-For": "198.51.100.1"})
        assert r.status_code == 429
        r = await proxy.get(f"{PUBLIC}/{token}", headers={"X-Forwarded-For": "198.51.100.2"})
        assert r.status_code == 200


async def test_public_routes_need_no_key_and_ignore_a_bad_one(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    token = await _token(inv_client, inv_admin)
    garbage = {"Authorization": "Bearer cx_nope_nope"}
    assert (await inv_client.get(f"{PUBLIC}/{token}", headers=garbage)).status_code == 200
    r = await inv_client.post(
        f"{PUBLIC}/{token}/response", json={"answers": {"overall": 4}}, headers=garbage
    )
    assert r.status_code == 201
    # The keyed routes still want a key.
    assert (await inv_client.get("/v1/invitations")).status_code == 401
    assert (await inv_client.post("/v1/invitations", json=invitation_body())).status_code == 401


async def test_creating_an_invitation_takes_no_idempotency_key(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], inv_app: object
) -> None:
    headers = {**inv_admin, "Idempotency-Key": "retry-1"}
    r = await inv_client.post("/v1/invitations", json=invitation_body(), headers=headers)
    assert r.status_code == 400
    assert r.json()["type"].endswith("/invalid-idempotency-key")
    assert "simply retry" in r.json()["detail"]
    assert (await inv_client.get("/v1/invitations", headers=inv_admin)).json()["items"] == []
