"""Invitation tokens: derived from the invitation's id and salt under CX_TOKEN_KEY, never stored.

A token is `base64url(mac ‖ (id XOR mask))`, 32 URL-safe characters, where
`mac = HMAC-SHA256(key, "cx-invitation\\0" ‖ id ‖ salt)[:16]` (128 bits: unguessable, bound to
that one row) and `mask = HMAC-SHA256(key, "cx-invitation-id\\0" ‖ mac)[:8]`: the id is
recovered with the key, so a token is checked with one primary-key read, and shows nobody how
many invitations there are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

MAC_BYTES = 16
ID_BYTES = 8
TOKEN_LENGTH = 32  # base64 of 24 bytes: no padding, no spare bits, so one token has one text
_SHAPE = re.compile(f"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_MAX_ID = 2**63 - 1


def _hmac(key: str, domain: bytes, message: bytes) -> bytes:
    return hmac.new(key.encode(), domain + b"\x00" + message, hashlib.sha256).digest()


def _mac(key: str, invitation_id: int, salt: bytes) -> bytes:
    return _hmac(key, b"cx-invitation", invitation_id.to_bytes(ID_BYTES, "big") + salt)[:MAC_BYTES]


def _mask(key: str, mac: bytes) -> int:
    return int.from_bytes(_hmac(key, b"cx-invitation-id", mac)[:ID_BYTES], "big")


def make(key: str, *, invitation_id: int, salt: bytes) -> str:
    """The token of an invitation."""
    mac = _mac(key, invitation_id, salt)
    hidden = (invitation_id ^ _mask(key, mac)).to_bytes(ID_BYTES, "big")
    return base64.urlsafe_b64encode(mac + hidden).decode()


def claimed_id(key: str, token: str) -> int | None:
    """The invitation id a token claims, or None when it cannot be a token at all."""
    if not _SHAPE.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        return None
    mac, hidden = raw[:MAC_BYTES], int.from_bytes(raw[MAC_BYTES:], "big")
    number = hidden ^ _mask(key, mac)
    return number if 0 < number <= _MAX_ID else None


def verify(key: str, token: str, *, invitation_id: int, salt: bytes) -> bool:
    """Whether `token` is the token of this invitation (constant-time)."""
    expected = make(key, invitation_id=invitation_id, salt=salt)
    return hmac.compare_digest(token.encode(), expected.encode())
