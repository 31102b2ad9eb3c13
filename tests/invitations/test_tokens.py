"""Tokens and the pure rules: shape, binding, forgery; the sampling hash against an independent
computation; contact windows; the order of the rules; the status function."""

from __future__ import annotations

import hashlib
import hmac
import os
import string
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from app.invitations import rules, tokens
from app.invitations.models import InvitationStatus, SuppressionReason
from app.platform.ratelimit import client_address
from app.stages import Stage

KEY = "k" * 40
URL_SAFE = set(string.ascii_letters + string.digits + "-_")


@given(st.integers(min_value=1, max_value=2**63 - 1), st.binary(min_size=16, max_size=16))
@settings(max_examples=200)
def test_a_token_is_url_safe_and_names_its_invitation(invitation_id: int, salt: bytes) -> None:
    token = tokens.make(KEY, invitation_id=invitation_id, salt=salt)
    assert len(token) == 32
    assert set(token) <= URL_SAFE
    assert tokens.claimed_id(KEY, token) == invitation_id
    assert tokens.verify(KEY, token, invitation_id=invitation_id, salt=salt)
    # Another salt (another row under the same id), another key: not this token.
    assert not tokens.verify(KEY, token, invitation_id=invitation_id, salt=os.urandom(16))
    assert not tokens.verify("x" * 40, token, invitation_id=invitation_id, salt=salt)


def test_the_token_hides_the_id_and_carries_a_128_bit_mac() -> None:
    salt = bytes(16)
    first = tokens.make(KEY, invitation_id=1, salt=salt)
    second = tokens.make(KEY, invitation_id=2, salt=salt)
    assert not first.startswith("AAAAAAAA")  # a bare big-endian 1 would begin with zeros
    assert first[:8] != second[:8]
    # The first 16 bytes are the MAC of the spec, computed here independently.
    import base64

    raw = base64.urlsafe_b64decode(first)
    expected = hmac.new(
        KEY.encode(), b"cx-invitation\x00" + (1).to_bytes(8, "big") + salt, hashlib.sha256
    ).digest()[:16]
    assert raw[:16] == expected


@given(st.text(max_size=40))
def test_anything_else_claims_no_invitation_or_fails_the_mac(text: str) -> None:
    number = tokens.claimed_id(KEY, text)
    if number is not None:  # 32 URL-safe characters claim some id; the MAC still refuses them
        assert not tokens.verify(KEY, text, invitation_id=number, salt=bytes(16))


def test_an_altered_token_fails() -> None:
    salt = os.urandom(16)
    token = tokens.make(KEY, invitation_id=7, salt=salt)
    for position in range(len(token)):
        flipped = (
            token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        )
        number = tokens.claimed_id(KEY, flipped)
        assert number is None or not tokens.verify(KEY, flipped, invitation_id=number, salt=salt)


def _independent_sample(source: str, external_id: str, rate: float) -> bool:
    digest = hashlib.sha256(source.encode("utf-8") + b"\x00" + external_id.encode("utf-8"))
    value = int.from_bytes(digest.digest()[:8], "big")
    # value / 2^64 < rate, exactly: rate is a binary fraction m / 2^e.
    numerator, denominator = rate.as_integer_ratio()
    return value * denominator < numerator * 2**64


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=40), st.floats(0, 1))
@settings(max_examples=300)
def test_sampling_is_the_contract_hash(source: str, external_id: str, rate: float) -> None:
    assert rules.sampled_in(source=source, external_id=external_id, rate=rate) == (
        _independent_sample(source, external_id, rate)
    )


def test_sampling_at_the_exact_boundary() -> None:
    digest = hashlib.sha256(b"s\x00e").digest()
    value = int.from_bytes(digest[:8], "big")
    exact = value / 2**64  # a float near the value: the comparison must not round
    below = _independent_sample("s", "e", exact)
    assert rules.sampled_in(source="s", external_id="e", rate=exact) == below
    assert rules.sampled_in(source="s", external_id="e", rate=1.0)
    assert not rules.sampled_in(source="s", external_id="e", rate=0.0)


NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def test_contact_windows_are_24_hour_days() -> None:
    just_inside = rules.Contact(Stage.delivery, NOW - timedelta(days=3) + timedelta(seconds=1))
    exactly = rules.Contact(Stage.delivery, NOW - timedelta(days=3))
    assert rules.contact_blocked(
        [just_inside], stage=Stage.purchase, now=NOW, min_days=3, per_stage={}
    )
    assert not rules.contact_blocked(
        [exactly], stage=Stage.purchase, now=NOW, min_days=3, per_stage={}
    )
    # per stage: only the same stage counts
    other = rules.Contact(Stage.purchase, NOW - timedelta(days=1))
    assert not rules.contact_blocked(
        [other], stage=Stage.delivery, now=NOW, min_days=0, per_stage={Stage.delivery: 30}
    )
    same = rules.Contact(Stage.delivery, NOW - timedelta(days=29))
    assert rules.contact_blocked(
        [same], stage=Stage.delivery, now=NOW, min_days=0, per_stage={Stage.delivery: 30}
    )
    assert not rules.contact_blocked([], stage=Stage.delivery, now=NOW, min_days=365, per_stage={})


@given(st.booleans(), st.booleans(), st.booleans())
def test_rules_apply_in_the_contract_order(opted: bool, blocked: bool, sampled: bool) -> None:
    expected = (
        SuppressionReason.opted_out
        if opted
        else SuppressionReason.contact_rule
        if blocked
        else None
        if sampled
        else SuppressionReason.sampled_out
    )
    assert rules.decide(opted_out=opted, contact_blocked=blocked, sampled_in=sampled) == expected


def test_status_is_a_function_of_the_row_and_the_clock() -> None:
    expires = NOW + timedelta(days=1)

    def status(**row: object) -> InvitationStatus:
        fields: dict[str, object] = {
            "reason": None,
            "cancelled_at": None,
            "answered_at": None,
            "expires_at": expires,
            "now": NOW,
        }
        fields.update(row)
        return rules.status_of(**fields)  # type: ignore[arg-type]

    assert status() is InvitationStatus.pending
    assert status(now=expires) is InvitationStatus.expired
    assert status(now=expires - timedelta(microseconds=1)) is InvitationStatus.pending
    assert status(answered_at=NOW, now=expires + timedelta(days=9)) is InvitationStatus.answered
    assert status(cancelled_at=NOW) is InvitationStatus.cancelled
    assert status(reason="sampled_out") is InvitationStatus.suppressed


def test_the_client_address_believes_only_trusted_proxies() -> None:
    proxies = [ip_network("10.0.0.0/8"), ip_network("::1/128")]
    assert client_address("203.0.113.9", ["198.51.100.1"], []) == "203.0.113.9"
    # Not behind a trusted proxy: the header is anyone's to write.
    assert client_address("203.0.113.9", ["198.51.100.1"], proxies) == "203.0.113.9"
    assert client_address("10.1.2.3", ["198.51.100.1"], proxies) == "198.51.100.1"
    # The nearest untrusted hop, read from the right; spoofed hops to its left are ignored.
    assert client_address("10.1.2.3", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], proxies) == (
        "198.51.100.1"
    )
    assert client_address("10.1.2.3", ["6.6.6.6", "198.51.100.1"], proxies) == "198.51.100.1"
    assert client_address("::1", ["2001:db8::5"], proxies) == "2001:db8::5"
    # Only proxies in the chain: the farthest of them; a garbled hop: nothing past it.
    assert client_address("10.1.2.3", ["10.0.0.7"], proxies) == "10.0.0.7"
    assert client_address("10.1.2.3", ["nonsense"], proxies) == "10.1.2.3"
    assert client_address("10.1.2.3", [], proxies) == "10.1.2.3"
