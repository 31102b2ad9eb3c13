"""Posting responses (single and batch) and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.keys.service import Principal
from app.orgs.models import Org
from app.orgs.service import find_referenced
from app.platform import clock
from app.platform.config import Settings
from app.platform.errors import AppError, Conflict, Forbidden, Gone, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_instant_and_id, cut
from app.responses import ingest
from app.responses.models import Response
from app.responses.prepare import Catalog, ItemInvalid, Prepared, prepare
from app.responses.schemas import (
    BatchCounts,
    BatchItemResult,
    BatchOut,
    CustomerOut,
    FieldError,
    ItemStatus,
    ResponseIn,
    ResponseOut,
    Score,
)
from app.stages import Stage
from app.surveys.models import Survey, SurveyVersion


class ResponseNotFound(NotFound):
    title = "Response not found"


class ResponseConflict(Conflict):
    slug = "response-conflict"
    title = "A different response was stored under this (source, external_id)"


class ResponseGone(Gone):
    slug = "response-erased"
    title = "This response was erased and cannot be posted again"


class SourceForbidden(Forbidden):
    slug = "source-forbidden"
    title = "The key may not post responses of this source"


def _render(
    response: Response, *, org_code: str, survey_code: str, survey_version: int
) -> ResponseOut:
    return ResponseOut(
        id=str(response.id),
        survey=survey_code,
        survey_version=survey_version,
        stage=response.stage,
        org=org_code,
        occurred_at=response.occurred_at,
        received_at=response.received_at,
        source=response.source,
        external_id=response.external_id,
        channel=response.channel,
        customer=CustomerOut(type=response.customer_type),
        answers=response.answers,
        score=Score(
            raw=response.score,
            normalized=100
            * (response.score - response.scale_min)
            / (response.scale_max - response.scale_min),
        ),
        segments=response.segments,
    )


def _render_prepared(item: Prepared, stored: ingest.Stored) -> ResponseOut:
    assert stored.id is not None
    assert stored.received_at is not None
    return ResponseOut(
        id=str(stored.id),
        survey=item.survey_code,
        survey_version=item.survey_version,
        stage=item.stage,
        org=item.org_code,
        occurred_at=item.occurred_at.astimezone(UTC),
        received_at=stored.received_at,
        source=item.source,
        external_id=item.external_id,
        channel=item.channel,
        customer=CustomerOut(type=item.customer_type),
        answers=item.answers,
        score=Score(raw=item.score, normalized=item.normalized),
        segments=item.segments,
    )


def _with_codes() -> Select[Response, str, str, int]:
    return (
        select(Response, Org.code, Survey.code, SurveyVersion.version)
        .join(Org, Org.id == Response.org_id)
        .join(SurveyVersion, SurveyVersion.id == Response.survey_version_id)
        .join(Survey, Survey.id == SurveyVersion.survey_id)
    )


async def _load(session: AsyncSession, response_id: int) -> ResponseOut | None:
    row = (await session.execute(_with_codes().where(Response.id == response_id))).first()
    if row is None:
        return None
    response, org_code, survey_code, version = row
    return _render(response, org_code=org_code, survey_code=survey_code, survey_version=version)


async def prepare_one(
    session: AsyncSession,
    *,
    body: ResponseIn,
    principal: Principal,
    settings: Settings,
    pseudonym: bytes | None = None,
) -> tuple[Prepared, Catalog]:
    """One response checked against its survey version and the caller, ready for the write
    path, with what it refers to; 422 or 403 (another source) when it cannot be stored.
    `pseudonym`: the customer's, for a caller that holds it instead of the ref."""
    catalog = await Catalog.load(session, [body], source=principal.source)
    try:
        item = prepare(
            body,
            index=0,
            loc=("body",),
            catalog=catalog,
            principal=principal,
            pseudonym_key=settings.pseudonym_key,
            zone=settings.zone,
            now=clock.now(),
            pseudonym=pseudonym,
        )
    except ItemInvalid as exc:
        raise _refusal(exc) from exc
    return item, catalog


