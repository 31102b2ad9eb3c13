"""Authentication details beyond the matrix: the forms of a bad header, and what a bound key sees.

The matrix of every route against every credential, scope and place in the tree is in
test_auth_matrix.py.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from tests.conftest import KeyFactory, bearer
from tests.factories import standard_setup
from tests.keys.test_auth_matrix import assert_401

# 401: the forms of a bad key.


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        "Bearer garbage",
        "Bearer",
        "Bearer ",
        "Token cx_0123456789ab_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "cx_0123456789ab_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "Bearer cx__abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "Bearer cx_0123456789ab_",
        "Bearer cx_0123456789ab_short",
    ],
)
async def test_malformed_authorization_is_401(client: httpx.AsyncClient, header: str) -> None:
    assert_401(await client.get("/v1/stages", headers={"Authorization": header}))


async def test_wrong_secret_and_unknown_id_are_401_alike(
    client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    key = await make_key("admin")
    assert (await client.get("/v1/stages", headers=bearer(key))).status_code == 200
    _, key_id, secret = key.split("_", 2)  # the secret itself may hold '_'
    wrong_secret = f"cx_{key_id}_{secrets.token_urlsafe(32)}"
    unknown_id = f"cx_{secrets.token_hex(6)}_{secret}"
    answers = []
    for presented in (wrong_secret, unknown_id, key[:-1], key + "x"):
        r = await client.get("/v1/stages", headers=bearer(presented))
        assert_401(r)
        answers.append(r.json())
    # A wrong secret is not told apart from an unknown id.
    assert answers[0] == answers[1]


# Org-bound keys (the rest is in the matrix).


async def test_bound_key_sees_its_org_as_a_root(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    await standard_setup(client, admin)
    headers = bearer(await make_key("indices:read", org="KR"))
    kr = (await client.get("/v1/orgs/KR", headers=headers)).json()
    assert kr["parent"] is None
    assert kr["path"] == ["KR"]
    seoul = (await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=headers)).json()
    assert seoul["parent"] == "KR"
    assert seoul["path"] == ["KR", "KR-DELIVERY-SEOUL"]
    listed = (await client.get("/v1/orgs", headers=headers)).json()["items"]
    assert [o["code"] for o in listed] == ["KR", "KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    # Weights inherited from above the subtree are shown without telling where they come from.
    put = await client.put("/v1/orgs/HQ/stage-weights", json={"delivery": 3}, headers=admin)
    assert put.status_code == 200, put.text
    weights = (await client.get("/v1/orgs/KR/stage-weights", headers=headers)).json()
    assert weights["weights"]["delivery"] == 3
    assert weights["from_org"] is None
