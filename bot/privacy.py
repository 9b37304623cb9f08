"""Citizens' rights: the privacy notice and its acceptance, "download my data" and "forget me".

The erasure rule (docs/moderation.md, "Privacy and erasure"):

- Personal data is erased: the platform id, the display name and the language of the citizen
  row; their dialogue state; what they were sent and what they sent (inbox and outbox rows are
  redacted); their privacy consents, flood counters, "seen" marks, and every other row that
  exists only for them (a private chat address, a subscription, broadcast deliveries...);
  their moderator roles; their name in the audit log.
- Authorship is replaced by a tombstone: the citizen row stays, with a new random pseudonym
  ("erased-…") and no identity. Their contributions, supports, comments, reports and visits
  stay attached to it, unchanged: contributions and comments were published to a public
  consultation, and keeping them (anonymous) keeps every statistic exactly as it was.
  A citizen who wants a text gone withdraws it (``/mine``) before ``/forget``.
- The erasure is logged by a one-way id only (HMAC-SHA256 of ``platform:user_id`` with the
  privacy secret), in the database and in an append-only file outside it, so that after a
  restore from a backup ``parlons privacy reapply`` erases again whoever had asked.

Bans are the one deliberate exception: a ban is keyed by the same one-way id, so erasing
oneself does not lift a ban.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.messages import ChatType, EventContext, InboundEvent, Unsupported
from bot.settings import Settings
from storage.db import Database
from storage.models import Citizen, Dialogue, InboxEvent
from storage.models_moderation import Erasure
from storage.repositories import Repos
from storage.repositories_privacy import InboxRow, PrivacyRepo

# Bump when the notice's text changes in substance: everyone is asked to accept it again.
NOTICE_VERSION = "1"

ERASED_PREFIX = "erased-"
# The ``kind`` column of a redacted inbox row (its event is an ``Unsupported("erased")``).
ERASED_KIND = "erased"
# Rows per statement and per transaction in erasure, expiry and retention.
BATCH = 200
# Outbox statuses of messages that will not be sent (again).
FINISHED_OUTBOX = ("sent", "failed", "dead")

# Tables whose rows keep pointing at the tombstone after an erasure (the erasure rule). Every
# other table with a ``citizen_id`` column holds rows that exist only for that citizen, and
# they are deleted; so are rows of tables with ``platform`` and ``chat_id`` columns that address
# the citizen's private chats.
KEPT_FOR_STATISTICS = frozenset(
    # stat_participant: the statistics counters' per-participant weights (storage.counters):
    # a tombstone stays a participant, so the figures do not move.
    {"contribution", "support", "comment", "visit", "report", "ban", "stat_participant"}
)
# Handled explicitly below.
EXPLICIT = frozenset(
    {"citizen", "dialogue", "inboxevent", "outboxmessage", "moderator", "erasure", "audit_entry"}
)


# --------------------------------------------------------------------------- one-way ids


def privacy_secret(settings: Settings) -> bytes:
    """The secret of one-way ids: from the settings, else generated once in privacy_dir."""
    if settings.privacy_secret is not None:
        return settings.privacy_secret.get_secret_value().encode("utf-8")
    path = Path(settings.privacy_dir) / "secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker created it first: use theirs
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
                fh.flush()
                os.fsync(fh.fileno())
    value = path.read_text(encoding="ascii").strip()
    if not value:
        raise RuntimeError(f"{path} is empty: set PARLONS_PRIVACY_SECRET or remove the file")
    return value.encode("ascii")


def one_way_id(secret: bytes, platform: str, user_id: str) -> str:
    """HMAC-SHA256 of ``platform:user_id``: recognises a person again without storing who."""
    return hmac.new(secret, f"{platform}:{user_id}".encode(), hashlib.sha256).hexdigest()


def erasure_log_path(settings: Settings) -> Path:
    return Path(settings.privacy_dir) / "erasures.log"


def read_erasure_log(path: Path) -> list[str]:
    if not path.exists():
        return []
    keys = []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[1]) == 64:
            keys.append(parts[1])
    return keys


def _append_log(path: Path, when: datetime, *keys: str) -> None:
    if not keys:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, "".join(f"{when.isoformat()} {key}\n" for key in keys).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- helpers


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def _like_needle(value: str, *, ascii: bool = True) -> str:
    """``value`` as a JSON string inside a stored JSON document (with ASCII escapes, as
    ``json.dumps`` writes it, or without), escaped for LIKE ... ESCAPE '!'."""
    encoded = json.dumps(value, ensure_ascii=ascii)
    return encoded.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def redacted_event(platform: str, event_key: str) -> dict[str, Any]:
    """A valid event that says nothing (readers of old inbox rows keep working)."""
    return InboundEvent(
        EventContext(platform=platform, chat_id="", user_id="", event_id=event_key),
        Unsupported("erased"),
    ).to_json()


@dataclass(frozen=True, slots=True)
class ErasureReport:
    subject_key: str
    inbox_redacted: int
    outbox_removed: int
    rows_deleted: int


class PrivacyService:
    def __init__(self, repos: Repos, now: datetime, settings: Settings) -> None:
        self.repos, self.now, self.settings = repos, now, settings
        self.store = PrivacyRepo(repos.db, repos.session)

    # ------------------------------------------------------------------ notice

    def has_accepted(self, citizen: Citizen) -> bool:
        return self.accepted_at(citizen) is not None

    def accept(self, citizen: Citizen) -> bool:
        """Record the acceptance of the current notice; False if it was already recorded."""
        return self.store.accept(citizen.id, NOTICE_VERSION, self.now)

    def accepted_at(self, citizen: Citizen) -> datetime | None:
        return self.store.consent_of(citizen.id, NOTICE_VERSION)

    # ------------------------------------------------------------------ my data

    def my_data(self, citizen: Citizen) -> dict[str, Any]:
        """Everything stored about this citizen, as JSON-ready data."""
        cid = citizen.id
        slugs = {c.id: c.slug for c in self.repos.consultations.all()}
        store = self.store

        def rows(kind: str) -> list[Any]:
            return store.owned(kind, cid)

        platform_id = citizen.platform_user_id
        data: dict[str, Any] = {
            "format": "parlons-mydata/1",
            "generated_at": self.now.isoformat(),
            "privacy_notice_version": NOTICE_VERSION,
            "citizen": {
                "platform": citizen.platform,
                "platform_user_id": platform_id,
                "display_name": citizen.display_name,
                "locale": citizen.locale,
                "pseudonym": citizen.pseudonym,
                "reachable": citizen.reachable,
                "created_at": citizen.created_at.isoformat(),
                "last_seen_at": citizen.last_seen_at.isoformat(),
            },
            "privacy_consents": [
                {"version": r.version, "accepted_at": r.accepted_at.isoformat()}
                for r in rows("privacy_consents")
            ],
            "contributions": [
                {
                    "id": r.id,
                    "consultation": slugs.get(r.consultation_id),
                    "question_id": r.question_id,
                    "text": r.text,
                    "status": r.status,
                    "created_at": r.created_at.isoformat(),
                    "updated_at": r.updated_at.isoformat(),
                }
                for r in rows("contributions")
            ],
            "supports": [
                {"contribution_id": r.contribution_id, "created_at": r.created_at.isoformat()}
                for r in rows("supports")
            ],
            "comments": [
                {
                    "id": r.id,
                    "contribution_id": r.contribution_id,
                    "text": r.text,
                    "status": r.status,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows("comments")
            ],
            "reports": [
                {
                    "target": f"{r.target_type}:{r.target_id}",
                    "reason": r.reason,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows("reports")
            ],
            "visits": [
                {
                    "consultation": slugs.get(r.consultation_id),
                    "source": r.source,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows("visits")
            ],
            "bans": [
                {
                    "consultation": slugs.get(r.consultation_id),
                    "reason": r.reason,
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows("bans")
            ],
            "dialogues": [],
            "moderator_of": [],
            "other": {},
        }
        if platform_id is not None:
            data["dialogues"] = [
                {
                    "chat_id": r.chat_id,
                    "state": r.state,
                    "data": r.data,
                    "updated_at": r.updated_at.isoformat(),
                }
                for r in store.dialogues_of(citizen.platform, platform_id)
            ]
            data["moderator_of"] = [
                {"consultation": slugs.get(r.consultation_id), "since": r.created_at.isoformat()}
                for r in store.moderator_roles_of(citizen.platform, platform_id)
            ]
        # Rows of other features that exist for this citizen (subscriptions, private chat...).
        skip = KEPT_FOR_STATISTICS | EXPLICIT | {"privacy_consent", "seen", "flood_window"}
        for name, found in store.other_rows_of(cid, skip):
            items = [{k: _jsonable(v) for k, v in m.items()} for m in found]
            if items:
                data["other"][name] = items
        return data

    # ------------------------------------------------------------------ erasure

    def subject_key(self, platform: str, user_id: str) -> str:
        return one_way_id(privacy_secret(self.settings), platform, user_id)

    def private_chats(self, citizen: Citizen, extra: Iterable[str] = ()) -> set[str]:
        """The chats that are the citizen's private chat with the bot."""
        assert citizen.platform_user_id is not None
        chats = {citizen.platform_user_id, *extra}
        chats.update(self.store.private_chat_ids(citizen.id))
        chats.update(
            self.store.inbox_chats_of(
                citizen.platform, citizen.platform_user_id, str(ChatType.PRIVATE)
            )
        )
        return {c for c in chats if c}

    def erase(
        self,
        citizen: Citizen,
        *,
        current_inbox_id: int | None = None,
        current_dialogue: Dialogue | None = None,
        current_chat: str | None = None,
        log: list[str] | None = None,
    ) -> ErasureReport | None:
        """Apply the erasure rule to one citizen (see the module's docstring). The event being
        handled (``current_*``) is redacted now and its reply purged by a later ``sweep``.
        With ``log``, the one-way id is appended to it instead of the erasure log file (the
        caller writes the whole batch with one fsync, before its commit)."""
        platform, user_id = citizen.platform, citizen.platform_user_id
        if user_id is None:
            return None  # already erased
        assert citizen.id is not None
        key = self.subject_key(platform, user_id)
        chats = self.private_chats(citizen, [current_chat] if current_chat else [])
        needles = [
            _like_needle(user_id),  # a JSON string equal to the platform id
            _like_needle(f"{platform}:{user_id}")[1:-1],  # "platform:id" inside any text
            citizen.pseudonym,
        ]
        if citizen.display_name and len(citizen.display_name.strip()) >= 3:
            needles.append(_like_needle(citizen.display_name))
            needles.append(_like_needle(citizen.display_name, ascii=False))
        needles = list(dict.fromkeys(needles))

        # 1. What they sent (every event of theirs, processed or not, found by its indexed
        # sender and chat columns), and what names them (an administrator's "/mod add
        # telegram:123": commands, once processed; a failure's error text).
        secret = privacy_secret(self.settings)
        store = self.store
        ids = {user_id, *chats}
        inbox_redacted = self._redact_inbox(
            lambda: store.inbox_of(platform, user_id, chats, skip_kind=ERASED_KIND, limit=BATCH),
            secret,
            ids,
            own=True,
        )
        inbox_redacted += self._redact_inbox(
            lambda: store.commands_naming(needles, skip_kind=ERASED_KIND, limit=BATCH),
            secret,
            ids,
            own=False,
        )
        store.clear_errors_naming(needles)
        if current_inbox_id is not None:
            row = store.inbox_row(current_inbox_id)
            if row is not None:
                self._redact_row(row, secret, ids)

        # 2. What they were sent: outbox rows to their private chats are deleted (found by the
        # indexed chat column); sent rows that name them elsewhere (a moderators' chat, an
        # admin's /audit) are redacted.
        removed = 0
        while True:
            out_ids = store.outbox_ids_to(platform, chats, BATCH)
            if not out_ids:
                break
            removed += len(out_ids)
            store.delete_outbox(out_ids)
        for out_id, message in store.outbox_naming(needles):
            store.set_outbox(out_id, message=_redacted_message(message), error=None)

        # 3. Their dialogue state. The row in use by this very event is emptied now (the
        # dispatcher saves it after the handler) and deleted by the next sweep.
        keep_id = current_dialogue.id if current_dialogue is not None else None
        deleted = store.delete_dialogues_of(platform, user_id, chats, keep_id=keep_id)
        if current_dialogue is not None:
            current_dialogue.state = "idle"
            current_dialogue.data = {}
            store.save(current_dialogue)

        # 4. Rows that exist only for them, in every feature's tables.
        deleted += store.delete_rows_for(
            citizen.id, platform, chats, KEPT_FOR_STATISTICS | EXPLICIT
        )
        deleted += store.delete_moderator_roles(platform, user_id)

        # 5. Their name in the audit log.
        store.scrub_audit(key, needles[1], citizen.pseudonym, "[erased]")

        # 6. The tombstone.
        citizen.platform_user_id = None
        citizen.display_name = None
        citizen.locale = None
        citizen.reachable = False
        citizen.pseudonym = ERASED_PREFIX + secrets.token_hex(8)
        store.save(citizen)

        # 7. The log, by one-way id only.
        residue: dict[str, Any] = {}
        if current_inbox_id is not None:
            residue["inbox_id"] = current_inbox_id
        if keep_id is not None:
            residue["dialogue_ids"] = [keep_id]
        erasure = store.erasure(key)
        if erasure is None:
            erasure = Erasure(subject_key=key, erased_at=self.now)
        erasure.erased_at = self.now
        erasure.residue = residue or None
        erasure.residue_pending = bool(residue)
        store.save(erasure)
        store.flush()
        if log is None:
            _append_log(erasure_log_path(self.settings), self.now, key)
        else:
            log.append(key)
        return ErasureReport(key, inbox_redacted, removed, deleted)

    def _redact_inbox(
        self, batch: Callable[[], list[InboxRow]], secret: bytes, ids: set[str], *, own: bool
    ) -> int:
        """Redact the inbox rows ``batch`` finds, by batches of ``BATCH`` ids (a row already
        redacted no longer matches: its sender, chat and text are gone)."""
        count = 0
        while True:
            rows = batch()
            for inbox_id, row_platform, event_key, status, sender in rows:
                self.store.set_inbox(
                    inbox_id,
                    _redacted_values(
                        secret, row_platform, event_key, status, None if own else sender, ids
                    ),
                )
            count += len(rows)
            if len(rows) < BATCH:
                return count

    def _redact_row(self, row: InboxEvent, secret: bytes, ids: set[str]) -> None:
        for name, value in _redacted_values(
            secret, row.platform, row.event_key, row.status, None, ids
        ).items():
            if name != "status":  # the event being handled is marked done by the engine
                setattr(row, name, value)
        self.store.save(row)

    def sweep(self, *, keep_dialogue_id: int | None = None) -> int:
        """Purge what erasures left behind: the farewell reply once it has been delivered, and
        the dialogue row the /forget event was using. Returns how many erasures still wait
        (their farewell is not delivered yet)."""
        waiting = 0
        for erasure in self.store.erasures_with_residue(20):
            residue = dict(erasure.residue or {})
            inbox_id = residue.get("inbox_id")
            if inbox_id is not None:
                waiting = self.store.purge_replies(inbox_id)
                if not waiting:
                    residue.pop("inbox_id")
            dialogue_ids = [d for d in residue.get("dialogue_ids", []) if d != keep_dialogue_id]
            if dialogue_ids:
                self.store.delete_dialogues(dialogue_ids)
            residue.pop("dialogue_ids", None)
            erasure.residue = residue or None
            erasure.residue_pending = bool(residue)
            self.store.save(erasure)
            waiting += bool(residue)
        return waiting

    def reapply(self, keys: Iterable[str]) -> int:
        """After a restore: erase again every citizen whose one-way id is in ``keys`` (the
        erasure log). Returns how many citizens were erased."""
        wanted = set(keys)
        secret = privacy_secret(self.settings)
        count = 0
        for citizen in self.store.identified_citizens():
            assert citizen.platform_user_id is not None
            if one_way_id(secret, citizen.platform, citizen.platform_user_id) in wanted:
                self.erase(citizen)
                count += 1
        known = self.store.erasure_keys()
        for key in sorted(wanted - known):
            self.store.save(Erasure(subject_key=key, erased_at=self.now))
        return count

    def expire(self, months: int, limit: int | None = None) -> int:
        """Erase the citizens who have not written for ``months`` months (at most ``limit`` of
        them, oldest first, when given: the scheduler commits such batches one by one)."""
        since = self.now - timedelta(days=30 * months)
        stale = self.store.silent_since(since, limit)
        keys: list[str] = []
        for citizen in stale:
            self.erase(citizen, log=keys)
        self.store.flush()
        _append_log(erasure_log_path(self.settings), self.now, *keys)
        return len(stale)

    def prune(self, days: int, limit: int) -> int:
        """Delete at most ``limit`` handled inbox rows and ``limit`` sent or dead outbox rows
        older than ``days`` days, and empty at most ``limit`` old outbox rows kept for their
        subject; returns how many rows were deleted or emptied. Kept: pending rows, reactions
        (a Matrix redaction of a reaction is resolved through its inbox row) and outbox rows
        with a subject (replies and reactions to an idea card map through them), emptied."""
        before = self.now - timedelta(days=days)
        store = self.store
        inbox = store.old_inbox_ids(before, ("done", "failed"), "reaction", limit)
        if inbox:
            store.delete_inbox(inbox)
        outbox = store.old_outbox_ids(before, FINISHED_OUTBOX, limit)
        if outbox:
            store.delete_outbox(outbox)
        # The rows kept for their subject lose their content (the subject stays): an old idea
        # card needs no text, and erasure need not search it for a name.
        kept = store.old_outbox_with_subject(before, FINISHED_OUTBOX, limit)
        for out_id, message in kept:
            store.set_outbox(
                out_id, message=_redacted_message(message), error=None, trimmed_at=self.now
            )
        return len(inbox) + len(outbox) + len(kept)


