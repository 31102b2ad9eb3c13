"""Cursor pagination: opaque cursors that encode the last sort key of a page."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from app.platform.errors import ValidationFailed
from app.platform.schemas import is_code

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageParams(BaseModel):
    limit: int
    after: list[Any] | None


def encode_cursor(key: list[Any]) -> str:
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise _invalid() from exc
    if not isinstance(value, list):
        raise _invalid()
    return value


def _invalid() -> ValidationFailed:
    return ValidationFailed.at(("query", "cursor"), "invalid cursor")


def after_code(after: list[Any]) -> str:
    """The org or survey code a cursor of a list ordered by code holds."""
    if len(after) != 1 or not isinstance(after[0], str) or not is_code(after[0]):
        raise _invalid()
    return after[0]


def after_id(after: list[Any]) -> int:
    """The id a cursor of a list ordered by id holds (a JSON integer in bigint's range)."""
    if len(after) != 1 or type(after[0]) is not int or not 0 < after[0] < 2**63:
        raise _invalid()
    return int(after[0])


def after_instant_and_id(after: list[Any]) -> tuple[datetime, int]:
    """The (instant, id) a cursor of a list ordered by time then id holds.

    Cursors come from clients: the id must be a JSON integer in bigint's range (not true, 1.5,
    "2" or Infinity), the instant RFC 3339 text with an offset.
    """
    if len(after) != 2 or not isinstance(after[0], str):
        raise _invalid()
    at, row_id = after
    if type(row_id) is not int or not 0 < row_id < 2**63:
        raise _invalid()
    try:
        instant = datetime.fromisoformat(at)
    except ValueError as exc:
        raise _invalid() from exc
    if instant.tzinfo is None:
        raise _invalid()
    return instant, row_id


async def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=512, description="The next_cursor of the previous page."),
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, after=decode_cursor(cursor) if cursor else None)


Pagination = Annotated[PageParams, Depends(page_params)]


Row = TypeVar("Row")


def cut(
    rows: Sequence[Row], page: PageParams, last: Callable[[Row], list[Any]]
) -> tuple[list[Row], list[Any] | None]:
    """The rows of the page (queried with one more than the limit, to learn whether more
    follow) and, when more follow, `last` of its last row: what the next cursor holds."""
    kept = list(rows[: page.limit])
    return kept, last(kept[-1]) if len(rows) > page.limit else None
