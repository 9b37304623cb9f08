"""Broadcasts: one message to many recipients, stored as one row per recipient.

``BroadcastService`` (inside a unit of work) decides who receives what: news (opening,
extension, announcements) go to subscribers and announcement channels; reminders to subscribers
who still have something to do, within the weekly cap; the results to participants, subscribers
and announcement channels, and with their CSV and JSON files to channels and moderators.

``BroadcastOutbox`` (each call its own transaction, like the engine) is what a sender uses: it
claims pending rows, renders them in the recipient's language, and records every step. A row is
marked ``sending`` in the same transaction that records the previous send, BEFORE its own send:
after a crash only that one row can be in doubt, and it is sent again with the same
idempotency key (``bc-<row>-<part>``: Matrix deduplicates it; on Telegram it is at most that one
message twice).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text
from sqlmodel import select

from bot import notices
from bot.consultation_file import ReminderPolicy
from bot.domain import ConsultationInfo, Phase
from bot.i18n import DEFAULT, SUPPORTED, use_locale
from bot.messages import Attachment, OutboundMessage
from bot.results import ContributionFigures, QuestionInfo, Results, compute_results
from bot.router import Capabilities
from bot.services import Services
from storage.db import Database
from storage.models_moderation import Moderator
from storage.models_scheduler import Broadcast
from storage.repositories import Repos
from storage.repositories_scheduler import DeliveryCounts, Recipient, SchedulerRepo

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
TypedCommand = Callable[[str], str | None]
WEEK = timedelta(days=7)


def moderator_ids(repos: Repos, consultation_id: int, admins: Iterable[str]) -> set[str]:
    """Platform ids ("telegram:42") of the people who moderate a consultation: the
    administrators from the settings and the consultation's own moderators."""
    rows = repos.session.exec(
        select(Moderator.platform, Moderator.platform_user_id).where(
            Moderator.consultation_id == consultation_id
        )
    ).all()
    return set(admins) | {f"{platform}:{user_id}" for platform, user_id in rows}


