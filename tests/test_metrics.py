"""Operators' view: /healthz and Prometheus /metrics, scraped over HTTP on both databases."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.messages import ChatType, CommandMessage, EventContext, InboundEvent
from bot.metrics import Metrics
from bot.runtime import Runtime
from storage.statements import StatementCounter


def _event(n: int) -> InboundEvent:
    return InboundEvent(
        EventContext(
            platform="telegram",
            chat_id=f"c{n}",
            user_id=f"c{n}",
            event_id=f"m{n}",
            language="fr",
            chat_type=ChatType.PRIVATE,
        ),
        CommandMessage("start", (), ""),
    )


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_and_healthz_are_scraped(any_app, clock):
    statements = StatementCounter().attach(any_app.db.engine)
    runtime = Runtime(any_app)
    sender = SimpleNamespace(
        sent=7, lanes=SimpleNamespace(stats={"throttled": 2, "retries": 3, "dead": 1})
    )
    service = SimpleNamespace(
        channel=SimpleNamespace(platform="telegram"),
        sender=sender,
        poll_leader=SimpleNamespace(name="poll:telegram:42", leading=True),
    )
    metrics = Metrics(runtime, [service], statements=statements)
    runner = await metrics.serve("127.0.0.1:0")
    port = runner.addresses[0][1]
    try:
        # Three events waiting, one processed (its replies wait in the outbox).
        any_app.engine.ingest_many([_event(n) for n in range(4)])
        first = any_app.engine.pending("telegram")[0]
        replies = any_app.engine.process_many([first])
        assert replies
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                health = await response.json()
        got = _samples(text)
        assert got[("parlons_inbox_pending", (("platform", "telegram"),))] == 3
        # The events were stamped by the fake clock (2019): long ago for the real one.
        assert got[("parlons_inbox_lag_seconds", (("platform", "telegram"),))] > 0
        assert got[("parlons_outbox_backlog", (("platform", "telegram"),))] == len(replies)
        assert got[("parlons_sent_total", (("platform", "telegram"),))] == 7
        assert got[("parlons_throttled_total", (("platform", "telegram"),))] == 2
        assert got[("parlons_dead_letters_total", (("platform", "telegram"),))] == 1
        assert got[("parlons_leader", (("role", "poll:telegram:42"),))] == 1
        assert got[("parlons_db_round_trips_total", (("kind", "statement"),))] > 0
        assert health["status"] == "ok"
        assert health["inbox_pending"] == 3
        assert health["outbox_backlog"] == len(replies)
        assert health["leader"] == {"poll:telegram:42": True}
    finally:
        await runner.cleanup()
        runtime.close()


async def test_healthz_reports_a_database_that_does_not_answer(tmp_path, clock):
    from bot.app import build_app
    from bot.settings import Settings

    app = build_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'h.sqlite3'}", log_level="WARNING"),
        clock=clock,
    )
    runtime = Runtime(app)
    metrics = Metrics(runtime, [])
    runner = await metrics.serve("127.0.0.1:0")
    port = runner.addresses[0][1]
    try:
        (tmp_path / "h.sqlite3").unlink()
        (tmp_path / "h.sqlite3").mkdir()  # the file is gone: every new connection fails
        app.db.engine.dispose()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 503
                assert "database unavailable" in (await response.json())["status"]
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200  # this worker's own figures still
                assert "parlons_send_rate" in await response.text()
    finally:
        await runner.cleanup()
        runtime.close()
        await asyncio.sleep(0)
