"""Turning a posted response into a row: resolve references, check answers, score, fingerprint."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.keys.service import Principal
from app.platform.db import driver_connection
from app.responses.models import CustomerType
from app.responses.schemas import ResponseIn
from app.stages import Stage
from app.surveys.models import RATING_TYPES, QuestionType
from app.surveys.schemas import MAX_TEXT_ANSWER

Loc = tuple[str | int, ...]
FUTURE_TOLERANCE = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A valid response, ready for the write path."""

    index: int
    org_id: int
    org_code: str
    survey_code: str
    survey_version_id: int
    survey_version: int
    stage: Stage
    occurred_at: datetime
    occurred_on: date
    source: str
    external_id: str
    channel: str | None
    customer_type: CustomerType
    pseudonym: bytes | None
    answers: dict[str, Any]
    score: int
    scale_min: int
    scale_max: int
    primary_type: QuestionType
    fingerprint: bytes
    segments: dict[str, str] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.external_id)

    @property
    def normalized(self) -> float:
        return 100 * (self.score - self.scale_min) / (self.scale_max - self.scale_min)


class ItemInvalid(Exception):
    """The item cannot be stored; `errors` say where and why."""

    def __init__(self, errors: list[dict[str, Any]], *, forbidden: bool = False) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid")
        self.errors = errors
        self.forbidden = forbidden


def pseudonymize(key: str, ref: str) -> bytes:
    """The keyed pseudonym under which a customer ref is stored (HMAC-SHA256)."""
    return hmac.new(key.encode(), ref.encode(), hashlib.sha256).digest()


def tombstone_hash(source: str, external_id: str) -> bytes:
    """What a tombstone keeps of a response: a hash of its (source, external_id)."""
    return hashlib.sha256(f"{source}\x00{external_id}".encode()).digest()


def fingerprint(
    *,
    survey_version_id: int,
    org_id: int,
    occurred_at: datetime,
    channel: str | None,
    customer_type: CustomerType,
    pseudonym: bytes | None,
    answers: dict[str, Any],
    segments: dict[str, str] | None = None,
) -> bytes:
    """A digest of the normalized content that decides 'same content' for a retried response.

    Segments join the digest only when there are some, so that the digests of responses
    stored before segments existed stay what they were."""
    instant_us = round(occurred_at.timestamp() * 1_000_000)
    content: list[Any] = [
        survey_version_id,
        org_id,
        instant_us,
        channel,
        customer_type.value,
        pseudonym.hex() if pseudonym else None,
        answers,
    ]
    if segments:
        content.append(segments)
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).digest()


def _scale(question: dict[str, Any]) -> tuple[int, int]:
    scale = question["scale"]
    return int(scale["min"]), int(scale["max"])