@dataclass(slots=True)
class HousekeepingReport:
    erased: int = 0
    pruned: int = 0
    finished: bool = False


class Housekeeping:
    """The privacy promises kept over time, in small committed batches (each step is one short
    transaction, so the events of other citizens are processed in between, and a stop between
    two steps leaves a consistent state that the next round finishes): erase citizens silent
    past ``privacy_retention_months``, prune handled inbox/outbox rows older than
    ``privacy_message_retention_days``, purge what erasures left behind."""

    def __init__(self, db: Database, clock: Callable[[], datetime], settings: Settings) -> None:
        self.db, self.clock, self.settings = db, clock, settings

    def _service(self, session: Any) -> PrivacyService:
        return PrivacyService(Repos(self.db, session), self.clock(), self.settings)

    def expire_step(self, months: int | None = None) -> int:
        """Erase one batch of silent citizens (one transaction); how many were erased.
        ``months``: the inactivity period (default: ``privacy_retention_months``)."""
        with self.db.session() as session:
            return self._service(session).expire(
                months or self.settings.privacy_retention_months,
                self.settings.privacy_expiry_batch,
            )

    def expire_all(self, months: int | None = None) -> int:
        """Erase every silent citizen, batch by batch (each batch committed): ``parlons
        privacy expire``."""
        erased = 0
        while True:
            done = self.expire_step(months)
            erased += done
            if done < self.settings.privacy_expiry_batch:
                return erased

    def prune_step(self) -> int:
        with self.db.session() as session:
            return self._service(session).prune(
                self.settings.privacy_message_retention_days, self.settings.privacy_batch_size
            )

    def sweep_step(self) -> int:
        with self.db.session() as session:
            return self._service(session).sweep()

    def steps(self) -> Iterator[tuple[str, Callable[[], int], int]]:
        """The steps of one round, in order: ("expire" | "prune", step, batch); each step is
        repeated by the caller while it returns a full batch."""
        yield "expire", self.expire_step, self.settings.privacy_expiry_batch
        yield "prune", self.prune_step, self.settings.privacy_batch_size

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> HousekeepingReport:
        """One round, synchronously (the CLI; the scheduler drives the steps itself)."""
        report = HousekeepingReport()
        for name, step, batch in self.steps():
            while not should_stop():
                done = step()
                if name == "expire":
                    report.erased += done
                else:
                    report.pruned += done
                if done < batch:
                    break
            if should_stop():
                return report
        self.sweep_step()
        report.finished = True
        return report