class BroadcastService:
    def __init__(
        self,
        repos: Repos,
        now: datetime,
        *,
        admins: Iterable[str] = (),
        default: str = DEFAULT,
        opinions: tuple[int, int] | None = None,
    ) -> None:
        self.repos, self.now = repos, now
        # (seed, minimum votes) of the opinion groups published with the results (issue 15).
        self.opinions = opinions
        self.sched = SchedulerRepo(repos.db, repos.session)
        self.admins = frozenset(admins)
        self.default = default

    # ------------------------------------------------------------------ audiences

    def channels(self, info: ConsultationInfo) -> list[Recipient]:
        return [
            Recipient(c.platform, c.chat_id, None, c.locale, "channel", group_chat=True)
            for c in self.sched.channels(info.id)
        ]

    def moderators(self, info: ConsultationInfo) -> list[Recipient]:
        out = []
        for platform_id in sorted(moderator_ids(self.repos, info.id, self.admins)):
            platform, _, user_id = platform_id.partition(":")
            found = self.sched.citizen_address(platform, user_id)
            if found is None:
                log.info("moderator %s has no private chat with the bot yet", platform)
                continue
            citizen_id, chat = found
            citizen = self.repos.citizens.get(citizen_id)
            locale = (citizen.locale if citizen else None) or chat.locale
            out.append(Recipient(chat.platform, chat.chat_id, citizen_id, locale, "channel"))
        return out

    def news_audience(self, info: ConsultationInfo) -> list[Recipient]:
        return [*self.channels(info), *self.sched.subscribers(info.id)]

    # ------------------------------------------------------------------ broadcasts

    def _create(
        self,
        info: ConsultationInfo,
        kind: str,
        payload: dict[str, Any],
        recipients: Iterable[Recipient],
        *,
        action: str | None = None,
        by: int | None = None,
        quiet_hours: str | None = None,
    ) -> Broadcast:
        row = self.sched.add_broadcast(
            Broadcast(
                consultation_id=info.id,
                kind=kind,
                action=action,
                payload=payload,
                quiet_hours=quiet_hours,
                timezone=info.timezone,
                status="sending",
                created_by=by,
                created_at=self.now,
            )
        )
        assert row.id is not None
        row.total = self.sched.add_deliveries(row.id, recipients, self.now)
        if row.total == 0:
            row.status, row.finished_at = "done", self.now
        self.repos.session.add(row)
        log.info("broadcast %s (%s) to %d recipients", row.id, kind, row.total)
        return row

    def opening(self, info: ConsultationInfo, *, action: str | None = None) -> int:
        row = self._create(info, "opening", {}, self.news_audience(info), action=action)
        assert row.id is not None
        return row.id

    def extension(self, info: ConsultationInfo, *, by: int | None = None) -> int:
        payload = {"closes_at": info.closes_at.isoformat()}
        row = self._create(info, "extension", payload, self.news_audience(info), by=by)
        assert row.id is not None
        return row.id

    def announcement(
        self,
        info: ConsultationInfo,
        texts: dict[str, str],
        *,
        default: str | None = None,
        action: str | None = None,
        by: int | None = None,
    ) -> int:
        payload = {"texts": texts, "default": default or next(iter(texts), self.default)}
        row = self._create(
            info, "announcement", payload, self.news_audience(info), action=action, by=by
        )
        assert row.id is not None
        return row.id

    def reminder_recipients(
        self, info: ConsultationInfo, policy: ReminderPolicy
    ) -> list[Recipient]:
        """Subscribers who still have something to do (a question to answer, ideas they have
        not seen), under the weekly cap, each with what their reminder says."""
        received = self.sched.reminders_received(self.now - WEEK)
        answered = self.sched.answered(info.id)
        supports = self.sched.supports_received(info.id)
        published, by_author = self.sched.published_count_by_author(info.id)
        seen = self.sched.seen_or_supported(info.id)
        positions = {qid: n for n, qid in enumerate(info.question_ids, 1)}
        total = len(info.question_ids)
        out = []
        for r in self.sched.subscribers(info.id):
            cid = r.citizen_id
            assert cid is not None
            if received.get(cid, 0) >= policy.max_per_week:
                continue
            done = sorted(positions[q] for q in answered.get(cid, ()) if q in positions)
            unseen = max(0, published - by_author.get(cid, 0) - seen.get(cid, 0))
            if len(done) >= total and unseen == 0:
                continue  # nothing left to do
            params = {
                "answered": done,
                "questions": total,
                "unseen": unseen,
                "supports": supports.get(cid, 0),
            }
            out.append(replace(r, params=params))
        return out

    def reminders(
        self,
        info: ConsultationInfo,
        policy: ReminderPolicy,
        *,
        action: str | None = None,
        by: int | None = None,
    ) -> int | None:
        recipients = self.reminder_recipients(info, policy)
        if not recipients:
            return None
        payload = {"closes_at": info.closes_at.isoformat(), "created_at": self.now.isoformat()}
        row = self._create(
            info,
            "reminder",
            payload,
            recipients,
            action=action,
            by=by,
            quiet_hours=policy.quiet_hours,
        )
        assert row.id is not None
        return row.id

    # ------------------------------------------------------------------ results

    def compute_results(self, info: ConsultationInfo) -> Results:
        """The results from the database. Once the consultation is closed its figures no longer
        change: the participants (the costly query: distinct over every support) are then
        read in a thread on a connection of their own, while this one reads the rest."""
        content = info.document.localized(info.document.language)
        questions = [QuestionInfo(n, q.key, q.text) for n, q in enumerate(content.questions, 1)]
        # Questions a re-import archived keep their ranked ideas, after the file's.
        questions += [
            QuestionInfo(n, a.key, a.text(info.document.language))
            for n, a in enumerate(info.archived, len(questions) + 1)
        ]
        if info.phase(self.now) in (Phase.CLOSED, Phase.ARCHIVED):
            with ThreadPoolExecutor(1, thread_name_prefix="parlons-results") as pool:
                apart = pool.submit(self.sched.participant_pseudonyms_apart, info.id)
                rows = self.sched.contribution_figures(info.id)
                visitors = self.sched.visitors(info.id)
                participants = apart.result()
        else:
            rows = self.sched.contribution_figures(info.id)
            visitors = self.sched.visitors(info.id)
            participants = self.sched.participant_pseudonyms(info.id)
        return compute_results(
            slug=info.slug,
            title=content.title,
            timezone=info.timezone,
            opens_at=info.opens_at,
            closes_at=info.closes_at,
            now=self.now,
            questions=questions,
            contributions=[ContributionFigures(*row) for row in rows],
            participants=participants,
            visitors=visitors,
        )

    def results(self, info: ConsultationInfo, *, action: str | None = None) -> int:
        results = self.compute_results(info)
        channels = [*self.channels(info), *self.moderators(info)]
        citizens = [*self.sched.participants(info.id), *self.sched.subscribers(info.id)]
        payload: dict[str, Any] = {"results": results.to_json_data(top=notices.RESULTS_TOP)}
        groups_png: dict[str, bytes] = {}
        if self.opinions is not None:
            # The opinion groups of the final votes, with a text and a chart (bot.answers).
            from bot.answers import closing_groups, groups_chart, idea_texts

            groups = closing_groups(self.repos, info, *self.opinions, self.now)
            if groups.groups:
                texts = idea_texts(self.repos, groups)
                payload["groups"] = groups.to_json_data()
                payload["group_texts"] = {str(k): v for k, v in texts.items()}
                for locale in SUPPORTED:
                    with use_locale(locale):
                        title = info.content(locale).title
                        groups_png[locale] = groups_chart(groups, texts, title)
        row = self._create(
            info,
            "results",
            payload,
            [*channels, *citizens],
            action=action,
        )
        assert row.id is not None
        for locale in SUPPORTED:
            with use_locale(locale):
                png = notices.chart_png(info, results, locale)
            self.sched.add_file(row.id, f"chart-{locale}.png", "image/png", png)
        for locale, png in groups_png.items():
            self.sched.add_file(row.id, f"groups-{locale}.png", "image/png", png)
        self.sched.add_file(
            row.id, f"results-{info.slug}.csv", "text/csv", results.to_csv().encode("utf-8")
        )
        self.sched.add_file(
            row.id,
            f"results-{info.slug}.json",
            "application/json",
            results.to_json().encode("utf-8"),
        )
        return row.id


