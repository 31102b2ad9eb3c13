"""A deterministic, realistic data set: ~1,000 orgs in 4 levels, surveys of every stage, responses.

Scores differ by stage, org (each org leans its own way, inherited in part from its parent),
channel and customer type; timestamps spread over 24 months with a weekly rhythm. Responses carry
a choice reason (low scores name some reasons more), two sub-ratings that go with the overall
score, and three segment keys (tier, region, plan). The same (seed, shard) always yields the
same responses, so shards can be generated in parallel.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2024, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
CHANNELS = ["web", "mobile", "store", "call", None]
CHANNEL_WEIGHTS = [30, 35, 20, 10, 5]
CUSTOMER_TYPES = ["end_user", "business_partner", "internal"]
CUSTOMER_WEIGHTS = [85, 10, 5]
STAGE_BASE = {  # mean position on the scale, 0..1
    "purchase": 0.74,
    "consultation": 0.66,
    "rental": 0.61,
    "delivery": 0.70,
    "after_service": 0.58,
}
SURVEYS: list[dict[str, Any]] = [
    {"code": "purchase-csat", "stage": "purchase", "type": "csat"},
    {"code": "purchase-nps", "stage": "purchase", "type": "nps"},
    {"code": "consultation-ces", "stage": "consultation", "type": "ces"},
    {"code": "consultation-csat", "stage": "consultation", "type": "csat"},
    {"code": "rental-rating", "stage": "rental", "type": "rating", "scale": {"min": 1, "max": 10}},
    {"code": "delivery-csat", "stage": "delivery", "type": "csat"},
    {"code": "delivery-nps", "stage": "delivery", "type": "nps"},
    {"code": "after-service-csat", "stage": "after_service", "type": "csat"},
    {"code": "after-service-ces", "stage": "after_service", "type": "ces"},
]
SCALES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
# Micro-segments of the customers (three keys).
TIERS = ("gold", "silver", "bronze")
REGIONS = ("north", "south", "east", "west")
PLANS = ("basic", "plus")


def survey_bodies() -> list[dict[str, Any]]:
    bodies = []
    for s in SURVEYS:
        primary: dict[str, Any] = {"key": "overall", "type": s["type"], "prompt": "Overall?"}
        if "scale" in s:
            primary["scale"] = s["scale"]
        bodies.append(
            {
                "code": s["code"],
                "title": s["code"].replace("-", " ").title(),
                "stage": s["stage"],
                "primary": "overall",
                "questions": [
                    primary,
                    {
                        "key": "reason",
                        "type": "choice",
                        "prompt": "Main reason?",
                        "options": ["price", "speed", "staff", "quality", "other"],
                        "required": False,
                    },
                    # Sub-ratings, for the key-driver analysis.
                    {"key": "staff", "type": "csat", "prompt": "Staff?", "required": False},
                    {"key": "ease", "type": "ces", "prompt": "How easy?", "required": False},
                    {"key": "comment", "type": "text", "prompt": "Comment?", "required": False},
                ],
            }
        )
    return bodies


@dataclass(frozen=True)
class OrgSpec:
    code: str
    name: str
    parent: str | None
    kind: str
    lean: float  # added to the stage's base position
    weight: float  # share of responses


def org_tree(seed: int = 1) -> list[OrgSpec]:
    """HQ → 6 divisions → 8 subsidiaries each → 10-30 teams each (parents first)."""
    rng = random.Random(seed)
    orgs = [OrgSpec("HQ", "Headquarters", None, "hq", 0.0, 0.0)]
    for d in range(1, 7):
        div = f"DIV{d}"
        div_lean = rng.gauss(0, 0.04)
        orgs.append(OrgSpec(div, f"Division {d}", "HQ", "division", div_lean, 0.0))
        for s in range(1, 9):
            sub = f"{div}-SUB{s:02d}"
            sub_lean = div_lean + rng.gauss(0, 0.04)
            orgs.append(OrgSpec(sub, f"Subsidiary {d}.{s}", div, "subsidiary", sub_lean, 0.3))
            teams = 30 if (d, s) == (1, 1) else rng.randint(10, 28)
            for t in range(1, teams + 1):
                lean = sub_lean + rng.gauss(0, 0.05)
                orgs.append(
                    OrgSpec(
                        f"{sub}-T{t:02d}",
                        f"Team {d}.{s}.{t}",
                        sub,
                        "team",
                        lean,
                        rng.uniform(0.5, 2.0),
                    )
                )
    return orgs


def responses(
    orgs: list[OrgSpec], *, count: int, seed: int, shard: int = 0, shards: int = 1
) -> Iterator[dict[str, Any]]:
    """The responses of one shard (every `shards`-th of `count`), as POST /v1/responses bodies."""
    rng = random.Random(seed * 1_000_003 + shard)
    weighted = [o for o in orgs if o.weight > 0]
    cumulative = []
    total = 0.0
    for o in weighted:
        total += o.weight
        cumulative.append(total)
    span = (END - START).total_seconds()
    for i in range(shard, count, shards):
        org = weighted[_pick(rng.random() * total, cumulative)]
        survey = SURVEYS[rng.randrange(len(SURVEYS))]
        channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
        customer_type = rng.choices(CUSTOMER_TYPES, CUSTOMER_WEIGHTS)[0]
        low, high = SCALES.get(survey["type"]) or (survey["scale"]["min"], survey["scale"]["max"])
        position = STAGE_BASE[survey["stage"]] + org.lean
        position += {"store": 0.04, "call": -0.05}.get(channel or "", 0.0)
        position += -0.03 if customer_type == "business_partner" else 0.0
        position = min(max(rng.gauss(position, 0.22), 0.0), 1.0)
        moment = START + timedelta(seconds=_moment(rng) * span)
        item: dict[str, Any] = {
            "survey": survey["code"],
            "org": org.code,
            "occurred_at": moment.isoformat(timespec="seconds"),
            "source": "bench",
            "external_id": f"r{i}",
            "customer": {"ref": f"cust-{rng.randrange(2_000_000)}", "type": customer_type},
            "answers": {"overall": low + round(position * (high - low))},
        }
        if channel is not None:
            item["channel"] = channel
        if rng.random() < 0.3:
            # Low scores name some reasons more often: the pain points have something to find.
            reasons = ["price", "speed", "staff", "quality", "other"]
            leaning = [1, 3, 2, 1, 1] if position < 0.5 else [2, 1, 1, 2, 1]
            item["answers"]["reason"] = rng.choices(reasons, leaning)[0]
        if rng.random() < 0.8:  # sub-ratings that go with the overall score, more or less
            staff = min(max(rng.gauss(position + 0.05, 0.25), 0.0), 1.0)
            ease = min(max(rng.gauss(position - 0.05, 0.3), 0.0), 1.0)
            item["answers"]["staff"] = 1 + round(staff * 4)
            item["answers"]["ease"] = 1 + round(ease * 6)
        if rng.random() < 0.9:
            item["segments"] = {
                "tier": rng.choices(TIERS, (1, 3, 6))[0],
                "region": rng.choice(REGIONS),
                "plan": rng.choice(PLANS),
            }
        yield item


def _pick(x: float, cumulative: list[float]) -> int:
    lo, hi = 0, len(cumulative) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _moment(rng: random.Random) -> float:
    """A point in [0, 1) with a weekly rhythm (fewer responses at weekends)."""
    while True:
        x = rng.random()
        weekday = math.floor(x * 730) % 7
        if rng.random() < (0.6 if weekday in (5, 6) else 1.0):
            return x
