"""The engine: durable inbox in, outbox out.

1. ``ingest(event)`` commits the event to the inbox (deduplicated on the platform's event id)
   before the adapter acknowledges it to its platform.
2. ``process(inbox_id)`` runs the dispatcher and, in ONE transaction, applies the effect, stores
   the replies in the outbox and marks the inbox row done. A crash before the commit leaves the
   event pending (it is processed again, from scratch); after it, the effect is there once.
3. Adapters send the outbox rows and mark them sent. A crash between sending and marking can
   resend that one message: Matrix makes it idempotent with a transaction id derived from the
   outbox id; on Telegram it is at most the one message in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.i18n import gettext, negotiate, use_locale
from bot.messages import InboundEvent, OutboundMessage, RichText
from bot.router import Capabilities, Dispatcher
from storage.db import Database, utcnow
from storage.models import OutboxMessage
from storage.repositories import Repos

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Delivery:
    outbox_id: int
    message: OutboundMessage


class Engine:
    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        *,
        clock: Clock = utcnow,
        channels: dict[str, Capabilities] | None = None,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.clock = clock
        self.channels: dict[str, Capabilities] = dict(channels or {})

    def register_channel(self, platform: str, caps: Capabilities) -> None:
        self.channels[platform] = caps

    # ------------------------------------------------------------------ inbox

    def ingest(self, event: InboundEvent) -> bool:
        """Commit one event; False if it was already there (a redelivery)."""
        return self.ingest_many([event]) == 1

    def ingest_many(self, events: Iterable[InboundEvent]) -> int:
        """Commit a batch of events in one transaction; returns how many were new."""
        now = self.clock()
        new = 0
        with self.db.session() as session:
            repos = Repos(self.db, session)
            for event in events:
                ctx = event.context
                new += repos.inbox.add(ctx.platform, ctx.event_id, event.to_json(), now)
        return new

    def pending(self, platform: str | None = None, limit: int = 500) -> list[int]:
        with self.db.session() as session:
            return Repos(self.db, session).inbox.pending_ids(platform, limit)

    def process_pending(self, platform: str | None = None, limit: int = 500) -> list[Delivery]:
        out: list[Delivery] = []
        for inbox_id in self.pending(platform, limit):
            out.extend(self.process(inbox_id))
        return out

    def process(self, inbox_id: int) -> list[Delivery]:
        """Process one inbox row exactly once; returns the replies to send."""
        try:
            with self.db.session() as session:
                repos = Repos(self.db, session)
                row = repos.inbox.claim(inbox_id)
                if row is None:
                    return []  # already processed (or being processed by another worker)
                event = InboundEvent.from_json(row.event)
                now = self.clock()
                caps = self.channels.get(event.context.platform, Capabilities())
                replies = self.dispatcher.dispatch(event, repos, now, caps)
                citizen = repos.citizens.by_platform_id(
                    event.context.platform, event.context.user_id
                )
                if citizen is not None and not citizen.reachable:
                    citizen.reachable = True  # they wrote to us again
                    session.add(citizen)
                deliveries = self._store_replies(repos, event, inbox_id, replies, now)
                row.status, row.processed_at = "done", now
                session.add(row)
                return deliveries
        except Exception as exc:
            log.exception("inbox event %s failed", inbox_id)
            return self._fail(inbox_id, exc)

    def handle(self, event: InboundEvent) -> list[Delivery]:
        """Ingest then process one event (console, tests). A redelivered event yields nothing."""
        if not self.ingest(event):
            return []
        with self.db.session() as session:
            row = Repos(self.db, session).inbox.by_key(
                event.context.platform, event.context.event_id
            )
            assert row is not None and row.id is not None
            inbox_id = row.id
        return self.process(inbox_id)

    def _store_replies(
        self,
        repos: Repos,
        event: InboundEvent,
        inbox_id: int | None,
        replies: list[OutboundMessage],
        now: datetime,
    ) -> list[Delivery]:
        deliveries = []
        for message in replies:
            row = repos.outbox.add(
                OutboxMessage(
                    platform=event.context.platform,
                    chat_id=message.chat_id,
                    inbox_id=inbox_id,
                    message=message.to_json(),
                    created_at=now,
                )
            )
            assert row.id is not None
            deliveries.append(Delivery(row.id, message))
        return deliveries

    def _fail(self, inbox_id: int, exc: Exception) -> list[Delivery]:
        """An unexpected error: the event's effect was rolled back; record the failure and
        apologise, so the event is not retried forever and the citizen is not left waiting."""
        now = self.clock()
        with self.db.session() as session:
            repos = Repos(self.db, session)
            row = repos.inbox.claim(inbox_id)
            if row is None:
                return []
            event = InboundEvent.from_json(row.event)
            row.status, row.processed_at = "failed", now
            row.error = f"{type(exc).__name__}: {exc}"[:1000]
            session.add(row)
            citizen = repos.citizens.by_platform_id(event.context.platform, event.context.user_id)
            locale = (citizen.locale if citizen else None) or negotiate(event.context.language)
            with use_locale(locale):
                sorry = OutboundMessage(
                    chat_id=event.context.chat_id,
                    text=RichText().p(
                        gettext(
                            "Sorry, something went wrong on our side and your last message was "
                            "not taken into account. Please try again in a moment."
                        )
                    ),
                )
            return self._store_replies(repos, event, inbox_id, [sorry], now)

    # ------------------------------------------------------------------ outbox

    def pending_deliveries(self, platform: str, limit: int = 100) -> list[Delivery]:
        with self.db.session() as session:
            rows = Repos(self.db, session).outbox.pending(platform, limit)
            return [Delivery(r.id, OutboundMessage.from_json(r.message)) for r in rows if r.id]

    def mark_sent(self, outbox_id: int, platform_message_id: str | None = None) -> None:
        with self.db.session() as session:
            Repos(self.db, session).outbox.mark(
                outbox_id, "sent", self.clock(), message_id=platform_message_id
            )

    def mark_unreachable(self, platform: str, user_id: str) -> None:
        """The citizen blocked the bot (or left): stop broadcasting to them."""
        with self.db.session() as session:
            citizen = Repos(self.db, session).citizens.by_platform_id(platform, user_id)
            if citizen is not None and citizen.reachable:
                citizen.reachable = False
                session.add(citizen)

    def mark_failed(self, outbox_id: int, error: str) -> None:
        with self.db.session() as session:
            Repos(self.db, session).outbox.mark(
                outbox_id, "failed", self.clock(), error=error[:1000]
            )
