"""The tree over time (pure; no I/O): placements, the tree on a day, epochs, cycles and covers.

An org's timeline is a list of placements `(effective, parent)`, the first with `effective` None
(its creation, holding for every day before its first move). The tree on day D gives every org
the placement with the latest effective date ≤ D. Between two consecutive effective dates of any
org the tree does not change: such a stretch is an epoch, named by its first effective date (None
for the one before every move).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

Placement = tuple[date | None, int | None]  # (effective, parent)
Parents = Mapping[int, int | None]


def _sort_key(placement: Placement) -> date:
    return placement[0] or date.min


@dataclass
class Timeline:
    """Every org's placements, oldest first; answers for any day, caching per epoch."""

    placements: dict[int, list[Placement]]
    _dates: list[date] = field(init=False)
    _parents: dict[date | None, dict[int, int | None]] = field(init=False, default_factory=dict)
    _children: dict[date | None, dict[int | None, list[int]]] = field(
        init=False, default_factory=dict
    )
    _subtrees: dict[tuple[date | None, int], frozenset[int]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for timeline in self.placements.values():
            timeline.sort(key=_sort_key)
        self._dates = sorted(
            {e for timeline in self.placements.values() for e, _ in timeline if e is not None}
        )

    @property
    def dates(self) -> Sequence[date]:
        """Every effective date of a move, ascending (where epochs begin)."""
        return self._dates

    def epoch(self, day: date) -> date | None:
        """The first day of the epoch `day` lies in (None: before every move)."""
        i = bisect.bisect_right(self._dates, day)
        return self._dates[i - 1] if i else None

    def parent_on(self, org: int, day: date) -> int | None:
        parent = None
        for effective, placed_under in self.placements[org]:
            if effective is not None and effective > day:
                break
            parent = placed_under
        return parent

    def parents_on(self, day: date) -> Parents:
        """Every org's parent in the tree on `day`."""
        key = self.epoch(day)
        parents = self._parents.get(key)
        if parents is None:
            probe = key or date.min
            parents = {org: self.parent_on(org, probe) for org in self.placements}
            self._parents[key] = parents
        return parents

    def children_on(self, day: date) -> Mapping[int | None, Sequence[int]]:
        """Every org's children in the tree on `day` (None: the roots), by id."""
        key = self.epoch(day)
        children = self._children.get(key)
        if children is None:
            children = {}
            for org, parent in self.parents_on(day).items():
                children.setdefault(parent, []).append(org)
            self._children[key] = children
        return children

    def subtree_on(self, day: date, org: int) -> frozenset[int]:
        """`org` and every org below it in the tree on `day`."""
        key = (self.epoch(day), org)
        found = self._subtrees.get(key)
        if found is None:
            found = frozenset(_below(self.children_on(day), org))
            self._subtrees[key] = found
        return found

    def ancestors_on(self, day: date, org: int) -> list[int]:
        """The path from the root down to `org` in the tree on `day`."""
        parents = self.parents_on(day)
        chain = [org]
        while (up := parents[chain[-1]]) is not None:
            chain.append(up)
        return chain[::-1]

    def cycle(self) -> tuple[date | None, int] | None:
        """The first epoch whose tree has a cycle, with an org on it; None when every day's
        tree is a forest."""
        for key in [None, *self._dates]:
            org = find_cycle(self.parents_on(key or date.min))
            if org is not None:
                return key, org
        return None

    def with_placement(self, org: int, effective: date, parent: int | None) -> Timeline:
        """A copy where `org` hangs under `parent` from `effective` on (replacing a placement
        of that same day)."""
        changed = [p for p in self.placements[org] if p[0] != effective]
        return self._replace(org, [*changed, (effective, parent)])

    def without_placement(self, org: int, effective: date) -> Timeline:
        return self._replace(org, [p for p in self.placements[org] if p[0] != effective])

    def _replace(self, org: int, timeline: list[Placement]) -> Timeline:
        placements = {k: list(v) for k, v in self.placements.items()}
        placements[org] = timeline
        return Timeline(placements)


def _below(children: Mapping[int | None, Sequence[int]], org: int) -> Iterable[int]:
    stack = [org]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(children.get(current, ()))


def find_cycle(parents: Parents) -> int | None:
    """An org that is its own ancestor under `parents`, or None."""
    done: set[int] = set()
    for start in parents:
        seen: set[int] = set()
        org: int | None = start
        while org is not None and org not in done:
            if org in seen:
                return org
            seen.add(org)
            org = parents.get(org)
        done |= seen
    return None


@dataclass(frozen=True, slots=True)
class Cover:
    """A set of orgs as the materialized tree can read it: the tree rows of `roots` (whole
    materialized subtrees inside the set) plus the own rows of `singles` (the rest)."""

    roots: tuple[int, ...]
    singles: tuple[int, ...]


@dataclass
class Materialized:
    """The tree as `orgs.path` holds it: every org's path from its root down to itself."""

    paths: dict[int, list[int]]
    children: dict[int, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.children = {}
        for org, path in self.paths.items():
            if len(path) > 1:
                self.children.setdefault(path[-2], []).append(org)

    def parent(self, org: int) -> int | None:
        path = self.paths[org]
        return path[-2] if len(path) > 1 else None


def cover(scope: frozenset[int], tree: Materialized) -> Cover:
    """The fewest materialized subtrees (plus single orgs) whose union is exactly `scope`.

    An org of `scope` is whole when its entire materialized subtree lies in `scope`; a whole org
    with children whose materialized parent is not whole is a root; every other org of `scope`
    that no root holds is read on its own (a leaf keeps no tree rows: its own rows are all of it).
    """
    whole: set[int] = set()
    for org in sorted(scope, key=lambda o: -len(tree.paths[o])):  # children before parents
        if all(child in whole for child in tree.children.get(org, ())):
            whole.add(org)
    tops = [org for org in whole if tree.parent(org) not in whole]
    roots = sorted(org for org in tops if org in tree.children)
    singles = sorted(
        org for org in scope if org not in whole or (org in tops and org not in tree.children)
    )
    return Cover(tuple(roots), tuple(singles))
