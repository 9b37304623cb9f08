"""``parlons run``: start every configured channel and the scheduler in one event loop.

Each adapter package exposes ``build_service(app, runtime) -> ChannelService`` and the scheduler
``build_service(app, runtime, channels) -> Service``. This module is the composition root's
runtime half: it imports adapters lazily, only when their settings are present.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, Protocol

from bot.app import App
from bot.channels import Channel
from bot.metrics import Metrics
from bot.runtime import Runtime
from bot.workers import Leader, LedService, SecondWorker, single_worker_lock
from storage.repositories import Repos
from storage.statements import StatementCounter

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class ChannelService(Service, Protocol):
    channel: Channel


def configured_channels(app: App, runtime: Runtime) -> list[Any]:
    """The configured channels' services (each with ``name``, ``channel``, ``run``)."""
    services: list[Any] = []
    settings = app.settings
    if settings.telegram_token is not None:
        from adapters.telegram import build_service as telegram

        services.append(telegram(app, runtime))
    if settings.matrix_homeserver:
        from adapters.matrix import build_service as matrix

        # One sync per Matrix account across workers (bot.workers).
        account = settings.matrix_user_id or settings.matrix_homeserver
        leader = Leader.for_account(
            app.db.url, "matrix", account, retry=settings.worker_leader_retry
        )
        services.append(LedService(matrix(app, runtime), leader))
    return services


async def serve(app: App, *, with_scheduler: bool = True) -> None:
    try:
        run_lock = single_worker_lock(app.db.url)  # SQLite: one worker per database file
    except SecondWorker as exc:
        raise SystemExit(str(exc)) from None
    statements = StatementCounter().attach(app.db.engine)
    runtime = Runtime(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    channels = configured_channels(app, runtime)
    services: list[Service] = list(channels)
    if with_scheduler:
        try:
            from scheduler import build_service as scheduler
        except ImportError:
            log.warning("no scheduler available")
        else:
            services.append(
                scheduler(app, runtime, {c.channel.platform: c.channel for c in channels})
            )
    if not channels:
        log.warning("no channel configured: set PARLONS_TELEGRAM_TOKEN or PARLONS_MATRIX_*")
    log.info("starting %s", ", ".join(s.name for s in services) or "nothing")
    metrics_runner = None
    if app.settings.metrics_listen:
        metrics = Metrics(runtime, channels, statements=statements)
        metrics_runner = await metrics.serve(app.settings.metrics_listen)
        log.info("metrics on http://%s/metrics", app.settings.metrics_listen)
    try:
        await asyncio.gather(*(s.run(stop) for s in services), fold_counters(runtime, stop))
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        runtime.close()
        if run_lock is not None:
            await run_lock.release()


async def fold_counters(runtime: Runtime, stop: asyncio.Event, every: float = 5.0) -> None:
    """PostgreSQL: fold the statistics counters' deltas now and then (reads are exact either
    way; folding keeps them one small statement). Every worker may do it: concurrent folds
    take disjoint rows."""
    db = runtime.app.db
    if db.is_sqlite:
        return

    def fold() -> int:
        with db.session() as session:
            return Repos(db, session).stats.fold_counters()

    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            await runtime.call(fold)
        except Exception as exc:  # never let housekeeping stop the bot
            log.warning("folding the statistics counters failed: %r", exc)