# --------------------------------------------------------------------------- the outbox


@dataclass(frozen=True, slots=True)
class SendItem:
    delivery_id: int
    broadcast_id: int
    kind: str
    chat_id: str
    group_chat: bool
    citizen_id: int | None
    parts: tuple[OutboundMessage, ...]
    parts_sent: int
    attempts: int

    def key(self, part: int) -> str:
        return f"bc-{self.delivery_id}-{part}"


@dataclass(frozen=True, slots=True)
class Progress:
    id: int
    kind: str
    consultation: str | None
    created_at: datetime
    status: str
    counts: DeliveryCounts

    @property
    def ratio(self) -> float:
        total = self.counts.total
        return 1.0 if total == 0 else (self.counts.sent + self.counts.failed) / total


def held(broadcast: Broadcast, now: datetime) -> bool:
    """A reminder waits while its consultation's quiet hours last."""
    from bot.schedule import QuietHours

    quiet = QuietHours.parse(broadcast.quiet_hours)
    if quiet is None or broadcast.timezone is None:
        return False
    return quiet.contains(now, ZoneInfo(broadcast.timezone))


_FINISH = text(
    "UPDATE broadcast_delivery SET status = :status, parts_sent = :parts, error = NULL, "
    "updated_at = :now WHERE id = :id"
)
_START = text(
    "UPDATE broadcast_delivery SET status = 'sending', attempts = attempts + 1, "
    "updated_at = :now WHERE id = :id AND status = 'pending' AND parts_sent = :part"
)


