"""Pytest fixtures and matrix-nio helpers around a real Synapse (see ``tests/support/synapse.py``).

Register as a plugin: ``pytest_plugins = ["tests.support.matrix_fixtures"]``.

Fixtures:
    synapse                 session-scoped homeserver, relaxed rate limits (fails if no Synapse)
    synapse_default_limits  function-scoped homeserver with Synapse's default rate limits
    matrix_account          factory: ``matrix_account("citizen")``, ``await ….create("bot")``
    matrix_clients          factory of logged-in ``nio.AsyncClient``s, closed at teardown

Helpers (plain coroutines): ``nio_client``, ``sync_once``, ``create_dm``, ``join_room``,
``wait_for_join``, ``wait_for_message``, ``send_text``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nio
import pytest
from nio.store import SqliteMemoryStore

from tests.support.synapse import (
    MatrixAccount,
    SynapseServer,
    ensure_synapse,
    synapse_missing_reason,
)

__all__ = [
    "AccountFactory",
    "ClientFactory",
    "MatrixTimeout",
    "create_dm",
    "join_room",
    "matrix_account",
    "matrix_clients",
    "nio_client",
    "send_text",
    "synapse",
    "synapse_default_limits",
    "sync_once",
    "wait_for_join",
    "wait_for_message",
]


class MatrixTimeout(AssertionError):
    """An expected Matrix event did not arrive in time."""


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def synapse() -> Iterator[SynapseServer]:
    """One homeserver for the whole session (relaxed rate limits; starts in ~1-3 s)."""
    ensure_synapse()  # installed on first use
    reason = synapse_missing_reason()
    if reason:
        pytest.fail(reason, pytrace=False)
    server = SynapseServer(rate_limits="relaxed")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class AccountFactory:
    """Registers fresh users with unique localparts (``<prefix>-<n>-<random>``)."""

    def __init__(self, server: SynapseServer) -> None:
        self.server = server
        self.created: list[MatrixAccount] = []

    def __call__(
        self, prefix: str = "user", *, admin: bool = False, password: str | None = None
    ) -> MatrixAccount:
        account = self.server.register(
            self.server.unique_localpart(prefix), password=password, admin=admin
        )
        self.created.append(account)
        return account

    async def create(
        self, prefix: str = "user", *, admin: bool = False, password: str | None = None
    ) -> MatrixAccount:
        account = await self.server.aregister(
            self.server.unique_localpart(prefix), password=password, admin=admin
        )
        self.created.append(account)
        return account


@pytest.fixture
async def synapse_default_limits() -> AsyncIterator[SynapseServer]:
    """A second, private homeserver with Synapse's default rate limits (backoff tests)."""
    ensure_synapse()  # installed on first use
    reason = synapse_missing_reason()
    if reason:
        pytest.fail(reason, pytrace=False)
    async with SynapseServer(rate_limits="default") as server:
        yield server


@pytest.fixture
def matrix_account(synapse: SynapseServer) -> AccountFactory:
    return AccountFactory(synapse)


class ClientFactory:
    """Creates nio clients via :func:`nio_client` and closes them all at teardown."""

    def __init__(self, store_root: Path) -> None:
        self.store_root = store_root
        self.clients: list[nio.AsyncClient] = []

    async def __call__(
        self, account: MatrixAccount, *, encryption: bool = False, **config: Any
    ) -> nio.AsyncClient:
        store_path = None
        if encryption:
            store_path = self.store_root / f"{account.localpart}-{account.device_id}"
        client = await nio_client(account, store_path=store_path, encryption=encryption, **config)
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()
        self.clients.clear()


@pytest.fixture
async def matrix_clients(tmp_path: Path) -> AsyncIterator[ClientFactory]:
    factory = ClientFactory(tmp_path / "nio-stores")
    try:
        yield factory
    finally:
        await factory.aclose()


# --------------------------------------------------------------------- clients


async def nio_client(
    account: MatrixAccount,
    *,
    store_path: str | Path | None = None,
    encryption: bool = False,
    max_limit_exceeded: int = 0,
    max_timeouts: int = 2,
    request_timeout: float = 20,
) -> nio.AsyncClient:
    """A matrix-nio client logged in as ``account`` (``restore_login``, no password login).

    ``max_limit_exceeded=0``: a 429 comes back as an error response instead of nio sleeping
    and retrying forever, so a throttled test fails rather than hangs.
    With ``encryption=True`` the Olm account lives in ``store_path`` (created if needed) or,
    without one, in memory; the device keys are uploaded before this returns.
    The caller closes the client (``await client.close()``), or uses ``matrix_clients``.
    """
    config = nio.AsyncClientConfig(
        max_limit_exceeded=max_limit_exceeded,
        max_timeouts=max_timeouts,
        request_timeout=request_timeout,
        encryption_enabled=encryption,
        store_sync_tokens=False,
        **({"store": SqliteMemoryStore} if encryption and store_path is None else {}),
    )
    if store_path is not None:
        Path(store_path).mkdir(parents=True, exist_ok=True)
    client = nio.AsyncClient(
        account.homeserver,
        account.user_id,
        device_id=account.device_id,
        store_path=str(store_path) if store_path is not None else "",
        config=config,
    )
    client.restore_login(account.user_id, account.device_id, account.access_token)
    if encryption:
        if client.olm is None:
            await client.close()
            raise RuntimeError("matrix-nio has no encryption support (install matrix-nio[e2e])")
        if client.should_upload_keys:
            uploaded = await client.keys_upload()
            if isinstance(uploaded, nio.ErrorResponse):
                await client.close()
                # Typically "One time key ... already exists": this device already uploaded
                # keys from another store. One device = one persistent store.
                raise AssertionError(f"keys_upload for {account.device_id} failed: {uploaded}")
    return client


