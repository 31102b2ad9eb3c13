"""Field types shared by the schemas of several domains."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

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


JsonNumber = BeforeValidator(_json_number)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]


class InputModel(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


PositiveVersion = Annotated[int, Field(ge=1, le=1_000_000)]
