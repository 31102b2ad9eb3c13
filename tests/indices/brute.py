"""A brute-force index computed straight from raw scores, written from PRODUCT.md's definitions.

Deliberately naive and independent of app.indices: plain floats, statistics.variance, no sums.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

STAGES = ("purchase", "consultation", "rental", "delivery", "after_service")


@dataclass
class Placements:
    """Each org's placements as the contract states them: its creation parent, dated moves."""

    created: dict[str, str | None]
    moves: dict[str, dict[date, str | None]] = field(default_factory=dict)

    def parent_on(self, org: str, day: date) -> str | None:
        dated = [d for d in self.moves.get(org, {}) if d <= day]
        return self.moves[org][max(dated)] if dated else self.created[org]

    def chain(self, org: str, day: date) -> list[str] | None:
        """org and its ancestors on `day`; None when the walk never ends (a cycle)."""
        seen = [org]
        while (up := self.parent_on(seen[-1], day)) is not None:
            if up in seen:
                return None
            seen.append(up)
        return seen

    def acyclic(self) -> bool:
        days = [date.min, *(d for m in self.moves.values() for d in m)]
        return all(self.chain(o, d) is not None for d in days for o in self.created)


@dataclass(frozen=True)
class Raw:
    """One response as the index sees it."""

    stage: str
    v: int
    scale_min: int
    scale_max: int
    is_nps: bool = False

    @property
    def x(self) -> float:
        return 100 * (self.v - self.scale_min) / (self.scale_max - self.scale_min)


def clip(pair: tuple[float, float]) -> tuple[float, float]:
    return (min(max(pair[0], 0.0), 100.0), min(max(pair[1], 0.0), 100.0))


def brute_index(
    responses: Sequence[Raw],
    *,
    weights: Mapping[str, float],
    min_n: int,
    stages: Sequence[str] | None = None,
) -> dict[str, object]:
    """The index as a dict shaped like the API's (without org/from/to/previous)."""
    in_scope = [r for r in responses if stages is None or r.stage in stages]
    out_stages = []
    used = []
    for stage in STAGES:
        rows = [r for r in in_scope if r.stage == stage]
        n = len(rows)
        weight = float(weights.get(stage, 1.0))
        if n < min_n or n == 0:
            out_stages.append(
                {
                    "stage": stage,
                    "n": n,
                    "score": None,
                    "ci95": None,
                    "weight": weight,
                    "top2box": None,
                    "nps": None,
                    "suppressed": True,
                }
            )
            continue
        xs = [r.x for r in rows]
        mean = sum(xs) / n
        var = statistics.variance(xs) if n >= 2 else None
        ci = (
            clip((mean - 1.96 * math.sqrt(var / n), mean + 1.96 * math.sqrt(var / n)))
            if var is not None
            else None
        )
        top2 = 100 * sum(1 for r in rows if r.v >= r.scale_max - 1) / n
        nps_rows = [r for r in rows if r.is_nps]
        nps = (
            100
            * (sum(1 for r in nps_rows if r.v >= 9) - sum(1 for r in nps_rows if r.v <= 6))
            / len(nps_rows)
            if nps_rows
            else None
        )
        out_stages.append(
            {
                "stage": stage,
                "n": n,
                "score": mean,
                "ci95": list(ci) if ci else None,
                "weight": weight,
                "top2box": top2,
                "nps": nps,
                "suppressed": False,
            }
        )
        if weight > 0:
            used.append((weight, mean, var, n))
    total_n = len(in_scope)
    if not used:
        return {
            "n": total_n,
            "csi": None,
            "ci95": None,
            "se": None,
            "suppressed": True,
            "stages": out_stages,
        }
    w_total = sum(w for w, *_ in used)
    csi = sum(w * m for w, m, _, _ in used) / w_total
    if any(var is None for _, _, var, _ in used):
        return {
            "n": total_n,
            "csi": csi,
            "ci95": None,
            "se": None,
            "suppressed": False,
            "stages": out_stages,
        }
    se = math.sqrt(sum((w / w_total) ** 2 * var / n for w, _, var, n in used))
    return {
        "n": total_n,
        "csi": csi,
        "ci95": list(clip((csi - 1.96 * se, csi + 1.96 * se))),
        "se": se,
        "suppressed": False,
        "stages": out_stages,
    }


def assert_close(actual: object, expected: object, path: str = "", tol: float = 1e-9) -> None:
    """Deep comparison of JSON-like values, numbers to `tol` (absolute)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} missing"
            assert_close(actual[key], value, f"{path}.{key}", tol)
    elif isinstance(expected, list | tuple):
        assert isinstance(actual, list | tuple), f"{path}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]", tol)
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
    else:
        assert isinstance(actual, int | float), f"{path}: {actual!r}"
        assert not isinstance(actual, bool), f"{path}: {actual!r}"
        assert abs(actual - expected) <= tol, f"{path}: {actual!r} != {expected!r}"
