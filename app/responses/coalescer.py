"""Group commit for single posts: the posts that arrive together in a worker share one
transaction.

A post joins the queue and waits. When fewer than `FLUSHES` flushes are running, one starts at
once and takes everything queued (up to `MAX_ITEMS`); otherwise the post waits until one of the
running flushes, its transaction done, takes it. So a lone post is stored at once, alone, and
under load each transaction carries the posts that came in while the previous ones ran: one
catalog read, one insert, one commit for all of them instead of one each (the database's work
per post drops with the batch, and so does the Python around it).

Guarantees, as for a post stored alone:
- each caller is answered with its own item's result (201, 200, 403, 409, 410, 422) and only
  after the transaction that stored it committed;
- items are judged as `post_responses` judges them, each against its own caller;
- if the shared transaction fails (a database error), each of its posts is retried alone, so
  one post's failure is never another's; a post whose own retry fails gets that error. When the
  database is away (no connection, the pool exhausted) every post gets its 503 at once instead;
- a flush cut short (shutdown) answers its posts, and the last one running the queued ones,
  with a 503.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import State

from app.keys.service import Principal
from app.platform.errors import AppError, ServiceUnavailable, database_away
from app.responses import service
from app.responses.schemas import ResponseIn, ResponseOut

MAX_ITEMS = 250
FLUSHES = 2  # at once per worker: one fills its batch while the other waits on the database


@dataclass(slots=True)
class _Ask:
    body: ResponseIn
    principal: Principal
    future: asyncio.Future[Any]


class Coalescer:
    """One per worker (app.state.coalescer)."""

    def __init__(self, state: State, *, max_items: int = MAX_ITEMS, flushes: int = FLUSHES) -> None:
        self._state = state
        self._max = max_items
        self._flushes = flushes
        self._queue: list[_Ask] = []
        self._drains: set[asyncio.Task[None]] = set()

    async def post(self, body: ResponseIn, principal: Principal) -> tuple[ResponseOut, bool]:
        """Store one response with whatever else is posted now: (response, created)."""
        loop = asyncio.get_running_loop()
        ask = _Ask(body, principal, loop.create_future())
        self._queue.append(ask)
        if len(self._drains) < self._flushes:
            # A context of its own: the flush outlives the request that started it, and what
            # it logs must not carry that request's id.
            drain = loop.create_task(self._run(), context=contextvars.Context())
            self._drains.add(drain)
        outcome = await ask.future
        if isinstance(outcome, BaseException):
            raise outcome
        result: tuple[ResponseOut, bool] = outcome
        return result

    async def close(self) -> None:
        """Wait for the flushes under way (before the engine goes; the caller bounds it)."""
        if self._drains:
            await asyncio.wait(set(self._drains))

    async def _run(self) -> None:
        try:
            while self._queue:
                asks = [a for a in self._queue[: self._max] if not a.future.done()]
                del self._queue[: self._max]
                if asks:
                    await self._flush(asks)
        finally:
            # At once, with no await since the queue was found empty: a post that comes after
            # this sees one drain fewer and starts its own.
            self._drains.discard(asyncio.current_task())
            if not self._drains:  # cancelled (shutdown), and no other flush will take these
                for ask in self._queue:
                    _settle(ask, _unavailable())
                self._queue.clear()

    async def _flush(self, asks: list[_Ask]) -> None:
        try:
            try:
                async with self._state.sessionmaker() as session, session.begin():
                    outcomes = await service.post_responses(
                        session,
                        [(a.body, a.principal) for a in asks],
                        settings=self._state.settings,
                    )
            except Exception as error:
                if len(asks) == 1:
                    _settle(asks[0], error)
                elif database_away(error):  # each alone would only wait for the same
                    for ask in asks:
                        _settle(ask, _unavailable())
                else:
                    for ask in asks:  # alone, so that one post's failure is nobody else's
                        await self._flush([ask])
                return
            # Only now, committed: every caller gets its own answer.
            for ask, outcome in zip(asks, outcomes, strict=True):
                _settle(ask, outcome)
        except BaseException:  # cancelled (shutdown): nobody waits for an answer in vain
            for ask in asks:
                _settle(ask, _unavailable())
            raise


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The database is unavailable; retry shortly.")


def _settle(ask: _Ask, outcome: tuple[ResponseOut, bool] | AppError | BaseException) -> None:
    if not ask.future.done():  # a caller that went away (cancelled) is not answered
        ask.future.set_result(outcome)