def _redacted_values(
    secret: bytes,
    platform: str,
    event_key: str,
    status: str,
    sender: str | None,
    ids: set[str],
) -> dict[str, Any]:
    """An inbox row that says nothing: its event redacted, no error, and its key replaced by a
    keyed hash of it when it holds one of the citizen's raw platform ids (``ids``: Telegram's
    ``msg:<chat id>:<message id>``; Matrix event ids name nobody and stay, so a redelivery is
    still recognised). ``sender`` is kept for the rows of other people (a command that named
    the citizen)."""
    if any(i and i in event_key for i in ids):
        event_key = "erased:" + one_way_id(secret, platform, event_key)[:48]
    values: dict[str, Any] = {
        "event": redacted_event(platform, event_key),
        "event_key": event_key,
        "error": None,
        "kind": ERASED_KIND,
        "user_id": sender,
        "chat_id": None,
        "chat_type": None,
    }
    if status == "pending":
        values["status"] = "done"  # an event of theirs that will never be handled
    return values


def _redacted_message(message: dict[str, Any]) -> dict[str, Any]:
    """An outbox message with its content removed (its subject kept: reactions to it still
    map to the contribution it showed)."""
    return {
        "chat_id": "",
        "text": {"blocks": [{"spans": [{"text": "[erased]"}], "kind": "p"}]},
        "keyboard": [],
        "attachment": None,
        "edit": None,
        "reply_to": None,
        "notice": None,
        "subject": message.get("subject"),
        "answers": None,
    }
