"""HTTP routes of indices, stage weights and targets."""

from __future__ import annotations

import re
from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.indices import service
from app.indices.periods import DATE_PATTERN, PERIOD_PATTERN, Granularity
from app.indices.schemas import (
    ChildList,
    OrgIndex,
    SegmentList,
    Series,
    TargetIn,
    TargetList,
    TargetOut,
    WeightsIn,
    WeightsOut,
)
from app.indices.store import Filters
from app.keys.service import Principal
from app.orgs.models import Org
from app.orgs.service import get_visible
from app.platform import clock
from app.platform.deps import (
    IndicesReader,
    IndicesWriter,
    InsightsReader,
    SessionDep,
    SettingsDep,
)
from app.platform.errors import ValidationFailed
from app.platform.metrics import INDEX_SECONDS
from app.platform.schemas import CODE_PATTERN, is_code
from app.responses.models import CustomerType
from app.stages import Stage

router = APIRouter(prefix="/v1/orgs/{code}", tags=["indices"])

OrgCode = Annotated[str, Path(description="An org code.")]
MAX_LIST = 50


def _csv(value: str | None, name: str) -> list[str] | None:
    """Comma-separated values, spaces and tabs around them ignored; empty is no filter."""
    if not value:
        return None
    items = [part.strip(" \t") for part in value.split(",")]
    if not all(items) or len(items) > MAX_LIST:
        raise ValidationFailed.at(("query", name), "must be a comma-separated list of values")
    return list(dict.fromkeys(items))


def _list_of(item: str) -> dict[str, str]:
    """The schema of what _csv takes, with `item` the regex of one value."""
    one = f"[ \t]*(?:{item})[ \t]*"
    return {"pattern": f"^(?:{one}(?:,{one}){{0,{MAX_LIST - 1}}})?$"}


def _one_of(values: type[StrEnum]) -> str:
    return "|".join(re.escape(v) for v in values)


_CHANNEL = "[^,\t ](?:[^,]{0,62}[^,\t ])?"  # 1 to 64 characters: no comma, no blank at the ends


StagesQuery = Annotated[
    str | None,
    Query(description="Comma-separated stages.", json_schema_extra=_list_of(_one_of(Stage))),
]
ChannelQuery = Annotated[
    str | None,
    Query(description="Comma-separated channels.", json_schema_extra=_list_of(_CHANNEL)),
]
CustomerTypeQuery = Annotated[
    str | None,
    Query(
        description="Comma-separated customer types.",
        json_schema_extra=_list_of(_one_of(CustomerType)),
    ),
]


MAX_SEGMENT_FILTERS = 8
SegmentQuery = Annotated[
    list[str] | None,
    Query(
        description="KEY:VALUE; repeatable, all must hold (responses carrying every one).",
        json_schema_extra={"maxItems": MAX_SEGMENT_FILTERS},
    ),
]


def parse_segments(values: list[str] | None) -> list[tuple[str, str]] | None:
    """`segment=KEY:VALUE` filters: keys in the code pattern, values of 1 to 64 characters."""
    if not values:
        return None
    if len(values) > MAX_SEGMENT_FILTERS:
        raise ValidationFailed.at(
            ("query", "segment"), f"at most {MAX_SEGMENT_FILTERS} segment filters"
        )
    found: dict[str, str] = {}
    for value in values:
        key, colon, wanted = value.partition(":")
        if not colon or not is_code(key) or not 1 <= len(wanted) <= 64 or "\x00" in wanted:
            raise ValidationFailed.at(
                ("query", "segment"),
                "must be KEY:VALUE, KEY a code and VALUE 1 to 64 characters",
            )
        if found.get(key, wanted) != wanted:
            raise ValidationFailed.at(
                ("query", "segment"), f"segment {key!r} cannot have two values at once"
            )
        found[key] = wanted
    return sorted(found.items())


