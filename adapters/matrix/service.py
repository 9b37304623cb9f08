"""The Matrix service: login, our own sync loop, invitations, encryption, and the outbox sender.

**Sync loop.** matrix-nio's ``sync_forever`` retries without backing off and, with
``store_sync_tokens``, saves ``next_batch`` before callbacks run. We sync ourselves instead:

1. ``/sync`` from the token stored in the database (a sync filter limits timelines and
   lazy-loads members; the first sync of each process asks for the full state so nio knows every
   room's encryption and membership);
2. translate the batch's timeline events into portable events (a room whose timeline was
   ``limited`` is back-filled from ``prev_batch`` to our token with ``/messages``, so nothing
   sent while the bot was down is skipped);
3. in ONE transaction, ingest them into the inbox (deduplicated on the Matrix event id) and store
   ``next_batch`` (plus the encrypted events still waiting for keys and the pending
   invitations): a crash before the commit re-reads the batch, a crash after it resumes after;
4. process the inbox (each event's effect, its replies and its status commit together) and wake
   the outbox sender, which sends the replies with idempotent transaction ids.

**Room kinds.** Matrix does not say with each event whether a room is a private chat: a room is
private when it is not public and has the bot and one other member (joined or invited), else a
group, whatever its invitation said (``is_direct``). The homeserver reports member counts only
when membership changes (lazy-loaded members: not again after a restart), so the kind is kept in
the database, committed with the batch that revealed it, and read back at start. A room whose
kind was never recorded is asked about (its state) before its events are translated; a room of
unknown kind is a group: the core never runs private-only steps (participation, personal data)
there.

Errors back off exponentially with jitter (``M_LIMIT_EXCEEDED`` waits ``retry_after_ms``). On the
very first start the bot syncs once, stores the token and skips that history; in a room it has
just joined it answers what was written after it was invited, not the room's older history.

**Encryption.** nio with its persistent store (one store per device: the bot stays one device)
decrypts as it syncs. An event whose keys have not arrived is kept aside (in the database, with
the batch), its key is requested from the sender's devices, and decryption is retried after
every sync; if it is still unreadable after ``matrix_undecryptable_wait`` seconds the citizen is
told. Device trust follows ``matrix_device_trust`` (see the README, "Run on Matrix").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import nio

from adapters.matrix.channel import MatrixChannel, outcome
from adapters.matrix.translate import (
    PLATFORM,
    Bot,
    Room,
    redacted_event_id,
    translate,
    translate_redaction,
    undecryptable,
)
from bot.app import App
from bot.channels import Pace, RetryAfter
from bot.delivery import OutboxSender
from bot.engine import ChatSeen
from bot.messages import ChatType, InboundEvent
from bot.router import Role
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# At most this many /messages pages (of 100 events) are fetched to fill one room's gap.
MAX_BACKFILL_PAGES = 50
# Encrypted events kept aside waiting for keys (the oldest are dropped beyond that).
MAX_UNDECRYPTED = 1000


class MatrixConfigError(RuntimeError):
    """The Matrix settings cannot work (no credentials, wrong password...)."""


@dataclass
class Stats:
    syncs: int = 0
    sync_errors: int = 0
    events: int = 0
    backfilled: int = 0
    decrypted_late: int = 0
    undecryptable: int = 0
    throttled: int = 0
    joins: int = 0


class Backoff:
    """Exponential backoff with jitter: the n-th consecutive failure waits a random time
    between half and all of ``min(cap, base * 2**n)``."""

    def __init__(self, base: float = 0.5, cap: float = 60.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.failures = 0


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    return {
        "room": {
            "timeline": {"limit": timeline_limit},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    }


# Join rules under which a room can be private (anyone may join the others: a group).
PRIVATE_JOIN_RULES = frozenset({"invite", "private"})


def kind_of(join_rule: str, members: int | None) -> ChatType | None:
    """A DM is a non-public room with the bot and at most one other member (joined or invited);
    anything else is a group room, where participation is offered in private instead. ``None``
    when the member count is unknown (and the room not public)."""
    if join_rule not in PRIVATE_JOIN_RULES:
        return ChatType.GROUP
    if members is None:
        return None
    return ChatType.GROUP if members > 2 else ChatType.PRIVATE


def observed_kind(room: nio.MatrixRoom | None) -> tuple[ChatType, int | None] | None:
    """A room's kind from what nio reliably knows in this process: its join rule (full state
    on the first sync) and the homeserver's member counts (the sync's room summary, sent when
    the bot joins and when membership changes). nio's member list is NOT a count: members are
    lazy-loaded, so after a restart it holds only the senders seen since."""
    if room is None:
        return None
    summary = room.summary
    members = None
    if summary is not None and summary.joined_member_count is not None:
        members = summary.joined_member_count + (summary.invited_member_count or 0)
    kind = kind_of(room.join_rule, members)
    return (kind, members) if kind is not None else None


def _own_membership(event: Any, me: str) -> tuple[str | None, str | None]:
    """(membership, previous membership) of a member event about the bot, else (None, None)."""
    source = getattr(event, "source", None) or {}
    if source.get("type") != "m.room.member" or source.get("state_key") != me:
        return None, None
    prev = ((source.get("unsigned") or {}).get("prev_content") or {}).get("membership")
    return (source.get("content") or {}).get("membership"), prev


def newly_joined_cut(events: list[Any], me: str) -> tuple[int | None, bool]:
    """In the timeline of a room the bot has just joined: the index of the event after which
    messages are for the bot (its invitation, else its join; ``None`` if the bot did not join
    in these events), and whether the invitation is missing from them (a limited timeline)."""
    last_invite: int | None = None
    cut: int | None = None
    missing = False
    for index, event in enumerate(events):
        membership, prev = _own_membership(event, me)
        if membership == "invite":
            last_invite = index
        elif membership == "join" and prev != "join":
            cut = last_invite if last_invite is not None else index
            missing = last_invite is None and prev == "invite"
    return cut, missing


class MatrixService:
    name = "matrix"

    def __init__(self, app: App, runtime: Runtime, settings: Settings | None = None) -> None:
        self.app = app
        self.runtime = runtime
        self.engine = app.engine
        self.settings = settings = settings or app.settings
        if not settings.matrix_homeserver or not settings.matrix_user_id:
            raise MatrixConfigError("set PARLONS_MATRIX_HOMESERVER and PARLONS_MATRIX_USER_ID")
        self.user_id = settings.matrix_user_id
        self.store_path = Path(settings.matrix_store_path)
        nio_log = logging.getLogger("nio")
        if nio_log.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
            nio_log.setLevel(logging.WARNING)  # nio logs every state event at INFO
        config = nio.AsyncClientConfig(
            encryption_enabled=True,
            store_sync_tokens=False,  # our own token, committed with the batch's effects
            max_limit_exceeded=0,  # a 429 comes back to us: we back off, nio must not hang
            max_timeouts=2,
            request_timeout=60,
            pickle_key=(
                settings.matrix_store_key.get_secret_value()
                if settings.matrix_store_key
                else "DEFAULT_KEY"
            ),
        )
        self.client = nio.AsyncClient(
            settings.matrix_homeserver,
            self.user_id,
            device_id=settings.matrix_device_id or "",
            store_path=str(self.store_path),
            config=config,
        )
        self.crypto_lock = asyncio.Lock()
        self.channel = MatrixChannel(self.client, self.user_id, crypto_lock=self.crypto_lock)
        self.engine.register_channel(PLATFORM, self.channel.capabilities)
        self.sender = OutboxSender(
            runtime,
            _CountingChannel(self.channel, self),
            Pace(
                per_second=settings.matrix_pace_per_second,
                per_chat_interval=settings.matrix_pace_room_interval,
            ),
        )
        self.bot = Bot(self.user_id, settings.matrix_device_name)
        digest = hashlib.sha1(self.user_id.encode()).hexdigest()[:16]  # noqa: S324
        self.state_prefix = f"matrix:{self.user_id if len(self.user_id) < 96 else digest}:"
        self.filter = sync_filter(settings.matrix_timeline_limit)
        self.stats = Stats()
        self.ready = asyncio.Event()  # logged in and synced once (tests wait for it)
        # Encrypted events waiting for their keys: event id → {room, source, seen}. A batch
        # works on a copy (_waiting), which replaces this once the batch is committed.
        self.undecrypted: dict[str, dict[str, Any]] = {}
        self._waiting: dict[str, dict[str, Any]] = {}
        # Invitations not acted on yet: room id → {inviter, direct}.
        self.invites: dict[str, dict[str, Any]] = {}
        # Room kinds as committed in the database (read at start); a batch's changes wait in
        # _kinds_seen until the batch is committed.
        self.kinds: dict[str, ChatType] = {}
        self._kinds_seen: dict[str, ChatSeen] = {}
        self._requested_keys: set[str] = set()
        self._sender_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        try:
            if not await self._login(stop):
                return
            await self._sync_loop(stop, await self._load_state())
        finally:
            sender = self._sender_task
            if sender is not None:
                if not stop.is_set():
                    sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            await self.client.close()

    async def _start_sender(self) -> None:
        """After the first sync (nio must know the rooms to send to them): send what a previous
        process left pending, before new events are processed, so that reactions and replies to
        those messages find their Matrix event ids; then keep sending in the background."""
        if self._sender_task is not None:
            return
        self.channel.ready = True
        try:
            await asyncio.wait_for(self.sender.flush(), timeout=30)
        except TimeoutError:
            pass
        except Exception:
            log.exception("matrix: sending the pending replies failed")
        self._sender_task = asyncio.create_task(self.sender.run(self._stop))

    # ------------------------------------------------------------------ login

    def _credentials_path(self) -> Path:
        return self.store_path / "credentials.json"

    def _load_credentials(self) -> dict[str, str] | None:
        try:
            data = json.loads(self._credentials_path().read_text())
        except (OSError, ValueError):
            return None
        if data.get("homeserver") != self.settings.matrix_homeserver:
            return None
        if data.get("user_id") != self.user_id:
            return None
        return data if data.get("access_token") and data.get("device_id") else None

    def _save_credentials(self) -> None:
        path = self._credentials_path()
        tmp = path.with_suffix(".tmp")
        data = {
            "homeserver": self.settings.matrix_homeserver,
            "user_id": self.user_id,
            "device_id": self.client.device_id,
            "access_token": self.client.access_token,
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        tmp.replace(path)

    async def _login(self, stop: asyncio.Event) -> bool:
        """Log in once (access token, saved credentials, or password with the saved device id)
        and upload the device keys; network errors back off until ``stop``."""
        backoff = Backoff(cap=30)
        self.store_path.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            try:
                await self._login_once()
            except (aiohttp.ClientError, TimeoutError, RetryAfter) as exc:
                delay = exc.seconds if isinstance(exc, RetryAfter) else backoff.next()
                log.warning("matrix login failed (%r); retrying in %.1fs", exc, delay)
                await _sleep(stop, delay)
                continue
            return True
        return False

    async def _login_once(self) -> None:
        settings, client = self.settings, self.client
        if settings.matrix_access_token is not None:
            token = settings.matrix_access_token.get_secret_value()
            device_id = settings.matrix_device_id
            if not device_id:
                client.access_token = token
                who = await client.whoami()
                if isinstance(who, nio.ErrorResponse):
                    raise _login_error(who)
                device_id = who.device_id
                if not device_id:
                    raise MatrixConfigError("set PARLONS_MATRIX_DEVICE_ID for this access token")
            client.restore_login(self.user_id, device_id, token)
        else:
            saved = self._load_credentials()
            if saved is not None:
                client.restore_login(self.user_id, saved["device_id"], saved["access_token"])
                who = await client.whoami()
                if isinstance(who, nio.ErrorResponse):
                    if who.status_code not in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN"):
                        raise _login_error(who)
                    log.warning("saved Matrix access token refused; logging in again")
                    client.access_token = ""
                    client.device_id = saved["device_id"]
                    saved = None
            if saved is None:
                if settings.matrix_password is None:
                    raise MatrixConfigError(
                        "set PARLONS_MATRIX_PASSWORD or PARLONS_MATRIX_ACCESS_TOKEN"
                    )
                if settings.matrix_device_id:
                    client.device_id = settings.matrix_device_id
                response = await client.login(
                    settings.matrix_password.get_secret_value(),
                    device_name=settings.matrix_device_name,
                )
                if isinstance(response, nio.ErrorResponse):
                    raise _login_error(response)
                self._save_credentials()
        if client.olm is None:
            raise MatrixConfigError("matrix-nio lacks encryption: install matrix-nio[e2e]")
        log.info(
            "matrix: logged in as %s (device %s, ed25519 fingerprint %s)",
            client.user_id,
            client.device_id,
            client.olm.account.identity_keys["ed25519"],
        )
        await self._crypto_chores()

    # ------------------------------------------------------------------ sync loop

    def _key(self, name: str) -> str:
        return self.state_prefix + name

    async def _load_state(self) -> str | None:
        call, key = self.runtime.call, self._key
        token = await call(self.engine.channel_state, key("next_batch"))
        txn = await call(self.engine.channel_state, key("txn"))
        if txn is None:
            # Transaction ids are scoped to this database: committed before anything is sent.
            txn = secrets.token_hex(4)
            await call(self.engine.ingest_batch, [], {key("txn"): txn})
        self.channel.txn_prefix = f"parlons-{txn}"
        pending = await call(self.engine.channel_state, key("undecrypted"))
        self.undecrypted = json.loads(pending) if pending else {}
        invites = await call(self.engine.channel_state, key("invites"))
        self.invites = json.loads(invites) if invites else {}
        self.kinds = await call(self.engine.chat_kinds, PLATFORM)
        return token

    def _state(self, next_batch: str) -> dict[str, str]:
        return {
            self._key("next_batch"): next_batch,
            self._key("txn"): self.channel.txn_prefix.removeprefix("parlons-"),
            self._key("undecrypted"): json.dumps(self._waiting),
            self._key("invites"): json.dumps(self.invites),
        }

    async def _sync_loop(self, stop: asyncio.Event, token: str | None) -> None:
        backoff = Backoff()
        full_state = True  # the first sync of a process: nio learns every room's state
        while not stop.is_set():
            timeout_ms = 0 if full_state else self._poll_ms()
            try:
                response = await _until(
                    stop,
                    self.client.sync(
                        timeout=timeout_ms,
                        sync_filter=self.filter,
                        since=token,
                        full_state=full_state or None,
                    ),
                )
                if response is None:
                    break
                if isinstance(response, nio.ErrorResponse):
                    raise outcome(response, "sync")
                self.stats.syncs += 1
                events = await self._collect(response, token)
                new = await self.runtime.call(
                    self.engine.ingest_batch,
                    events,
                    self._state(response.next_batch),
                    list(self._kinds_seen.values()),
                )
                self.undecrypted = self._waiting
                self._kinds_committed()
                if events:
                    log.info("matrix: %d event(s) committed (%d new)", len(events), new)
            except asyncio.CancelledError:
                raise
            except MatrixConfigError:
                raise
            except Exception as exc:
                self.stats.sync_errors += 1
                if isinstance(exc, RetryAfter):
                    self.stats.throttled += 1
                    delay = exc.seconds
                else:
                    delay = backoff.next()
                log.warning("matrix sync failed (%r); retrying in %.1fs", exc, delay)
                await _sleep(stop, delay)
                continue
            backoff.reset()
            self.stats.events += len(events)
            if token is None:
                log.info("matrix: first start, history skipped")
            token, full_state = response.next_batch, False
            self.ready.set()
            await self._after_batch(response)

    def _poll_ms(self) -> int:
        """Long-poll for ``matrix_sync_timeout``, less when an encrypted event's wait ends."""
        timeout = self.settings.matrix_sync_timeout
        if self.undecrypted:
            wait = self.settings.matrix_undecryptable_wait
            first = min(item["seen"] for item in self.undecrypted.values())
            timeout = min(timeout, max(0.2, first + wait - time.time()))
        return int(timeout * 1000)

    async def _after_batch(self, response: nio.SyncResponse) -> None:
        """What follows the commit of a batch: chores that need no durability (they are
        redone or harmless if the process dies here)."""
        try:
            await self._crypto_chores()
            await self._handle_invites()
            await self._leave_empty_rooms(response)
        except (aiohttp.ClientError, TimeoutError, nio.LocalProtocolError) as exc:
            log.warning("matrix housekeeping failed: %r", exc)
        await self._start_sender()
        try:
            await self.process_inbox()
        except Exception:
            # The events stay pending in the inbox: processed after the next sync.
            log.exception("matrix: processing the inbox failed")

    async def process_inbox(self, chunk: int = 100) -> None:
        """Process every pending Matrix event (a chunk per transaction: each event's effect,
        replies and status commit together) and wake the sender."""
        while True:
            ids = await self.runtime.call(self.engine.pending, PLATFORM, chunk)
            if not ids:
                return
            if await self.runtime.call(self.engine.process_many, ids):
                self.sender.wake.set()
            if len(ids) < chunk:
                return

    # ------------------------------------------------------------------ translating a batch

    async def _collect(self, response: nio.SyncResponse, since: str | None) -> list[InboundEvent]:
        self._note_invites(response)
        self._waiting = dict(self.undecrypted)
        self._observe_kinds(response)
        if since is None:
            return []  # the very first start: skip the history
        events: list[InboundEvent] = []
        seen: dict[str, InboundEvent] = {}
        for room_id, info in response.rooms.join.items():
            timeline = list(info.timeline.events)
            cut, invite_missing = newly_joined_cut(timeline, self.user_id)
            if invite_missing and info.timeline.limited and info.timeline.prev_batch:
                # Joined, but the invitation is beyond the timeline limit: what citizens wrote
                # between the invitation and the join is for the bot. Fetch back to it.
                earlier = await self._back_to_invite(room_id, info.timeline.prev_batch)
                self.stats.backfilled += len(earlier)
                timeline = earlier + timeline
                cut, _missing = newly_joined_cut(timeline, self.user_id)
            if cut is not None:
                timeline = timeline[cut + 1 :]
            elif info.timeline.limited and info.timeline.prev_batch:
                missing = await self._backfill(room_id, info.timeline.prev_batch, since)
                self.stats.backfilled += len(missing)
                timeline = missing + timeline
            if timeline and self._kind(room_id) is None:
                await self._ask_kind(room_id)
            room = self._room(room_id)
            for event in timeline:
                inbound = await self._translate(event, room, seen)
                if inbound is not None:
                    events.append(inbound)
                    seen[inbound.context.event_id] = inbound
        events.extend(await self._retry_undecrypted(seen))
        return events

    def _room(self, room_id: str) -> Room:
        room = self.client.rooms.get(room_id)
        return Room(
            room_id,
            self._kind(room_id) or ChatType.GROUP,  # unknown: never treated as private
            (lambda user: room.user_name(user)) if room is not None else (lambda _user: None),
        )

    # ------------------------------------------------------------------ room kinds

    def _kind(self, room_id: str) -> ChatType | None:
        """The room's kind: as this batch revealed it, else as committed, else unknown."""
        seen = self._kinds_seen.get(room_id)
        if seen is not None:
            return seen.kind
        return self.kinds.get(room_id)

    def _note_kind(self, room_id: str, kind: ChatType | None, members: int | None) -> None:
        if self._kind(room_id) != kind:
            self._kinds_seen[room_id] = ChatSeen(PLATFORM, room_id, kind, members)

    def _observe_kinds(self, response: nio.SyncResponse) -> None:
        """The kinds this batch reveals (committed with it): rooms the bot left are forgotten,
        joined rooms whose summary or join rule nio knows are (re)classified."""
        self._kinds_seen = {}
        for room_id in response.rooms.leave:
            if room_id not in response.rooms.join:
                self._note_kind(room_id, None, None)
        for room_id in response.rooms.join:
            observed = observed_kind(self.client.rooms.get(room_id))
            if observed is not None:
                self._note_kind(room_id, *observed)

    async def _ask_kind(self, room_id: str) -> None:
        """A room with events but no recorded kind (joined before kinds were recorded): count
        its members from its state. A failure fails the batch (retried after a backoff), so
        that its events are not translated with a guess; a room the bot can no longer read
        stays unknown, i.e. a group."""
        response = await self.client.room_get_state(room_id)
        if isinstance(response, nio.ErrorResponse):
            if response.status_code in ("M_FORBIDDEN", "M_NOT_FOUND"):
                log.info("matrix: cannot read the state of %s (%s)", room_id, response)
                return
            raise outcome(response, f"state of {room_id}")
        members, join_rule = 0, "invite"
        for event in response.events:
            content = event.get("content") or {}
            if event.get("type") == "m.room.member":
                members += content.get("membership") in ("join", "invite")
            elif event.get("type") == "m.room.join_rules" and event.get("state_key") == "":
                join_rule = str(content.get("join_rule", "invite"))
        kind = kind_of(join_rule, members) or ChatType.GROUP
        log.info("matrix: %s is a %s room (%d members, asked)", room_id, kind, members)
        self._note_kind(room_id, kind, members)

    def _kinds_committed(self) -> None:
        for room_id, seen in self._kinds_seen.items():
            if seen.kind is None:
                self.kinds.pop(room_id, None)
            else:
                self.kinds[room_id] = seen.kind
        self._kinds_seen = {}

    async def _translate(
        self, event: Any, room: Room, seen: dict[str, InboundEvent]
    ) -> InboundEvent | None:
        if isinstance(event, nio.MegolmEvent):
            if event.sender != self.user_id:
                await self._keep_undecrypted(event, room.room_id)
            return None
        source = getattr(event, "source", None)
        if not isinstance(source, dict):
            return None
        if source.get("type") == "m.room.redaction":
            target = redacted_event_id(source)
            if target is None:
                return None
            original = seen.get(target) or await self.runtime.call(
                self.engine.inbound_event, PLATFORM, target
            )
            return translate_redaction(source, room, self.bot, original)
        return translate(source, room, self.bot)

    async def _backfill(self, room_id: str, prev_batch: str, since: str) -> list[Any]:
        """The events between our last token and a limited timeline's start."""
        collected: list[Any] = []
        start = prev_batch
        for _page in range(MAX_BACKFILL_PAGES):
            response = await self.client.room_messages(
                room_id, start=start, end=since, direction=nio.MessageDirection.back, limit=100
            )
            if isinstance(response, nio.ErrorResponse):
                raise outcome(response, f"back-fill {room_id}")
            collected.extend(response.chunk)
            if not response.chunk or not response.end or response.end == start:
                break
            start = response.end
        else:
            log.warning("matrix: gap in %s longer than %d pages", room_id, MAX_BACKFILL_PAGES)
        collected.reverse()
        return collected

    async def _back_to_invite(self, room_id: str, prev_batch: str) -> list[Any]:
        """The events from the bot's invitation to a limited timeline's start (none if the
        invitation is not found within MAX_BACKFILL_PAGES pages)."""
        collected: list[Any] = []
        start = prev_batch
        for _page in range(MAX_BACKFILL_PAGES):
            response = await self.client.room_messages(
                room_id, start=start, direction=nio.MessageDirection.back, limit=100
            )
            if isinstance(response, nio.ErrorResponse):
                raise outcome(response, f"back-fill {room_id}")
            for index, event in enumerate(response.chunk):
                if _own_membership(event, self.user_id)[0] == "invite":
                    collected.extend(response.chunk[: index + 1])
                    collected.reverse()
                    return collected
            collected.extend(response.chunk)
            if not response.chunk or not response.end or response.end == start:
                break
            start = response.end
        return []

    # ------------------------------------------------------------------ undecryptable events

    async def _keep_undecrypted(self, event: nio.MegolmEvent, room_id: str) -> None:
        if event.event_id in self._waiting:
            return
        self._waiting[event.event_id] = {
            "room": room_id,
            "source": event.source,
            "seen": time.time(),
        }
        while len(self._waiting) > MAX_UNDECRYPTED:
            oldest = min(self._waiting, key=lambda k: self._waiting[k]["seen"])
            del self._waiting[oldest]
        log.info("matrix: %s not decryptable yet; requesting its key", event.event_id)
        await self._request_key(event, room_id)

    async def _request_key(self, event: nio.MegolmEvent, room_id: str) -> None:
        if event.session_id in self._requested_keys:
            return
        self._requested_keys.add(event.session_id)
        event.room_id = room_id
        try:
            response = await self.client.request_room_key(event)
        except nio.LocalProtocolError:
            return  # already requested (recorded in the store)
        if isinstance(response, nio.ErrorResponse):
            log.warning("matrix: key request failed: %s", response)

    async def _retry_undecrypted(self, seen: dict[str, InboundEvent]) -> list[InboundEvent]:
        """Decrypt what can be now; give up on what waited too long (the citizen is told)."""
        out: list[InboundEvent] = []
        now = time.time()
        for event_id, item in list(self._waiting.items()):
            parsed = nio.Event.parse_event(item["source"])
            room = self._room(item["room"])
            if not isinstance(parsed, nio.MegolmEvent):
                del self._waiting[event_id]
                continue
            parsed.room_id = item["room"]
            try:
                decrypted = self.client.decrypt_event(parsed)
            except (nio.EncryptionError, AssertionError, KeyError):
                decrypted = None
            if decrypted is not None and not isinstance(decrypted, nio.MegolmEvent):
                del self._waiting[event_id]
                self.stats.decrypted_late += 1
                inbound = await self._translate(decrypted, room, seen)
                if inbound is not None:
                    out.append(inbound)
                continue
            if now - item["seen"] >= self.settings.matrix_undecryptable_wait:
                del self._waiting[event_id]
                self.stats.undecryptable += 1
                log.warning("matrix: %s could not be decrypted", event_id)
                if room.chat_type == ChatType.PRIVATE:
                    out.append(undecryptable(item["source"], room))
        return out

    # ------------------------------------------------------------------ encryption chores

    async def _crypto_chores(self) -> None:
        """What ``sync_forever`` does after each sync: send queued to-device messages, upload,
        query and claim keys; then apply the device-trust policy."""
        client = self.client
        if client.olm is None:
            return
        async with self.crypto_lock:
            if client.outgoing_to_device_messages:
                await client.send_to_device_messages()
            if client.should_upload_keys:
                self._uploaded(await client.keys_upload())
            if client.should_query_keys:
                _warn(await client.keys_query(), "keys_query")
            if client.should_claim_keys:
                users = client.get_users_for_key_claiming()
                _warn(await client.keys_claim(users), "keys_claim")
        if self.settings.matrix_device_trust == "tofu":
            self._trust_new_devices()

    def _uploaded(self, response: Any) -> None:
        if not isinstance(response, nio.ErrorResponse):
            return
        olm = self.client.olm
        if olm is not None and "already exists" in str(response.message):
            # Killed between the homeserver storing our one-time keys and nio recording that
            # they were published: record it now, or every later upload fails the same way.
            log.warning("matrix: one-time keys were already uploaded; marking them published")
            olm.account.shared = True
            olm.mark_keys_as_published()
            olm.save_account()
            return
        log.warning("matrix keys_upload failed: %s", response)

    def _trust_new_devices(self) -> None:
        """Trust on first use: every device the bot learns about is marked verified in its
        store the first time; nio then refuses changed keys for that device id."""
        client = self.client
        olm = client.olm
        assert olm is not None
        for device in list(client.device_store):
            if device.user_id == client.user_id and device.id == client.device_id:
                continue
            if device.deleted or olm.is_device_blacklisted(device):
                continue
            if not olm.is_device_verified(device):
                client.verify_device(device)

    # ------------------------------------------------------------------ rooms

    def _note_invites(self, response: nio.SyncResponse) -> None:
        for room_id, info in response.rooms.invite.items():
            inviter, direct = None, False
            for event in info.invite_state:
                # (nio pops "content" out of an invite event's source: use its attributes)
                if (
                    isinstance(event, nio.InviteMemberEvent)
                    and event.state_key == self.user_id
                    and event.membership == "invite"
                ):
                    inviter = event.sender
                    direct = bool((event.content or {}).get("is_direct"))
            if inviter is not None:
                self.invites[room_id] = {"inviter": inviter, "direct": direct}

    async def accepts_invite(self, inviter: str, direct: bool) -> bool:
        """DMs from anyone; group rooms from administrators, moderators of a consultation and
        ``matrix_room_inviters``."""
        if direct:
            return True
        allowed = self.settings.matrix_room_inviters
        if "*" in allowed or inviter in allowed:
            return True
        if self.app.dispatcher.role_of(PLATFORM, inviter) >= Role.MODERATOR:
            return True
        return await self.runtime.call(_moderates_something, self.app, inviter)

    async def _handle_invites(self) -> None:
        for room_id, invite in list(self.invites.items()):
            accept = await self.accepts_invite(invite["inviter"], invite["direct"])
            response = await (self.client.join(room_id) if accept else self._reject(room_id))
            if isinstance(response, nio.ErrorResponse):
                if response.status_code == "M_LIMIT_EXCEEDED":
                    self.stats.throttled += 1
                    log.info("matrix: join throttled; will retry")
                    continue
                if response.status_code not in ("M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN"):
                    log.warning("matrix: invitation to %s: %s", room_id, response)
                    continue
                log.info("matrix: invitation to %s is gone (%s)", room_id, response)
            elif accept:
                self.stats.joins += 1
                log.info("matrix: joined %s (invited by %s)", room_id, invite["inviter"])
            else:
                log.info("matrix: declined %s (from %s)", room_id, invite["inviter"])
            del self.invites[room_id]

    async def _reject(self, room_id: str) -> nio.RoomLeaveResponse | nio.RoomLeaveError:
        return await self.client.room_leave(room_id)

    async def _leave_empty_rooms(self, response: nio.SyncResponse) -> None:
        """Leave a room once everyone else has left it (a citizen closed the DM)."""
        for room_id, info in response.rooms.join.items():
            left = any(
                (getattr(e, "source", None) or {}).get("type") == "m.room.member"
                and e.source.get("state_key") != self.user_id
                and (e.source.get("content") or {}).get("membership") in ("leave", "ban")
                for e in info.timeline.events
            )
            room = self.client.rooms.get(room_id)
            if left and room is not None and room.joined_count <= 1:
                log.info("matrix: leaving %s, now empty", room_id)
                left = await self.client.room_leave(room_id)
                if not isinstance(left, nio.ErrorResponse):
                    self.channel.left_rooms.add(room_id)
                    await self.client.room_forget(room_id)  # nio then drops the room


