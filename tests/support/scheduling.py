"""Test helpers for the scheduler: recording channels (in memory or appending to a file, for
worker processes that get killed), and a scheduler service driven by a fake clock."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bot.app import App, build_app
from bot.channels import Pace, RetryAfter, Sent, TemporaryFailure, Unreachable
from bot.consultation_file import ConsultationDocument, load_consultation_file
from bot.messages import OutboundMessage, render_plain
from bot.router import Capabilities
from bot.runtime import Runtime
from bot.schedule import RunOutcome
from bot.settings import Settings
from scheduler.leader import AlwaysLeader
from scheduler.service import SchedulerService

FAST = Pace(per_second=10_000, per_chat_interval=0.0, per_group_per_minute=600_000)


@dataclass
class Record:
    key: str
    chat_id: str
    text: str
    attachment: str | None
    message: OutboundMessage
    at: float = 0.0  # time.monotonic() of the send


@dataclass
class RecordingChannel:
    """A Channel that keeps what it was asked to send. ``idempotent`` makes it behave like
    Matrix (a resend with the same key is not delivered twice)."""

    platform: str = "console"
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(buttons=False, edits=False, max_length=4096)
    )
    idempotent: bool = False
    records: list[Record] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    blocked: set[str] = field(default_factory=set)
    # Keys (or "*") whose next send raises RetryAfter(seconds).
    throttle: dict[str, float] = field(default_factory=dict)
    flaky: dict[str, int] = field(default_factory=dict)

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        self.attempts[key] += 1
        for k in (key, "*"):
            if k in self.throttle:
                raise RetryAfter(self.throttle.pop(k))
        if message.chat_id in self.blocked:
            raise Unreachable("bot was blocked by the user")
        if self.flaky.get(key, 0) > 0:
            self.flaky[key] -= 1
            raise TemporaryFailure("timeout")
        if self.idempotent and any(r.key == key for r in self.records):
            return Sent(key)
        self.records.append(
            Record(
                key,
                message.chat_id,
                render_plain(message.text),
                message.attachment.filename if message.attachment else None,
                message,
                time.monotonic(),
            )
        )
        return Sent(key)

    def to(self, chat_id: str) -> list[Record]:
        return [r for r in self.records if r.chat_id == chat_id]

    def chats(self) -> Counter[str]:
        return Counter(r.chat_id for r in self.records)


@dataclass
class FileChannel:
    """Appends one JSON line per send to ``path`` (flushed and fsynced before returning), so a
    test can count what a killed worker sent."""

    path: Path
    platform: str = "console"
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(buttons=False, edits=False, max_length=4096)
    )
    delay: float = 0.0

    async def send(self, message: OutboundMessage, *, key: str) -> Sent:
        import asyncio

        if self.delay:
            await asyncio.sleep(self.delay)
        line = json.dumps(
            {
                "key": key,
                "chat": message.chat_id,
                "pid": os.getpid(),
                "at": time.time(),
                "text": render_plain(message.text)[:200],
            }
        )
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return Sent(key)


def read_lines(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


# --------------------------------------------------------------------------- apps and services

SEED = Path(__file__).resolve().parents[2] / "consultations" / "ville-intelligente.yaml"
ADMIN = "console:admin"


def consultation_doc(
    *,
    opens_at: str,
    closes_at: str,
    slug: str = "demo",
    timezone: str = "Europe/Paris",
    reminders: dict[str, object] | None = None,
) -> ConsultationDocument:
    """The seed consultation's texts with other dates and a reminders policy."""
    data = load_consultation_file(SEED).to_json()
    data.update(slug=slug, opens_at=opens_at, closes_at=closes_at, timezone=timezone)
    data["reminders"] = reminders
    return ConsultationDocument.from_json(data)


def scheduler_app(
    url: str, clock: Callable[[], datetime], *docs: ConsultationDocument, **kw: object
) -> App:
    settings = Settings(database_url=url, **{"admins": [ADMIN], **kw})  # type: ignore[arg-type]
    app = build_app(settings, clock=clock)
    for doc in docs:
        app.import_consultation(doc)
    return app


@dataclass
class Scheduled:
    app: App
    runtime: Runtime
    service: SchedulerService
    channel: RecordingChannel

    async def tick(self) -> list[RunOutcome]:
        return await self.service.tick()

    def close(self) -> None:
        self.runtime.close()


def scheduled(app: App, channel: RecordingChannel | None = None, pace: Pace = FAST) -> Scheduled:
    channel = channel or RecordingChannel()
    runtime = Runtime(app)
    service = SchedulerService(
        app,
        runtime,
        {channel.platform: channel},
        leadership=AlwaysLeader(),
        paces={channel.platform: pace},
    )
    return Scheduled(app, runtime, service, channel)


def add_subscribers(
    app: App,
    consultation_id: int,
    n: int,
    *,
    platform: str = "console",
    prefix: str = "citizen",
    locale: str = "fr",
    news: bool = True,
) -> list[str]:
    """``n`` citizens who chose to receive the news, inserted directly (fast)."""
    import secrets

    from sqlalchemy import insert, select

    from storage.models import Citizen
    from storage.models_scheduler import PrivateChat, Subscription

    now = app.clock()
    users = [f"{prefix}{i}" for i in range(n)]
    with app.db.session() as session:
        session.execute(
            insert(Citizen),
            [
                {
                    "platform": platform,
                    "platform_user_id": u,
                    "pseudonym": secrets.token_hex(8),
                    "reachable": True,
                    "created_at": now,
                    "last_seen_at": now,
                }
                for u in users
            ],
        )
        ids = dict(
            session.execute(
                select(Citizen.platform_user_id, Citizen.id).where(
                    Citizen.platform == platform,
                    Citizen.platform_user_id.in_(users),  # type: ignore[union-attr]
                )
            ).all()
        )
        session.execute(
            insert(PrivateChat),
            [
                {
                    "citizen_id": ids[u],
                    "platform": platform,
                    "chat_id": u,
                    "locale": locale,
                    "updated_at": now,
                }
                for u in users
            ],
        )
        session.execute(
            insert(Subscription),
            [
                {
                    "citizen_id": ids[u],
                    "consultation_id": consultation_id,
                    "news": news,
                    "created_at": now,
                    "updated_at": now,
                }
                for u in users
            ],
        )
    return users