def parse_filters(
    stages: str | None,
    channel: str | None,
    customer_type: str | None,
    segment: list[str] | None = None,
) -> Filters:
    """The index filters of the query (each a comma-separated list; empty: no filter)."""
    try:
        stage_list = [Stage(s) for s in _csv(stages, "stages") or []] or None
    except ValueError as exc:
        raise ValidationFailed.at(("query", "stages"), f"stages are {', '.join(Stage)}") from exc
    try:
        types = [CustomerType(t) for t in _csv(customer_type, "customer_type") or []] or None
    except ValueError as exc:
        raise ValidationFailed.at(
            ("query", "customer_type"), f"customer types are {', '.join(CustomerType)}"
        ) from exc
    channels = _csv(channel, "channel")
    if channels is not None and any(len(c) > 64 for c in channels):
        raise ValidationFailed.at(("query", "channel"), "a channel has at most 64 characters")
    return Filters(
        stages=stage_list,
        channels=channels,
        customer_types=types,
        segments=parse_segments(segment),
    )


async def base_scope(
    settings: SettingsDep,
    stages: StagesQuery = None,
    channel: ChannelQuery = None,
    customer_type: CustomerTypeQuery = None,
    segment: SegmentQuery = None,
    include_descendants: bool = True,
    min_n: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="Minimum n of a stage (≥ the floor).")
    ] = None,
) -> service.Scope:
    """The filters and thresholds shared by every index route."""
    filters = parse_filters(stages, channel, customer_type, segment)
    if min_n is not None and min_n < settings.min_n_floor:
        raise ValidationFailed.at(
            ("query", "min_n"), f"min_n may not be below the floor of {settings.min_n_floor}"
        )
    return service.Scope(
        filters=filters,
        include_descendants=include_descendants,
        min_n=min_n if min_n is not None else settings.min_n_default,
        tree=service.CURRENT,
        today=clock.today(settings.zone),
    )


_TREE = f"current|history|{DATE_PATTERN[1:-1]}"
_CHILD_TREE = f"current|{DATE_PATTERN[1:-1]}"
TREE_QUERY_SCHEMA = {"pattern": f"^(?:{_TREE})$"}
TreeQuery = Annotated[
    str | None,
    Query(
        description="current (default), history (each response in the tree of its own"
        " date) or a date YYYY-MM-DD (the tree on that day).",
        json_schema_extra=TREE_QUERY_SCHEMA,
    ),
]


async def index_scope(
    base: Annotated[service.Scope, Depends(base_scope)], tree: TreeQuery = None
) -> service.Scope:
    """The shared scope, in the tree the request chose."""
    return replace(base, tree=service.parse_tree(tree))


async def children_scope(
    base: Annotated[service.Scope, Depends(base_scope)],
    tree: Annotated[
        str | None,
        Query(
            description="current (default) or a date YYYY-MM-DD: the children of that tree.",
            json_schema_extra={"pattern": f"^(?:{_CHILD_TREE})$"},
        ),
    ] = None,
) -> service.Scope:
    """The shared scope for rankings: one tree for every child (history is refused)."""
    return replace(base, tree=service.parse_tree(tree, history=False))


ScopeDep = Annotated[service.Scope, Depends(index_scope)]
ChildScopeDep = Annotated[service.Scope, Depends(children_scope)]
# The patterns are declared for clients and fuzzers, not enforced by FastAPI: the service's own
# parsing answers, with the contract's messages (the same patterns, and more: real dates, `from`
# before `to`, one form of the two).
_PERIOD_SCHEMA = {"pattern": PERIOD_PATTERN}
_DATE_SCHEMA = {"pattern": DATE_PATTERN, "format": "date"}


def _query(description: str, schema: dict[str, str], alias: str | None = None) -> Any:
    return Query(alias=alias, description=description, json_schema_extra=schema)


Period = Annotated[
    str | None, _query("A calendar period: 2026, 2026-Q3 or 2026-09.", _PERIOD_SCHEMA)
]
From = Annotated[str | None, _query("First date, YYYY-MM-DD.", _DATE_SCHEMA, "from")]
To = Annotated[str | None, _query("Date after the last, YYYY-MM-DD.", _DATE_SCHEMA, "to")]


async def _org(session: SessionDep, principal: Principal, code: str) -> Org:
    return await get_visible(session, code=code, principal=principal)


@router.get("/index")
async def get_index(
    code: OrgCode,
    session: SessionDep,
    principal: IndicesReader,
    scope: ScopeDep,
    period: Period = None,
    start: From = None,
    end: To = None,
) -> OrgIndex:
    """The satisfaction index of the org's subtree for a period or a date range."""
    window = service.parse_window(period, start, end)
    org = await _org(session, principal, code)
    with INDEX_SECONDS.labels("index").time():
        return await service.org_index(session, org=org, window=window, scope=scope)