class _CountingChannel:
    """The channel as the outbox sender sees it, counting throttled sends."""

    def __init__(self, channel: MatrixChannel, service: MatrixService) -> None:
        self.inner, self.service = channel, service
        self.platform = channel.platform
        self.capabilities = channel.capabilities

    async def send(self, message: Any, *, key: str) -> Any:
        try:
            return await self.inner.send(message, key=key)
        except RetryAfter:
            self.service.stats.throttled += 1
            raise


def _moderates_something(app: App, user_id: str) -> bool:
    """Whether this Matrix user moderates at least one consultation (runs in the DB thread)."""
    return user_id in app.engine.moderating_chats(PLATFORM)


def _login_error(response: nio.ErrorResponse) -> Exception:
    error = outcome(response, "login")
    if isinstance(error, RetryAfter):
        return error
    if response.status_code in ("M_FORBIDDEN", "M_USER_DEACTIVATED", "M_UNKNOWN_TOKEN"):
        return MatrixConfigError(f"Matrix login refused: {response}")
    return aiohttp.ClientError(f"Matrix login failed: {response}")


def _warn(response: Any, what: str) -> None:
    if isinstance(response, nio.ErrorResponse):
        log.warning("matrix %s failed: %s", what, response)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _until(stop: asyncio.Event, coro: Awaitable[T]) -> T | None:
    """Run ``coro`` unless ``stop`` is set first (then cancel it and return None)."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _pending = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None
