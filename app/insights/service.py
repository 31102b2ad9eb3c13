"""Insight reads over the raw responses of an index scope."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.indices import service as indices
from app.indices.periods import Window
from app.insights import math
from app.insights.schemas import DriverItem, DriverList, PainPointItem, PainPoints
from app.orgs import tree
from app.orgs.models import Org
from app.platform.db import driver_connection
from app.platform.errors import ValidationFailed
from app.surveys.models import RATING_TYPES, QuestionType, Survey, SurveyVersion


async def _scope_sql(
    session: AsyncSession, *, org: Org, window: Window, scope: indices.Scope, params: list[Any]
) -> str:
    """SQL on `responses` keeping the scope's rows (as the index counts them)."""
    view = await tree.load(session)
    where = indices.stretch_filter(
        indices.stretches(view, [org.id], window, scope),
        column="occurred_on",
        cast="date",
        params=params,
    )
    return f"({where}){indices.filter_sql(scope.filters, params)}"


_PAIN = """
WITH scoped AS (
    SELECT survey_version_id AS vid, answers,
           (score - scale_min) * 100 < $1::numeric * (scale_max - scale_min) AS low
    FROM responses
    WHERE {where}
), questions AS (
    SELECT v.id AS vid, s.code AS survey, q ->> 'key' AS key, q -> 'options' AS options
    FROM (SELECT DISTINCT vid FROM scoped) x
    JOIN survey_versions v ON v.id = x.vid
    JOIN surveys s ON s.id = v.survey_id
    CROSS JOIN LATERAL jsonb_array_elements(v.questions) q
    WHERE q ->> 'type' = 'choice'
)
SELECT 'chosen' AS kind, q.survey, q.key, sc.answers ->> q.key AS option,
       count(*) FILTER (WHERE sc.low) AS low_n, count(*) AS all_n
FROM scoped sc JOIN questions q ON q.vid = sc.vid
WHERE sc.answers ? q.key
GROUP BY q.survey, q.key, sc.answers ->> q.key
UNION ALL
SELECT DISTINCT 'defined', q.survey, q.key, o.option, 0, 0
FROM questions q CROSS JOIN LATERAL jsonb_array_elements_text(q.options) AS o(option)
UNION ALL
SELECT 'scope', NULL, NULL, NULL, count(*) FILTER (WHERE low), count(*) FROM scoped
"""


async def pain_points(
    session: AsyncSession, *, org: Org, window: Window, scope: indices.Scope, low_below: float
) -> PainPoints:
    """Each choice option's share among low responses against its share among all."""
    params: list[Any] = [low_below]
    where = await _scope_sql(session, org=org, window=window, scope=scope, params=params)
    conn = await driver_connection(session)
    await indices.tune(session)
    rows = await conn.fetch(_PAIN.format(where=where), *params)  # placeholders only
    counts: dict[tuple[str, str], dict[str, math.OptionCount]] = {}
    n = low_n = 0
    for row in rows:
        if row["kind"] == "scope":
            n, low_n = row["all_n"], row["low_n"]
            continue
        options = counts.setdefault((row["survey"], row["key"]), {})
        seen = options.get(row["option"], math.OptionCount(0, 0))
        options[row["option"]] = math.OptionCount(
            seen.low_n + row["low_n"], seen.all_n + row["all_n"]
        )
    items = math.pain_points(counts, min_n=scope.min_n)
    return PainPoints(
        org=org.code,
        from_=window.start,
        to=window.end,
        tree=scope.tree.label,
        low_below=low_below,
        n=n,
        low_n=low_n,
        items=[PainPointItem(**asdict(p)) for p in items],
    )


_ANSWERS = """
SELECT survey_version_id AS vid, {columns}
FROM responses
WHERE survey_version_id = ANY($1::bigint[]) AND {where}
"""


async def drivers(
    session: AsyncSession, *, org: Org, survey_code: str, window: Window, scope: indices.Scope
) -> DriverList:
    """Pearson r and Johnson's relative weights of the latest version's rating questions
    against its primary, over the survey's responses in scope that answered them all."""
    survey = await session.scalar(select(Survey).where(Survey.code == survey_code))
    if survey is None:
        raise ValidationFailed.at(("query", "survey"), f"unknown survey {survey_code!r}")
    versions = list(
        await session.scalars(select(SurveyVersion).where(SurveyVersion.survey_id == survey.id))
    )
    latest = next(v for v in versions if v.version == survey.latest_version)
    primary = latest.primary_key
    keys = [
        q["key"]
        for q in latest.questions
        if QuestionType(q["type"]) in RATING_TYPES and q["key"] != primary
    ]
    wanted = [primary, *keys]
    params: list[Any] = [[v.id for v in versions]]
    where = await _scope_sql(session, org=org, window=window, scope=scope, params=params)
    # Each answer as a number where it is one (a JSON number), else null.
    columns = ", ".join(
        f"CASE WHEN jsonb_typeof(answers -> ${len(params) + i + 1}) = 'number'"
        f" THEN (answers ->> ${len(params) + i + 1})::float8 END AS a{i}"
        for i in range(len(wanted))
    )
    params += wanted
    conn = await driver_connection(session)
    await indices.tune(session)
    rows = await conn.fetch(_ANSWERS.format(columns=columns, where=where), *params)
    values = _normalized(rows, versions, wanted)
    complete = values[~np.isnan(values).any(axis=1)] if len(values) else values
    result = math.drivers(complete[:, 0], complete[:, 1:], min_n=scope.min_n)
    items = [
        DriverItem(question=key, n=result.n, r=r, importance=w)
        for key, r, w in zip(keys, result.r, result.importance, strict=True)
    ]
    items.sort(key=lambda i: (-(i.importance if i.importance is not None else -1), i.question))
    return DriverList(
        org=org.code,
        survey=survey.code,
        from_=window.start,
        to=window.end,
        tree=scope.tree.label,
        n=result.n,
        r2=result.r2,
        suppressed=result.suppressed,
        items=items,
    )


def _normalized(rows: Any, versions: list[SurveyVersion], wanted: list[str]) -> Any:
    """A rows-by-questions array of normalized answers (NaN where a response's own version has no
    rating question of that key, or the response did not answer it)."""
    scales: dict[int, list[tuple[float, float] | None]] = {}
    for version in versions:
        by_key = {q["key"]: q for q in version.questions}
        scales[version.id] = [_scale(by_key.get(key)) for key in wanted]
    out = np.full((len(rows), len(wanted)), np.nan)
    for i, row in enumerate(rows):
        for j, scale in enumerate(scales[row["vid"]]):
            value = row[f"a{j}"]
            if scale is not None and value is not None:
                low, high = scale
                out[i, j] = 100 * (value - low) / (high - low)
    return out


def _scale(question: dict[str, Any] | None) -> tuple[float, float] | None:
    if question is None or QuestionType(question["type"]) not in RATING_TYPES:
        return None
    return float(question["scale"]["min"]), float(question["scale"]["max"])