async def post_responses(
    session: AsyncSession,
    asks: Sequence[tuple[ResponseIn, Principal]],
    *,
    settings: Settings,
) -> list[tuple[ResponseOut, bool] | AppError]:
    """Single posts, of one caller or several, stored in the session's one transaction: what
    each caller is answered, in order: (response, created), or the error its own post gets.

    Each item is checked against its own caller, as alone; items of one key are judged as in
    a batch (the first is stored, a later one is its duplicate or a conflict)."""
    bodies = [
        body
        if body.source is not None or principal.source is None
        else body.model_copy(update={"source": principal.source})
        for body, principal in asks
    ]
    catalog = await Catalog.load(session, bodies, source=None)
    now = clock.now()
    checked: list[Prepared | AppError] = []
    for index, (body, (_, principal)) in enumerate(zip(bodies, asks, strict=True)):
        try:
            checked.append(
                prepare(
                    body,
                    index=index,
                    loc=("body",),
                    catalog=catalog,
                    principal=principal,
                    pseudonym_key=settings.pseudonym_key,
                    zone=settings.zone,
                    now=now,
                )
            )
        except ItemInvalid as exc:
            checked.append(_refusal(exc))
    valid = [item for item in checked if isinstance(item, Prepared)]
    stored = iter(await ingest.store(session, valid, gone=catalog.gone))
    return [
        await _answer(session, item, next(stored)) if isinstance(item, Prepared) else item
        for item in checked
    ]


def _refusal(exc: ItemInvalid) -> AppError:
    if exc.forbidden:
        return SourceForbidden(exc.errors[0]["msg"])
    return ValidationFailed(summary(exc.errors), errors=exc.errors)


async def _answer(
    session: AsyncSession, item: Prepared, stored: ingest.Stored
) -> tuple[ResponseOut, bool] | AppError:
    if stored.status is ItemStatus.created:
        return _render_prepared(item, stored), True
    gone = ResponseGone(
        f"The response ({item.source!r}, {item.external_id!r}) was erased; it is not stored again."
    )
    if stored.status is ItemStatus.gone:
        return gone
    if stored.status is ItemStatus.conflict:
        return ResponseConflict(
            f"A response with source {item.source!r} and external_id {item.external_id!r} "
            "exists with different content."
        )
    assert stored.id is not None
    existing = await _load(session, stored.id)
    if existing is None:  # erased since the write path found it
        return gone
    return existing, False


def summary(errors: Sequence[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])


async def post_batch(
    session: AsyncSession, *, items: list[Any], principal: Principal, settings: Settings
) -> BatchOut:
    """Store the valid items of a batch; every item gets its own status, in item order."""
    results: list[BatchItemResult | None] = [None] * len(items)
    parsed: list[tuple[int, ResponseIn]] = []
    for index, raw in enumerate(items):
        try:
            parsed.append((index, ResponseIn.model_validate(raw)))
        except ValidationError as exc:
            errors = [
                FieldError(
                    loc=["body", "items", index, *err["loc"]],
                    msg=str(err["msg"]).removeprefix("Value error, "),
                )
                for err in exc.errors()
            ]
            results[index] = BatchItemResult(index=index, status=ItemStatus.invalid, errors=errors)
    catalog = await Catalog.load(session, (body for _, body in parsed), source=principal.source)
    now = clock.now()
    valid: list[Prepared] = []
    for index, body in parsed:
        try:
            valid.append(
                prepare(
                    body,
                    index=index,
                    loc=("body", "items", index),
                    catalog=catalog,
                    principal=principal,
                    pseudonym_key=settings.pseudonym_key,
                    zone=settings.zone,
                    now=now,
                )
            )
        except ItemInvalid as exc:
            results[index] = BatchItemResult(
                index=index,
                status=ItemStatus.invalid,
                errors=[FieldError(**e) for e in exc.errors],
            )
    stored_items = await ingest.store(session, valid, gone=catalog.gone)
    # (source, external_id) is unique across the tree: a conflict may be with a response that
    # the key may not see, whose id it must not learn.
    conflicts = [s.id for s in stored_items if s.status is ItemStatus.conflict and s.id]
    unseen = await _outside_subtree(session, principal, conflicts)
    for item, stored in zip(valid, stored_items, strict=True):
        shown = stored.id is not None and stored.id not in unseen
        results[item.index] = BatchItemResult(
            index=item.index, status=stored.status, id=str(stored.id) if shown else None
        )
    counts = BatchCounts()
    final = []
    for result in results:
        assert result is not None
        setattr(counts, result.status.value, getattr(counts, result.status.value) + 1)
        final.append(result)
    return BatchOut(results=final, counts=counts)


