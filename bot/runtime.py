"""Run the synchronous core from asyncio adapters without blocking their event loop.

The core (dispatcher, services, repositories) is synchronous and transactional. Adapters call
it through ``Runtime.call``: one database thread on SQLite (a single writer, in order), a small
pool on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from bot.app import App

if TYPE_CHECKING:
    from bot.delivery.hub import DeliveryHub

T = TypeVar("T")


class Runtime:
    def __init__(self, app: App, *, workers: int | None = None) -> None:
        self.app = app
        size = workers or (1 if app.db.is_sqlite else 4)
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="parlons-db")

    @functools.cached_property
    def delivery(self) -> DeliveryHub:
        """The delivery runtime of this process: one pacer and gate per bot account, shared by
        replies and broadcasts (``bot.delivery``)."""
        from bot.delivery.hub import DeliveryHub

        return DeliveryHub(self)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
