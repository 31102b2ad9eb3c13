"""Insight reads: the choice counts and rating moments of an index scope, from their rollups.

Whole months come from the folded rollups and pending deltas, partial months from the raw
responses through the same facts (indices.store.choice_facts, moment_facts); channel,
customer type and segment filters, which the rollups do not keep, read raw responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.indices import service as indices
from app.indices import store
from app.indices.periods import Window
from app.insights import math
from app.insights.schemas import DriverItem, DriverList, PainPointItem, PainPoints
from app.orgs.models import Org
from app.platform.errors import ValidationFailed
from app.surveys.models import RATING_TYPES, QuestionType, Survey, SurveyVersion


def _raw_only(scope: indices.Scope) -> bool:
    """Whether the scope's filters need the raw responses (the insight rollups keep neither
    channel, customer type nor segments)."""
    return scope.filters.fine or scope.filters.segments is not None


def _in_versions(ids: Sequence[int] | None) -> store.Condition:
    """Rows of these survey versions (all, with None)."""

    def where(alias: str, params: store._Params) -> str:
        if ids is None:
            return ""
        return f" AND {alias}.survey_version_id = ANY({params.add(list(ids))}::bigint[])"

    return where


async def _versions(session: AsyncSession) -> list[tuple[SurveyVersion, Survey]]:
    rows = await session.execute(
        select(SurveyVersion, Survey).join(Survey, Survey.id == SurveyVersion.survey_id)
    )
    return [(v, s) for v, s in rows.all()]


async def pain_points(
    session: AsyncSession, *, org: Org, window: Window, scope: indices.Scope, low_below: float
) -> PainPoints:
    """Each choice option's share among low responses against its share among all."""
    versions = {v.id: (v, s) for v, s in await _versions(session)}
    stages = scope.filters.stages
    kept = None if stages is None else [i for i, (_, s) in versions.items() if s.stage in stages]
    rows = await indices.read_family(
        session,
        org=org,
        window=window,
        scope=scope,
        family=store.CHOICES,
        where=_in_versions(kept),
        raw_only=_raw_only(scope),
        by=("survey_version_id", "question", "option", "score"),
    )
    threshold = Fraction(low_below)
    counts: dict[tuple[str, str], dict[str, math.OptionCount]] = {}
    answered: set[int] = set()
    n = low_n = 0
    for row in rows:
        version, survey = versions[row["survey_version_id"]]
        low = 100 * (row["score"] - version.scale_min) < threshold * (
            version.scale_max - version.scale_min
        )
        if row["question"] == "":  # the responses themselves
            n += row["n"]
            low_n += row["n"] if low else 0
            if row["n"]:
                answered.add(version.id)
            continue
        options = counts.setdefault((survey.code, row["question"]), {})
        seen = options.get(row["option"], math.OptionCount(0, 0))
        options[row["option"]] = math.OptionCount(
            seen.low_n + (row["n"] if low else 0), seen.all_n + row["n"]
        )
    # Every option of the choice questions of the versions answered in scope, chosen or not.
    for vid in answered:
        version, survey = versions[vid]
        for question in version.questions:
            if question["type"] == QuestionType.choice.value:
                options = counts.setdefault((survey.code, question["key"]), {})
                for option in question["options"]:
                    options.setdefault(option, math.OptionCount(0, 0))
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


def _ratings(version: SurveyVersion) -> dict[str, tuple[int, int, int]]:
    """The version's rating-kind questions: key → (number in question order, scale min, max),
    as indices.store.moment_facts numbers them."""
    numbered = [q for q in version.questions if QuestionType(q["type"]) in RATING_TYPES]
    return {
        q["key"]: (p, int(q["scale"]["min"]), int(q["scale"]["max"]))
        for p, q in enumerate(numbered)
    }


def _moments(
    rows: Sequence[Any], versions: Sequence[SurveyVersion], wanted: Sequence[str]
) -> math.Moments:
    """The exact moments of the normalized scores of `wanted` (predictors…, outcome) over the
    responses that answered them all, each normalized by its own version's scale."""
    k = len(wanted)
    n = 0
    sums = [Fraction(0)] * k
    cross = [[Fraction(0)] * k for _ in range(k)]
    terms: dict[tuple[int, str], dict[tuple[int, int], int]] = {}
    for row in rows:
        packed = zip(store.moment_terms(row["answered"]), row["totals"], strict=True)
        terms[(row["survey_version_id"], row["answered"])] = dict(packed)
    by_id = {v.id: v for v in versions}
    for (vid, answered), cell in terms.items():
        ratings = _ratings(by_id[vid])
        if any(key not in ratings for key in wanted):
            continue  # a key that is not a rating in this version: never answered here
        numbers = {int(p) for p in answered.split(",")}
        if any(ratings[key][0] not in numbers for key in wanted):
            continue  # listwise: only responses that answered every variable
        term = [ratings[key][0] + 1 for key in wanted]  # (0, t) and (t, u) as moment_facts
        scale = [Fraction(100, ratings[key][2] - ratings[key][1]) for key in wanted]
        n += cell.get((0, 0), 0)
        for a in range(k):
            sums[a] += scale[a] * cell.get((0, term[a]), 0)
            for b in range(k):
                low, high = sorted((term[a], term[b]))
                cross[a][b] += scale[a] * scale[b] * cell.get((low, high), 0)
    return math.Moments(n, sums, cross)


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
    keys = [key for key in _ratings(latest) if key != primary]
    stages = scope.filters.stages
    kept = [v.id for v in versions] if stages is None or survey.stage in stages else []
    rows = await indices.read_family(
        session,
        org=org,
        window=window,
        scope=scope,
        family=store.MOMENTS,
        where=_in_versions(kept),
        raw_only=_raw_only(scope),
        by=("survey_version_id", "answered"),
    )
    result = math.drivers_from_moments(
        _moments(rows, versions, [*keys, primary]), min_n=scope.min_n
    )
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