def _check(response: Any, what: str) -> Any:
    if isinstance(response, nio.ErrorResponse):
        raise AssertionError(f"{what} failed: {response}")
    return response


async def sync_once(client: nio.AsyncClient, timeout_ms: int = 0) -> nio.SyncResponse:
    """One ``/sync`` (long-poll up to ``timeout_ms``) plus the crypto chores sync_forever does:
    send queued to-device messages, upload/query/claim keys."""
    response = _check(await client.sync(timeout=timeout_ms), "sync")
    if client.olm is not None:
        if client.outgoing_to_device_messages:
            await client.send_to_device_messages()
        if client.should_upload_keys:
            _check(await client.keys_upload(), "keys_upload")
        if client.should_query_keys:
            _check(await client.keys_query(), "keys_query")
        if client.should_claim_keys:
            _check(await client.keys_claim(client.get_users_for_key_claiming()), "keys_claim")
    return response


# --------------------------------------------------------------------- rooms


async def create_dm(citizen: nio.AsyncClient, bot_user_id: str, *, encrypted: bool = False) -> str:
    """Create a direct chat from ``citizen`` inviting ``bot_user_id``; returns the room id.

    The room is synced into ``citizen.rooms`` before returning (nio needs it there to send
    once encryption is loaded).
    """
    initial_state: list[dict[str, Any]] = []
    if encrypted:
        initial_state.append(
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        )
    response = _check(
        await citizen.room_create(
            is_direct=True,
            preset=nio.RoomPreset.trusted_private_chat,
            invite=[bot_user_id],
            initial_state=initial_state,
        ),
        "room_create",
    )
    room_id: str = response.room_id
    deadline = time.monotonic() + 10
    while room_id not in citizen.rooms or (encrypted and not citizen.rooms[room_id].encrypted):
        if time.monotonic() > deadline:
            raise MatrixTimeout(f"{room_id} did not show up in {citizen.user_id}'s sync")
        await sync_once(citizen, timeout_ms=1000)
    return room_id


async def join_room(client: nio.AsyncClient, room_id: str) -> None:
    """Accept an invite (or join) by room id; no sync needed beforehand."""
    _check(await client.join(room_id), f"join {room_id}")


async def wait_for_join(
    client: nio.AsyncClient, room_id: str, user_id: str, *, timeout: float = 10
) -> None:
    """Sync ``client`` until ``user_id`` is a joined member of ``room_id``."""
    deadline = time.monotonic() + timeout
    while True:
        room = client.rooms.get(room_id)
        if room is not None and user_id in room.users:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MatrixTimeout(f"{user_id} did not join {room_id} within {timeout} s")
        await sync_once(client, timeout_ms=int(min(remaining, 5) * 1000))


async def send_text(
    client: nio.AsyncClient,
    room_id: str,
    body: str,
    *,
    msgtype: str = "m.text",
    tx_id: str | None = None,
) -> nio.RoomSendResponse | nio.RoomSendError:
    """Send a text (encrypting it if the room is; unverified devices are accepted).

    Returns nio's response unchanged: error responses (e.g. ``M_LIMIT_EXCEEDED`` with
    ``retry_after_ms``) are values, not exceptions.
    """
    room = client.rooms.get(room_id)
    encrypted = client.olm is not None and room is not None and room.encrypted
    if encrypted and client.should_query_keys:
        _check(await client.keys_query(), "keys_query")
    content = {"msgtype": msgtype, "body": body}
    return await client.room_send(
        room_id, "m.room.message", content, tx_id=tx_id, ignore_unverified_devices=True
    )


async def wait_for_message(
    client: nio.AsyncClient,
    room_id: str,
    sender: str,
    *,
    body: str | None = None,
    timeout: float = 10,
) -> nio.RoomMessage:
    """Sync ``client`` until a message from ``sender`` arrives in ``room_id``.

    Only events from syncs made by this call are looked at (after the client's current
    ``next_batch``; the whole recent timeline if the client never synced). Encrypted events
    whose key comes later are retried after each sync. Raises :class:`MatrixTimeout`, with
    anything undecryptable, when nothing matches in time.
    """
    deadline = time.monotonic() + timeout
    undecrypted: list[nio.MegolmEvent] = []

    def matches(event: object) -> bool:
        return (
            isinstance(event, nio.RoomMessage)
            and event.sender == sender
            and (body is None or getattr(event, "body", None) == body)
        )

    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            detail = f"; undecryptable: {undecrypted}" if undecrypted else ""
            raise MatrixTimeout(
                f"no message from {sender} in {room_id} within {timeout} s{detail}"
            )
        response = await sync_once(client, timeout_ms=int(min(remaining, 5) * 1000))
        still_undecrypted = []
        for event in undecrypted:
            try:
                decrypted = client.decrypt_event(event)
            except Exception:  # nio raises EncryptionError while the key is missing
                still_undecrypted.append(event)
                continue
            if matches(decrypted):
                return decrypted
        undecrypted = still_undecrypted
        joined = response.rooms.join.get(room_id)
        if joined is None:
            continue
        for event in joined.timeline.events:
            if isinstance(event, nio.MegolmEvent) and event.sender == sender:
                undecrypted.append(event)
            elif matches(event):
                return event