def check_answers(
    questions: Sequence[dict[str, Any]], answers: dict[str, Any], loc: Loc
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Answers normalized (integers as int, nulls dropped) and the errors found, by question."""
    by_key = {q["key"]: q for q in questions}
    errors: list[dict[str, Any]] = []
    normalized: dict[str, Any] = {}
    for key in answers:
        if key not in by_key:
            errors.append({"loc": [*loc, key], "msg": f"unknown question {key!r}"})
    for question in questions:
        key = question["key"]
        value = answers.get(key)
        where = [*loc, key]
        if value is None:
            if question.get("required", True):
                errors.append({"loc": where, "msg": "an answer is required"})
            continue
        kind = QuestionType(question["type"])
        if kind in RATING_TYPES:
            low, high = _scale(question)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (isinstance(value, float) and not value.is_integer())
            ):
                errors.append({"loc": where, "msg": f"must be an integer from {low} to {high}"})
                continue
            number = int(value)
            if not low <= number <= high:
                errors.append({"loc": where, "msg": f"must be an integer from {low} to {high}"})
                continue
            normalized[key] = number
        elif kind is QuestionType.choice:
            if not isinstance(value, str) or value not in question["options"]:
                errors.append({"loc": where, "msg": "must be one of the question's options"})
                continue
            normalized[key] = value
        else:
            if not isinstance(value, str):
                errors.append({"loc": where, "msg": "must be a string"})
                continue
            if len(value) > MAX_TEXT_ANSWER:
                errors.append(
                    {"loc": where, "msg": f"must be at most {MAX_TEXT_ANSWER} characters"}
                )
                continue
            if "\x00" in value:
                errors.append({"loc": where, "msg": "must not contain the NUL character"})
                continue
            normalized[key] = value
    return normalized, errors


@dataclass(frozen=True, slots=True)
class OrgRef:
    id: int
    code: str
    path: list[int]


@dataclass(frozen=True, slots=True)
class SurveyRef:
    id: int
    code: str
    stage: Stage
    latest_version: int


@dataclass(frozen=True, slots=True)
class VersionRef:
    id: int
    version: int
    primary_key: str
    primary_type: QuestionType
    scale_min: int
    scale_max: int
    questions: list[dict[str, Any]]


_CATALOG = """
SELECT
  (SELECT coalesce(json_agg(json_build_array(
            s.id, s.code, s.stage, s.latest_version, v.id, v.version, v.primary_key,
            v.primary_type, v.scale_min, v.scale_max, v.questions)), '[]')
   FROM (SELECT DISTINCT code, version FROM unnest($1::text[], $2::int[]) AS w(code, version)) w
   JOIN surveys s ON s.code = w.code
   LEFT JOIN survey_versions v
     ON v.survey_id = s.id AND v.version = coalesce(w.version, s.latest_version)) AS surveys,
  (SELECT coalesce(json_agg(json_build_array(o.id, o.code, o.path)), '[]')
   FROM orgs o WHERE o.code = ANY($3::text[])) AS orgs,
  (SELECT coalesce(array_agg(t.key_hash), '{}')
   FROM tombstones t WHERE t.key_hash = ANY($4::bytea[])) AS gone
"""


def _json(value: Any) -> Any:
    """A json column: decoded already where SQLAlchemy set asyncpg's codec, else text."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@dataclass
class Catalog:
    """What a set of items refers to (surveys, versions, orgs) and which of their keys were
    erased, loaded in one round trip."""

    surveys: dict[str, SurveyRef]
    versions: dict[tuple[int, int], VersionRef]
    orgs: dict[str, OrgRef]
    gone: set[bytes]

    @classmethod
    async def load(
        cls, session: AsyncSession, items: Iterable[ResponseIn], *, source: str | None
    ) -> Catalog:
        """`source`: the caller's bound source, used by items that name none."""
        items = list(items)
        wanted = {(item.survey, item.survey_version) for item in items}
        keys = {
            tombstone_hash(item.source or source or "", item.external_id)
            for item in items
            if item.source or source
        }
        conn = await driver_connection(session)
        row = await conn.fetchrow(
            _CATALOG,
            [code for code, _ in wanted],
            [version for _, version in wanted],
            list({item.org for item in items}),
            list(keys),
        )
        surveys: dict[str, SurveyRef] = {}
        versions: dict[tuple[int, int], VersionRef] = {}
        for sid, code, stage, latest, vid, number, *rest in _json(row["surveys"]):
            surveys[code] = SurveyRef(sid, code, Stage(stage), latest)
            if vid is not None:
                key, kind, low, high, questions = rest
                versions[(sid, number)] = VersionRef(
                    vid, number, key, QuestionType(kind), low, high, questions
                )
        orgs = {code: OrgRef(oid, code, path) for oid, code, path in _json(row["orgs"])}
        return cls(surveys=surveys, versions=versions, orgs=orgs, gone=set(map(bytes, row["gone"])))


def prepare(
    item: ResponseIn,
    *,
    index: int,
    loc: Loc,
    catalog: Catalog,
    principal: Principal,
    pseudonym_key: str,
    zone: ZoneInfo,
    now: datetime,
    pseudonym: bytes | None = None,
) -> Prepared:
    """Check one response against its survey version and the caller; ItemInvalid if it fails.

    `pseudonym`: the customer's, for a caller that holds it rather than the ref (an invitation).
    """
    errors: list[dict[str, Any]] = []
    survey = catalog.surveys.get(item.survey)
    version = None
    if survey is None:
        errors.append({"loc": [*loc, "survey"], "msg": f"unknown survey {item.survey!r}"})
    else:
        number = item.survey_version or survey.latest_version
        version = catalog.versions.get((survey.id, number))
        if version is None:
            errors.append(
                {
                    "loc": [*loc, "survey_version"],
                    "msg": f"survey {item.survey!r} has no version {number}",
                }
            )
    org = catalog.orgs.get(item.org)
    if org is None or not principal.sees(org.path):
        errors.append({"loc": [*loc, "org"], "msg": f"unknown org {item.org!r}"})
    if item.occurred_at > now + FUTURE_TOLERANCE:
        errors.append(
            {"loc": [*loc, "occurred_at"], "msg": "must not be more than a day in the future"}
        )
    source = item.source or principal.source
    if source is None:
        errors.append({"loc": [*loc, "source"], "msg": "source is required"})
    elif principal.source is not None and source != principal.source:
        raise ItemInvalid(
            [
                {
                    "loc": [*loc, "source"],
                    "msg": f"this key may only post responses of source {principal.source!r}",
                }
            ],
            forbidden=True,
        )
    answers: dict[str, Any] = {}
    if version is not None:
        answers, answer_errors = check_answers(version.questions, item.answers, (*loc, "answers"))
        errors.extend(answer_errors)
    if errors:
        raise ItemInvalid(errors)
    assert survey is not None
    assert version is not None
    assert org is not None
    assert source is not None
    if item.customer.ref:
        pseudonym = pseudonymize(pseudonym_key, item.customer.ref)
    return Prepared(
        index=index,
        org_id=org.id,
        org_code=org.code,
        survey_code=survey.code,
        survey_version_id=version.id,
        survey_version=version.version,
        stage=survey.stage,
        occurred_at=item.occurred_at,
        occurred_on=item.occurred_at.astimezone(zone).date(),
        source=source,
        external_id=item.external_id,
        channel=item.channel,
        customer_type=item.customer.type,
        pseudonym=pseudonym,
        answers=answers,
        score=answers[version.primary_key],
        scale_min=version.scale_min,
        scale_max=version.scale_max,
        primary_type=version.primary_type,
        fingerprint=fingerprint(
            survey_version_id=version.id,
            org_id=org.id,
            occurred_at=item.occurred_at,
            channel=item.channel,
            customer_type=item.customer.type,
            pseudonym=pseudonym,
            answers=answers,
            segments=item.segments or None,
        ),
        segments=item.segments or None,
    )
