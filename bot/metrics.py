"""What operators see: ``/healthz`` and Prometheus ``/metrics`` on ``PARLONS_METRICS_LISTEN``.

Each worker serves its own figures (one registry per server, no global state):

- from the database, read at each scrape (one statement): inbox backlog and lag (age of the
  oldest pending event), outbox backlog and dead letters per platform — the same on every
  worker;
- from this worker: messages sent, 429s (throttled), retries and dead letters since start,
  and a send rate over the last scrapes; which bot accounts this worker polls for (leader);
  statements sent to the database (``storage.statements``).

``/healthz`` answers 200 with a small JSON status when the database answers, 503 otherwise.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.runtime import Runtime
from storage.db import utcnow
from storage.repositories_runtime import RuntimeRepo
from storage.statements import StatementCounter

log = logging.getLogger(__name__)


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value))  # SQLite returns text
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


class _Sample:
    """What one scrape read from the database."""

    def __init__(self, rows: list[tuple[Any, ...]], now: datetime) -> None:
        self.inbox: dict[str, tuple[int, float]] = {}
        self.outbox: dict[tuple[str, str], int] = {}
        for table, platform, status, n, oldest in rows:
            if table == "inbox":
                first = _as_datetime(oldest)
                lag = max(0.0, (now - first).total_seconds()) if first else 0.0
                self.inbox[platform] = (int(n), lag)
            else:
                self.outbox[(platform, status)] = int(n)


class Metrics:
    """The figures of one worker; ``services`` are ``parlons run``'s channel services (with
    ``channel.platform``, and ``sender`` / ``poll_leader`` when they have them)."""

    def __init__(
        self,
        runtime: Runtime,
        services: Iterable[Any],
        *,
        statements: StatementCounter | None = None,
        window: float = 60.0,
    ) -> None:
        self.runtime = runtime
        self.db = runtime.app.db
        self.services = list(services)
        self.statements = statements
        self.window = window
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._sample: _Sample | None = None
        self._sent: deque[tuple[float, int]] = deque()
        self.started = time.monotonic()

    # ------------------------------------------------------------------ database

    def read_database(self) -> _Sample:
        """In the database thread: one statement."""
        with self.db.session() as session:
            rows = RuntimeRepo(self.db, session).backlog()
        return _Sample(rows, utcnow())

    async def refresh(self) -> None:
        self._sample = await self.runtime.call(self.read_database)

    # ------------------------------------------------------------------ this worker

    def _senders(self) -> Iterator[tuple[str, Any]]:
        for service in self.services:
            sender = getattr(service, "sender", None)
            channel = getattr(service, "channel", None)
            if sender is not None and channel is not None:
                yield channel.platform, sender

    def _send_rate(self, total: int) -> float:
        now = time.monotonic()
        self._sent.append((now, total))
        while len(self._sent) > 2 and now - self._sent[0][0] > self.window:
            self._sent.popleft()
        first_at, first = self._sent[0]
        if now - first_at <= 0:
            return 0.0
        return (total - first) / (now - first_at)

    def leaders(self) -> dict[str, bool]:
        out: dict[str, bool] = {}
        for service in self.services:
            leader = getattr(service, "poll_leader", None)
            if leader is not None:
                out[leader.name] = bool(leader.leading)
        return out

    # ------------------------------------------------------------------ Prometheus

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        sample = self._sample
        if sample is not None:
            pending = GaugeMetricFamily(
                "parlons_inbox_pending", "Inbox events not processed yet", labels=["platform"]
            )
            lag = GaugeMetricFamily(
                "parlons_inbox_lag_seconds",
                "Age of the oldest inbox event not processed yet",
                labels=["platform"],
            )
            for platform, (n, seconds) in sorted(sample.inbox.items()):
                pending.add_metric([platform], n)
                lag.add_metric([platform], seconds)
            backlog = GaugeMetricFamily(
                "parlons_outbox_backlog", "Replies waiting to be sent", labels=["platform"]
            )
            dead = GaugeMetricFamily(
                "parlons_outbox_dead_letters",
                "Replies given up (permanent failure), kept with their error",
                labels=["platform"],
            )
            for (platform, status), n in sorted(sample.outbox.items()):
                (backlog if status == "pending" else dead).add_metric([platform], n)
            yield from (pending, lag, backlog, dead)
        sent = CounterMetricFamily(
            "parlons_sent", "Messages sent by this worker", labels=["platform"]
        )
        throttled = CounterMetricFamily(
            "parlons_throttled", "429 answers (retry after) to this worker", labels=["platform"]
        )
        retries = CounterMetricFamily(
            "parlons_send_retries", "Transient send failures retried", labels=["platform"]
        )
        dead_here = CounterMetricFamily(
            "parlons_dead_letters", "Messages dead-lettered by this worker", labels=["platform"]
        )
        total = 0
        for platform, sender in self._senders():
            stats = getattr(getattr(sender, "lanes", None), "stats", {}) or {}
            count = int(getattr(sender, "sent", stats.get("sent", 0)) or 0)
            total += count
            sent.add_metric([platform], count)
            throttled.add_metric([platform], int(stats.get("throttled", 0)))
            retries.add_metric([platform], int(stats.get("retries", 0)))
            dead_here.add_metric([platform], int(stats.get("dead", 0)))
        rate = GaugeMetricFamily(
            "parlons_send_rate", "Messages sent per second by this worker (recent scrapes)"
        )
        rate.add_metric([], self._send_rate(total))
        leader = GaugeMetricFamily(
            "parlons_leader", "1 if this worker polls for this bot account", labels=["role"]
        )
        for role, leading in sorted(self.leaders().items()):
            leader.add_metric([role], 1 if leading else 0)
        yield from (sent, throttled, retries, dead_here, rate, leader)
        if self.statements is not None:
            counts = self.statements.snapshot()
            statements = CounterMetricFamily(
                "parlons_db_round_trips",
                "Statements, BEGINs and COMMITs sent to the database",
                labels=["kind"],
            )
            statements.add_metric(["statement"], counts.statements)
            statements.add_metric(["begin"], counts.begins)
            statements.add_metric(["commit"], counts.commits)
            yield statements

    # ------------------------------------------------------------------ HTTP

    async def metrics(self, _request: web.Request) -> web.Response:
        try:
            await self.refresh()
        except Exception as exc:  # the worker's own figures are still worth serving
            log.warning("metrics: database unavailable: %r", exc)
            self._sample = None
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, _request: web.Request) -> web.Response:
        try:
            await self.refresh()
        except Exception as exc:
            return web.json_response(
                {"status": "database unavailable: " + type(exc).__name__}, status=503
            )
        sample = self._sample
        assert sample is not None
        return web.json_response(
            {
                "status": "ok",
                "uptime_seconds": round(time.monotonic() - self.started, 1),
                "leader": self.leaders(),
                "inbox_pending": sum(n for n, _lag in sample.inbox.values()),
                "inbox_lag_seconds": round(
                    max((lag for _n, lag in sample.inbox.values()), default=0.0), 3
                ),
                "outbox_backlog": sum(n for (_p, s), n in sample.outbox.items() if s == "pending"),
            }
        )

    async def serve(self, listen: str) -> web.AppRunner:
        """Start listening on ``host:port`` (port 0: any free port); returns the runner (its
        ``addresses`` hold the port; ``cleanup()`` stops it)."""
        host, _sep, port = listen.rpartition(":")
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host or "127.0.0.1", int(port))
        await site.start()
        return runner
