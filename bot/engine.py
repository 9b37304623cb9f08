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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bot.i18n import gettext, negotiate, use_locale
from bot.ingress import normalize_event
from bot.messages import ChatType, InboundEvent, OutboundMessage, RichText
from bot.router import Capabilities, Dispatcher
from storage.db import Database, utcnow
from storage.models import InboxEvent
from storage.repositories import Repos, moderating_chats
from storage.repositories_chats import ChatKindRepo

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Delivery:
    outbox_id: int
    message: OutboundMessage


@dataclass(frozen=True, slots=True)
class ChatSeen:
    """What an adapter learned about a chat's kind (Matrix: from a room's membership).
    ``kind=None``: the bot left the chat, forget it."""

    platform: str
    chat_id: str
    kind: ChatType | None
    members: int | None = None


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
        return self.ingest_batch(events, {})

    def ingest_batch(
        self,
        events: Iterable[InboundEvent],
        state: Mapping[str, str],
        chats: Iterable[ChatSeen] = (),
    ) -> int:
        """Commit a batch of events AND the channel's cursors (e.g. Matrix ``next_batch``) in one
        transaction, so a crash can neither lose the batch nor skip past it; returns how many
        events were new. ``chats``: chat kinds the batch revealed, committed with it."""
        now = self.clock()
        new = 0
        with self.db.session() as session:
            repos = Repos(self.db, session)
            for event in self.normalized(events):
                new += repos.inbox.add_event(event.to_json(), now) is not None
            for key, value in state.items():
                repos.channel_state.set(key, value, now)
            kinds = ChatKindRepo(session)
            for chat in chats:
                if chat.kind is None:
                    kinds.forget(chat.platform, chat.chat_id)
                else:
                    kinds.set(chat.platform, chat.chat_id, str(chat.kind), chat.members, now)
        return new

    def chat_kinds(self, platform: str) -> dict[str, ChatType]:
        """The kinds recorded with ``ingest_batch`` (a chat not listed is of unknown kind)."""
        with self.db.session() as session:
            return {
                chat_id: ChatType(kind)
                for chat_id, kind in ChatKindRepo(session).all(platform).items()
            }

    def normalized(self, events: Iterable[InboundEvent]) -> list[InboundEvent]:
        """Every inbound event passes here before it is stored or handled (bot.ingress)."""
        return [normalize_event(e, admins=self.dispatcher.admins) for e in events]

    def channel_state(self, key: str) -> str | None:
        with self.db.session() as session:
            return Repos(self.db, session).channel_state.get(key)

    def moderating_chats(self, platform: str) -> list[str]:
        """Chats that get the moderators' commands menu (their private chats, /modchat)."""
        with self.db.session() as session:
            return moderating_chats(session, platform)

    def inbound_event(self, platform: str, event_id: str) -> InboundEvent | None:
        """An event already in the inbox (e.g. the reaction a Matrix redaction removes)."""
        with self.db.session() as session:
            row = Repos(self.db, session).inbox.by_key(platform, event_id)
            return InboundEvent.from_json(row.event) if row is not None else None

    def pending(self, platform: str | None = None, limit: int = 500) -> list[int]:
        with self.db.session() as session:
            return Repos(self.db, session).inbox.pending_ids(platform, limit)

    def process_pending(self, platform: str | None = None, limit: int = 500) -> list[Delivery]:
        return self.process_many(self.pending(platform, limit))

    def process(self, inbox_id: int) -> list[Delivery]:
        """Process one inbox row exactly once; returns the replies to send."""
        return self.process_many([inbox_id])

    def process_many(self, inbox_ids: Iterable[int]) -> list[Delivery]:
        return self._process_ids(list(inbox_ids))[1]

    def process_available(self, platform: str | None, limit: int) -> tuple[int, list[Delivery]]:
        """Process up to ``limit`` pending events (``process_many``); returns (how many events
        this worker took, their replies). None taken while events are pending: other workers
        are processing their chats."""
        ids = self.pending(platform, limit)
        return self._process_ids(ids) if ids else (0, [])

    def _process_ids(self, ids: list[int]) -> tuple[int, list[Delivery]]:
        """Process inbox rows in ONE transaction (a group commit): each event's effect, its
        replies and its inbox status commit together. If one event fails unexpectedly, the
        batch is rolled back and its events are processed one by one, so only the culprit is
        marked failed (and answered with an apology). A crash before the commit leaves the whole
        batch pending, to be processed again."""
        try:
            with self.db.session() as session:
                repos = Repos(self.db, session)
                out: list[Delivery] = []
                taken = 0
                skipped: list[str] = []  # chats busy elsewhere: none of their events now
                for inbox_id in ids:
                    # Marked done by the statement that takes it (one round trip), in this
                    # transaction; in chat order across workers (storage.inbox_claims).
                    chat, data = repos.inbox.take(inbox_id, self.clock(), skipped)
                    if data is None:
                        if chat is not None:
                            skipped.append(chat)
                        continue  # already processed, or its chat is being processed elsewhere
                    event = InboundEvent.from_json(data)
                    taken += 1
                    out.extend(self._run(repos, inbox_id, event, mark=False))
                return taken, out
        except Exception as exc:
            if len(ids) == 1:
                log.exception("inbox event %s failed", ids[0])
                return 1, self._fail_alone(ids[0], exc)
            log.warning("a batch of %d events failed; processing them one by one", len(ids))
            results = [self._process_ids([inbox_id]) for inbox_id in ids]
            return sum(n for n, _d in results), [d for _n, ds in results for d in ds]

    def handle(self, event: InboundEvent) -> list[Delivery]:
        """Record and process one event in a single transaction (in-process channels: the
        console, tests). A redelivered event yields nothing."""
        return self.handle_many([event])

    def handle_many(self, events: Iterable[InboundEvent]) -> list[Delivery]:
        """Record and process a batch of events in one transaction; redeliveries are skipped.
        Same failure rule as ``process_many``."""
        batch = self.normalized(events)
        now = self.clock()
        try:
            with self.db.session() as session:
                repos = Repos(self.db, session)
                out: list[Delivery] = []
                for event in batch:
                    inbox_id = repos.inbox.add_event(event.to_json(), now)
                    if inbox_id is not None:
                        out.extend(self._run(repos, inbox_id, event))
                return out
        except Exception as exc:
            if len(batch) == 1:
                log.exception("event %s failed", batch[0].context.event_id)
                self.ingest(batch[0])  # keep a record of what the citizen sent
                inbox_id = self._inbox_id(batch[0])
                return self._fail_alone(inbox_id, exc) if inbox_id is not None else []
            log.warning("a batch of %d events failed; handling them one by one", len(batch))
            return [d for event in batch for d in self.handle_many([event])]

    def _inbox_id(self, event: InboundEvent) -> int | None:
        with self.db.session() as session:
            row = Repos(self.db, session).inbox.by_key(
                event.context.platform, event.context.event_id
            )
            return row.id if row else None

    def _run(
        self, repos: Repos, inbox_id: int, event: InboundEvent, *, mark: bool = True
    ) -> list[Delivery]:
        """Dispatch, store the replies and mark the inbox row done (unless it was taken done
        already), in the caller's unit of work."""
        now = self.clock()
        caps = self.channels.get(event.context.platform, Capabilities())
        replies = self.dispatcher.dispatch(event, repos, now, caps)
        deliveries = self._store_replies(repos, event, inbox_id, replies, now)
        if mark:
            repos.inbox.mark(inbox_id, "done", now)
        return deliveries

    def _store_replies(
        self,
        repos: Repos,
        event: InboundEvent,
        inbox_id: int | None,
        replies: list[OutboundMessage],
        now: datetime,
    ) -> list[Delivery]:
        ids = repos.outbox.add_many(
            [
                {
                    "platform": event.context.platform,
                    "chat_id": message.chat_id,
                    "inbox_id": inbox_id,
                    "message": message.to_json(),
                    "created_at": now,
                }
                for message in replies
            ]
        )
        return [Delivery(i, m) for i, m in zip(ids, replies, strict=True)]

    def _fail_alone(self, inbox_id: int, exc: Exception) -> list[Delivery]:
        with self.db.session() as session:
            repos = Repos(self.db, session)
            row = repos.inbox.claim(inbox_id)
            if row is None:
                return []
            return self._fail(repos, row, InboundEvent.from_json(row.event), exc)

    def _fail(
        self, repos: Repos, row: InboxEvent, event: InboundEvent, exc: Exception
    ) -> list[Delivery]:
        """An unexpected error: the event's effect was rolled back; record the failure and
        apologise, so the event is not retried forever and the citizen is not left waiting."""
        now = self.clock()
        assert row.id is not None
        repos.inbox.mark(row.id, "failed", now, error=f"{type(exc).__name__}: {exc}"[:1000])
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
        return self._store_replies(repos, event, row.id, [sorry], now)

    # ------------------------------------------------------------------ outbox

    def pending_deliveries(self, platform: str, limit: int = 100) -> list[Delivery]:
        with self.db.session() as session:
            rows = Repos(self.db, session).outbox.pending(platform, limit)
            return [Delivery(r.id, OutboundMessage.from_json(r.message)) for r in rows if r.id]

    def mark_sent(self, outbox_id: int, platform_message_id: str | None = None) -> None:
        self.mark_sent_many([(outbox_id, platform_message_id)])

    def mark_sent_many(self, sent: Iterable[tuple[int, str | None]]) -> None:
        with self.db.session() as session:
            Repos(self.db, session).outbox.mark_many(list(sent), "sent", self.clock())

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