async def _outside_subtree(
    session: AsyncSession, principal: Principal, response_ids: Sequence[int]
) -> set[int]:
    """Those of the responses that lie outside the key's subtree."""
    if principal.org_id is None or not response_ids:
        return set()
    rows = await session.execute(
        select(Response.id, Org.path)
        .join(Org, Org.id == Response.org_id)
        .where(Response.id.in_(response_ids))
    )
    return {response_id for response_id, path in rows if not principal.sees(path)}


def parse_id(response_id: str) -> int | None:
    """The row id a path id names, or None when it cannot name one.

    Only ASCII digits: str.isdigit() also admits '²' (which int() refuses) and other scripts'
    digits such as ARABIC-INDIC ONE (which int() reads as 1, an id the client never saw).
    """
    if not (response_id.isascii() and response_id.isdigit()) or len(response_id) > 18:
        return None
    return int(response_id)


async def get_response(
    session: AsyncSession, *, response_id: str, principal: Principal
) -> ResponseOut:
    """One response, if it exists and lies in the key's subtree."""
    number = parse_id(response_id)
    if number is None:
        raise ResponseNotFound(f"No response with id {response_id!r}.")
    row = (
        await session.execute(_with_codes().add_columns(Org.path).where(Response.id == number))
    ).first()
    if row is None or not principal.sees(row[4]):
        raise ResponseNotFound(f"No response with id {response_id!r}.")
    response, org_code, survey_code, version, _ = row
    return _render(response, org_code=org_code, survey_code=survey_code, survey_version=version)


async def list_responses(
    session: AsyncSession,
    *,
    principal: Principal,
    org_code: str | None,
    include_descendants: bool,
    stage: Stage | None,
    start: datetime | None,
    end: datetime | None,
    page: PageParams,
) -> tuple[list[ResponseOut], list[Any] | None]:
    """Responses ordered by (occurred_at, id), filtered by org subtree, stage and time."""
    query = _with_codes()
    if org_code is not None:
        org = await find_referenced(
            session, code=org_code, principal=principal, loc=("query", "org")
        )
        if include_descendants:
            query = query.where(Org.path.contains([org.id]))
        else:
            query = query.where(Response.org_id == org.id)
    elif principal.org_id is not None:
        query = query.where(Org.path.contains([principal.org_id]))
    if stage is not None:
        query = query.where(Response.stage == stage)
    if start is not None:
        query = query.where(Response.occurred_at >= start)
    if end is not None:
        query = query.where(Response.occurred_at < end)
    if page.after:
        query = query.where(
            tuple_(Response.occurred_at, Response.id) > after_instant_and_id(page.after)
        )
    query = query.order_by(Response.occurred_at, Response.id).limit(page.limit + 1)
    rows, last = cut((await session.execute(query)).all(), page, _instant_and_id)
    items = [_render(r, org_code=oc, survey_code=sc, survey_version=v) for r, oc, sc, v in rows]
    return items, last


def _instant_and_id(row: Any) -> list[Any]:
    return [row[0].occurred_at.isoformat(), row[0].id]