@router.get("/index/children")
async def get_children_index(
    code: OrgCode,
    session: SessionDep,
    principal: IndicesReader,
    scope: ChildScopeDep,
    period: Period = None,
    start: From = None,
    end: To = None,
) -> ChildList:
    """Every direct child's index (children of the chosen tree), ranked."""
    window = service.parse_window(period, start, end)
    org = await _org(session, principal, code)
    with INDEX_SECONDS.labels("children").time():
        return await service.children_index(
            session, org=org, window=window, scope=scope, principal=principal
        )


@router.get("/index/segments")
async def get_segment_index(
    code: OrgCode,
    session: SessionDep,
    principal: InsightsReader,
    scope: ScopeDep,
    key: Annotated[str, Query(pattern=CODE_PATTERN, description="The segment key.")],
    period: Period = None,
    start: From = None,
    end: To = None,
) -> SegmentList:
    """One index per value of a segment key in the org's scope, ranked like children."""
    window = service.parse_window(period, start, end)
    org = await _org(session, principal, code)
    with INDEX_SECONDS.labels("segments").time():
        return await service.segment_index(session, org=org, key=key, window=window, scope=scope)


@router.get("/index/series")
async def get_index_series(
    code: OrgCode,
    session: SessionDep,
    principal: IndicesReader,
    scope: ScopeDep,
    granularity: Granularity,
    start: Annotated[str, _query("A period boundary, YYYY-MM-DD.", _DATE_SCHEMA, "from")],
    end: Annotated[str, _query("A period boundary, YYYY-MM-DD.", _DATE_SCHEMA, "to")],
) -> Series:
    """One index per month, quarter or year (at most 120 periods)."""
    windows = service.parse_series(granularity, start, end)
    org = await _org(session, principal, code)
    with INDEX_SECONDS.labels("series").time():
        return await service.index_series(session, org=org, windows=windows, scope=scope)


@router.get("/stage-weights")
async def get_stage_weights(
    code: OrgCode, session: SessionDep, principal: IndicesReader
) -> WeightsOut:
    """The weights in force for the org and where they come from."""
    org = await _org(session, principal, code)
    return await service.get_weights(session, org=org, visible_from=principal.org_id)


@router.put("/stage-weights")
async def put_stage_weights(
    code: OrgCode, body: WeightsIn, session: SessionDep, principal: IndicesWriter
) -> WeightsOut:
    """Replace the org's weight set (stages not named weigh 1); its subtree inherits it."""
    org = await _org(session, principal, code)
    await service.put_weights(session, org=org, weights=body.root, principal=principal)
    return await service.get_weights(session, org=org, visible_from=principal.org_id)


@router.delete("/stage-weights", status_code=status.HTTP_204_NO_CONTENT)
async def delete_stage_weights(
    code: OrgCode, session: SessionDep, principal: IndicesWriter
) -> Response:
    """Remove the org's own set: it inherits again."""
    org = await _org(session, principal, code)
    await service.delete_weights(session, org=org, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


PeriodPath = Annotated[
    str, Path(description="2026, 2026-Q3 or 2026-09.", json_schema_extra=_PERIOD_SCHEMA)
]


@router.get("/targets")
async def list_targets(code: OrgCode, session: SessionDep, principal: IndicesReader) -> TargetList:
    """The org's targets by period (targets are not inherited)."""
    return await service.list_targets(session, org=await _org(session, principal, code))


@router.put("/targets/{period}")
async def put_target(
    code: OrgCode, period: PeriodPath, body: TargetIn, session: SessionDep, principal: IndicesWriter
) -> TargetOut:
    """Set the org's CSI target for a calendar period."""
    org = await _org(session, principal, code)
    return await service.put_target(
        session, org=org, period=period, csi=body.csi, principal=principal
    )


@router.get("/targets/{period}")
async def get_target(
    code: OrgCode, period: PeriodPath, session: SessionDep, principal: IndicesReader
) -> TargetOut:
    """The org's target for a period."""
    org = await _org(session, principal, code)
    return await service.get_target(session, org=org, period=period)


@router.delete("/targets/{period}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_target(
    code: OrgCode, period: PeriodPath, session: SessionDep, principal: IndicesWriter
) -> Response:
    """Remove the org's target for a period."""
    org = await _org(session, principal, code)
    await service.delete_target(session, org=org, period=period, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
