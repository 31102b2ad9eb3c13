"""Field types shared by the schemas of several domains."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"  # fromisoformat alone also takes "2026-W01-1"

Code = Annotated[str, StringConstraints(pattern=CODE_PATTERN)]
_CODE = re.compile(CODE_PATTERN)


def is_code(value: str) -> bool:
    """Whether `value` is a well-formed code; one that is not (e.g. with a NUL) names nothing."""
    return _CODE.fullmatch(value) is not None


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold U+0000: refuse it here instead of failing there.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (\\u0000)")
    return value


NoNul = AfterValidator(_no_nul)


def _json_number(value: Any) -> Any:
    # Lax mode would read true as 1 and "5" as 5; a number in a body is a JSON number.
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


def not_null(schema: dict[str, Any]) -> None:
    """`json_schema_extra` for an optional field that may be left out but not be null."""
    branches = [branch for branch in schema.pop("anyOf") if branch.get("type") != "null"]
    (branch,) = branches
    schema.update(branch)


# After the Field(...) constraints in an Annotated: before them, pydantic cannot fold the
# constraints into the number's schema and writes `ge`/`le` (not minimum/maximum) into the OpenAPI.
JsonNumber = BeforeValidator(_json_number)

_RFC3339_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}", re.ASCII)


def _rfc3339(value: Any) -> Any:
    # Lax mode would read 1700000000 or "0.5" as Unix time; an instant is RFC 3339 text.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _RFC3339_START.match(value) is None:
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-20T10:00:00Z")
    return value


Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
"""A timestamp: RFC 3339 with an offset, nothing else (no Unix time, no missing offset)."""


def _strip(value: str) -> str:
    # Stripped after the length check: the declared maxLength holds for what the client sends.
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


Name = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_strip), NoNul
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]


class InputModel(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


PositiveVersion = Annotated[int, Field(ge=1, le=1_000_000)]

_DAY = re.compile(DATE_PATTERN)


def _day(value: Any) -> Any:
    # Lax mode would read 1700000000 as a date; a date in a body is YYYY-MM-DD text.
    if isinstance(value, str) and _DAY.fullmatch(value):
        return value
    raise ValueError("must be a date YYYY-MM-DD")


def _in_range(value: date) -> date:
    if not 1900 <= value.year <= 9998:
        raise ValueError("must be a date from 1900-01-01 to 9998-12-31")
    return value


Day = Annotated[date, BeforeValidator(_day), AfterValidator(_in_range)]
"""A calendar date in a body: YYYY-MM-DD, from 1900 to 9998."""


def _text(limit: int) -> Any:
    return Annotated[str, StringConstraints(min_length=1, max_length=limit), NoNul]


Text500 = _text(500)
Text2000 = _text(2000)


MAX_SEGMENTS = 8


def _segments(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_SEGMENTS:
        raise ValueError(f"at most {MAX_SEGMENTS} segment keys")
    for key in value:
        if not is_code(key):
            raise ValueError(f"segment key {key!r} must match {CODE_PATTERN}")
    return value


Segments = Annotated[
    dict[str, Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]],
    AfterValidator(_segments),
    Field(
        description=f"Micro-segments of the customer, {{key: value}}: at most {MAX_SEGMENTS} keys"
        " in the code pattern, values of 1 to 64 characters.",
        json_schema_extra={
            "maxProperties": MAX_SEGMENTS,
            "propertyNames": {"pattern": CODE_PATTERN},
        },
    ),
]