class BroadcastOutbox:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        typed_command: TypedCommand | None = None,
        max_attempts: int = 8,
        durable_interval: float = 0.05,
    ) -> None:
        self.db, self.clock = db, clock
        self.typed_command = typed_command
        self.max_attempts = max_attempts
        self.durable_interval = durable_interval
        self._synced_at: dict[str, float] = {}
        self._rendered: dict[tuple[Any, ...], tuple[OutboundMessage, ...]] = {}
        self._files: dict[int, dict[str, Attachment]] = {}
        self._infos: dict[tuple[Any, ...], ConsultationInfo] = {}
        # One connection per sending lane (each lane makes one call at a time).
        self._lanes: dict[str, Connection] = {}

    # ------------------------------------------------------------------ claiming

    def recover(self, platform: str) -> int:
        with self.db.session() as session:
            n = SchedulerRepo(self.db, session).recover(platform, self.clock())
        if n:
            log.warning(
                "%d %s broadcast message(s) were in flight at a crash: resending", n, platform
            )
        return n

    def claim(
        self, platform: str, caps: Capabilities, limit: int = 200, after_id: int = 0
    ) -> list[SendItem]:
        """Pending rows of active, not held broadcasts, rendered, in id order."""
        now = self.clock()
        with self.db.session() as session:
            repos = Repos(self.db, session)
            sched = SchedulerRepo(self.db, session)
            active = {b.id: b for b in sched.active_broadcasts() if not held(b, now)}
            ids = [i for i in active if i is not None]
            rows = sched.pending_deliveries(platform, ids, limit, after_id)
            items = []
            for d in rows:
                assert d.id is not None
                broadcast = active[d.broadcast_id]
                parts = self._render(
                    repos, sched, broadcast, d.locale, d.audience, d.params, caps, now
                )
                if d.parts_sent >= len(parts):  # nothing left (the message has fewer parts)
                    sched.finish_part(d.id, max(0, d.parts_sent - 1), True, now)
                    continue
                items.append(
                    SendItem(
                        d.id,
                        d.broadcast_id,
                        broadcast.kind,
                        d.chat_id,
                        d.group_chat,
                        d.citizen_id,
                        parts,
                        d.parts_sent,
                        d.attempts,
                    )
                )
            return items

    def _info(self, repos: Repos, consultation_id: int) -> ConsultationInfo:
        row = repos.consultations.get(consultation_id)
        assert row is not None
        key = (consultation_id, row.updated_at, row.opens_at, row.closes_at, row.status)
        info = self._infos.get(key)
        if info is None:
            if len(self._infos) > 64:
                self._infos.clear()
            info = self._infos[key] = Services(repos, self.clock()).consultations.info(row)
        return info

    def _render(
        self,
        repos: Repos,
        sched: SchedulerRepo,
        broadcast: Broadcast,
        locale: str,
        audience: str,
        params: dict[str, Any] | None,
        caps: Capabilities,
        now: datetime,
    ) -> tuple[OutboundMessage, ...]:
        assert broadcast.id is not None and broadcast.consultation_id is not None
        info = self._info(repos, broadcast.consultation_id)
        personal = broadcast.kind == "reminder"
        key = (broadcast.id, locale, audience, caps.buttons, info.closes_at, info.status)
        if not personal and key in self._rendered:
            return self._rendered[key]
        typed = self.typed_command
        with use_locale(locale if locale in SUPPORTED else DEFAULT):
            if broadcast.kind == "opening":
                parts = notices.opening(info, locale, audience, now, caps, typed)
            elif broadcast.kind == "extension":
                parts = notices.extension(info, locale, audience, now, caps, typed)
            elif broadcast.kind == "announcement":
                parts = notices.announcement(
                    info, broadcast.payload, locale, audience, now, caps, typed
                )
            elif broadcast.kind == "reminder":
                parts = notices.reminder(
                    info, broadcast.payload, params or {}, locale, now, caps, typed
                )
            elif broadcast.kind == "results":
                results = Results.from_json_data(broadcast.payload["results"])
                files = self._load_files(sched, broadcast.id)
                parts = notices.results(
                    info, results, files, locale, audience, now, caps, typed
                )
                # The opinion groups, when there are (bot.answers, issue 15).
                from bot.answers import groups_parts

                parts = [*parts, *groups_parts(info, broadcast.payload, files, locale)]
            elif broadcast.kind == "answer":
                # An idea's official answer, to its supporters (bot.answers, issue 15).
                from bot.answers import answer_notice

                parts = [answer_notice(info, broadcast.payload, author=False)]
            else:
                raise ValueError(f"unknown broadcast kind {broadcast.kind!r}")
        rendered = tuple(parts)
        if not personal:
            if len(self._rendered) > 256:
                self._rendered.clear()
            self._rendered[key] = rendered
        return rendered

    def _load_files(self, sched: SchedulerRepo, broadcast_id: int) -> dict[str, Attachment]:
        files = self._files.get(broadcast_id)
        if files is None:
            if len(self._files) > 8:
                self._files.clear()
            files = self._files[broadcast_id] = {
                f.name: Attachment(f.name, f.mime_type, bytes(f.data))
                for f in sched.files(broadcast_id)
            }
        return files

    # ------------------------------------------------------------------ recording steps

    def step(
        self,
        done: tuple[int, int, bool] | None = None,
        start: tuple[int, int] | None = None,
        *,
        lane: str = "",
    ) -> bool:
        """Record a finished part (delivery id, part, was it the last) and claim the next one
        (delivery id, part) → sending, in one transaction. False if that next row was taken by
        another sender or changed meanwhile.

        The hot path of a broadcast (one commit per message): two prepared statements on a
        connection kept by the lane. Every commit survives a crash of the process (SQLite WAL,
        PostgreSQL); it is also forced to disk (fsync) at least every ``durable_interval``
        seconds, so a power cut can only make the messages of that last interval go twice,
        while the lane is not limited to one fsync per message."""
        now = self.clock()
        conn = self._lanes.get(lane)
        if conn is None:
            conn = self._lanes[lane] = self.db.engine.connect()
        tick = time.monotonic()
        durable = tick - self._synced_at.get(lane, 0.0) >= self.durable_interval
        try:
            if self.db.is_sqlite:
                # Outside a transaction (pysqlite runs in autocommit mode here).
                conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL"
                )
            with conn.begin():
                if not self.db.is_sqlite:
                    conn.exec_driver_sql(
                        "SET LOCAL synchronous_commit TO " + ("on" if durable else "off")
                    )
                if done is not None:
                    conn.execute(
                        _FINISH,
                        {"status": "sent" if done[2] else "pending", "parts": done[1] + 1,
                         "now": now, "id": done[0]},
                    )  # fmt: skip
                claimed = True
                if start is not None:
                    result = conn.execute(_START, {"now": now, "id": start[0], "part": start[1]})
                    claimed = bool(result.rowcount)
            if durable:
                self._synced_at[lane] = tick
            return claimed
        except Exception:
            self._lanes.pop(lane, None)
            with contextlib.suppress(Exception):
                conn.close()
            raise

    def close(self) -> None:
        for conn in self._lanes.values():
            with contextlib.suppress(Exception):
                conn.close()
        self._lanes.clear()

    def retry_later(self, item: SendItem, error: str) -> None:
        """A temporary failure: back to pending, or failed after too many attempts."""
        status = "failed" if item.attempts + 1 >= self.max_attempts else "pending"
        with self.db.session() as session:
            SchedulerRepo(self.db, session).set_delivery(
                item.delivery_id, status, error, self.clock()
            )

    def failed(self, item: SendItem, error: str) -> None:
        with self.db.session() as session:
            SchedulerRepo(self.db, session).set_delivery(
                item.delivery_id, "failed", error, self.clock()
            )

    def unreachable(self, platform: str, item: SendItem, error: str) -> int:
        """The recipient blocked the bot (or removed it from the group): this row fails, every
        other pending row for that chat is skipped, and they get no more broadcasts."""
        now = self.clock()
        with self.db.session() as session:
            repos = Repos(self.db, session)
            sched = SchedulerRepo(self.db, session)
            sched.set_delivery(item.delivery_id, "failed", f"unreachable: {error}", now)
            skipped = sched.skip_chat(platform, item.chat_id, "unreachable", now)
            if item.group_chat:
                sched.remove_channel(platform, item.chat_id, None)
            elif item.citizen_id is not None:
                citizen = repos.citizens.get(item.citizen_id)
                if citizen is not None and citizen.reachable:
                    citizen.reachable = False
                    session.add(citizen)
            return skipped

    def finish_broadcasts(self) -> list[int]:
        """Mark broadcasts with nothing left to send as done."""
        now = self.clock()
        with self.db.session() as session:
            sched = SchedulerRepo(self.db, session)
            active = list(sched.active_broadcasts())
            counts = sched.counts([b.id for b in active if b.id is not None])
            finished = []
            for b in active:
                assert b.id is not None
                c = counts.get(b.id)
                if c is not None and c.done:
                    b.status, b.finished_at = "done", now
                    session.add(b)
                    finished.append(b.id)
            return finished


def broadcast_progress(
    repos: Repos, limit: int = 10, consultation_id: int | None = None
) -> list[Progress]:
    sched = SchedulerRepo(repos.db, repos.session)
    rows = list(sched.recent_broadcasts(limit, consultation_id))
    counts = sched.counts([b.id for b in rows if b.id is not None])
    slugs = {c.id: c.slug for c in repos.consultations.all()}
    out = []
    for b in rows:
        assert b.id is not None
        out.append(
            Progress(
                b.id,
                b.kind,
                slugs.get(b.consultation_id) if b.consultation_id else None,
                b.created_at,
                b.status,
                counts.get(b.id, DeliveryCounts(b.id, 0, 0, 0, 0)),
            )
        )
    return out


def progress_bar(ratio: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, ratio)) * width)
    return "█" * filled + "░" * (width - filled)


# --------------------------------------------------------------------------- citizens' rights


def personal_data(repos: Repos, citizen_id: int) -> dict[str, Any]:
    """What the scheduler keeps about a citizen, for their data export (/mydata)."""
    from sqlalchemy import func, select
    from sqlmodel import col

    from storage.models_scheduler import BroadcastDelivery, PrivateChat, Subscription

    s = repos.session
    chat = s.get(PrivateChat, citizen_id)
    subscriptions = s.execute(
        select(
            col(Subscription.consultation_id), col(Subscription.news), col(Subscription.updated_at)
        ).where(col(Subscription.citizen_id) == citizen_id)
    ).all()
    received = s.execute(
        select(col(Broadcast.kind), func.count())
        .join(BroadcastDelivery, col(BroadcastDelivery.broadcast_id) == col(Broadcast.id))
        .where(col(BroadcastDelivery.citizen_id) == citizen_id)
        .group_by(col(Broadcast.kind))
    ).all()
    return {
        "private_chat": (
            {"platform": chat.platform, "chat_id": chat.chat_id, "language": chat.locale}
            if chat
            else None
        ),
        "news": [
            {"consultation_id": c, "news": bool(n), "chosen_at": at.isoformat()}
            for c, n, at in subscriptions
        ],
        "messages_received": {kind: int(n) for kind, n in received},
    }


def forget(repos: Repos, citizen_id: int) -> None:
    """Erase what the scheduler keeps about a citizen (/forget): their private chat, their news
    choices, and their address in past broadcasts (whose counts stay); nothing more is sent to
    them."""
    from sqlalchemy import String, cast, delete, literal, update
    from sqlmodel import col

    from storage.models_scheduler import BroadcastDelivery, PrivateChat, Subscription

    s = repos.session
    s.execute(delete(PrivateChat).where(col(PrivateChat.citizen_id) == citizen_id))
    s.execute(delete(Subscription).where(col(Subscription.citizen_id) == citizen_id))
    mine = col(BroadcastDelivery.citizen_id) == citizen_id
    s.execute(
        update(BroadcastDelivery)
        .where(mine, col(BroadcastDelivery.status).in_(("pending", "sending")))
        .values(status="skipped", error="forgotten")
    )
    s.execute(
        update(BroadcastDelivery)
        .where(mine)
        .values(
            citizen_id=None,
            params=None,
            chat_id=literal("forgotten-") + cast(col(BroadcastDelivery.id), String),
        )
    )
