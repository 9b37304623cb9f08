"""The Synapse test harness itself: a real homeserver, real matrix-nio clients, E2EE, limits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import nio

# The fixtures (synapse, matrix_account, matrix_clients, synapse_default_limits) come from the
# plugin tests.support.matrix_fixtures, registered in tests/conftest.py.
from tests.support.matrix_fixtures import (
    AccountFactory,
    ClientFactory,
    create_dm,
    join_room,
    send_text,
    sync_once,
    wait_for_join,
    wait_for_message,
)
from tests.support.synapse import REPO_ROOT, SynapseServer, synapse_python


def _report(what: str, seconds: float) -> None:
    print(f"[synapse-harness] {what}: {seconds * 1000:.0f} ms")


async def test_plain_dm_round_trip(
    synapse: SynapseServer, matrix_account: AccountFactory, matrix_clients: ClientFactory
) -> None:
    citizen_account, bot_account = matrix_account("citizen"), matrix_account("bot")
    citizen = await matrix_clients(citizen_account)
    bot = await matrix_clients(bot_account)

    started = time.monotonic()
    room_id = await create_dm(citizen, bot_account.user_id)
    await sync_once(bot)
    assert room_id in bot.invited_rooms
    await join_room(bot, room_id)
    _report("plain DM created and joined", time.monotonic() - started)

    started = time.monotonic()
    sent = await send_text(citizen, room_id, "Bonjour !")
    assert isinstance(sent, nio.RoomSendResponse), sent
    received = await wait_for_message(bot, room_id, citizen_account.user_id)
    assert isinstance(received, nio.RoomMessageText)
    assert received.body == "Bonjour !"
    assert received.event_id == sent.event_id

    reply = await send_text(bot, room_id, "Bienvenue.", msgtype="m.notice")
    assert isinstance(reply, nio.RoomSendResponse), reply
    answer = await wait_for_message(citizen, room_id, bot_account.user_id, body="Bienvenue.")
    assert isinstance(answer, nio.RoomMessageNotice)
    _report("plain round trip citizen -> bot -> citizen", time.monotonic() - started)


async def test_encrypted_dm_round_trip(
    synapse: SynapseServer, matrix_account: AccountFactory, matrix_clients: ClientFactory
) -> None:
    citizen_account = await matrix_account.create("citizen")
    bot_account = await matrix_account.create("bot")
    citizen = await matrix_clients(citizen_account, encryption=True)
    bot = await matrix_clients(bot_account, encryption=True)
    assert citizen.olm is not None and bot.olm is not None

    started = time.monotonic()
    room_id = await create_dm(citizen, bot_account.user_id, encrypted=True)
    await join_room(bot, room_id)
    await wait_for_join(citizen, room_id, bot_account.user_id)
    assert citizen.rooms[room_id].encrypted
    _report("encrypted DM created and joined", time.monotonic() - started)

    started = time.monotonic()
    sent = await send_text(citizen, room_id, "Message chiffré")
    assert isinstance(sent, nio.RoomSendResponse), sent
    received = await wait_for_message(bot, room_id, citizen_account.user_id)
    assert isinstance(received, nio.RoomMessageText), received
    assert received.decrypted
    assert received.body == "Message chiffré"

    reply = await send_text(bot, room_id, "Réponse chiffrée", msgtype="m.notice")
    assert isinstance(reply, nio.RoomSendResponse), reply
    answer = await wait_for_message(citizen, room_id, bot_account.user_id)
    assert isinstance(answer, nio.RoomMessageNotice), answer
    assert answer.decrypted and answer.body == "Réponse chiffrée"
    _report("encrypted round trip citizen -> bot -> citizen", time.monotonic() - started)

    # What the homeserver stores is ciphertext, not the text.
    url = f"{synapse.url}/_matrix/client/v3/rooms/{room_id}/event/{sent.event_id}"
    headers = {"Authorization": f"Bearer {bot_account.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        raw = await resp.json()
    assert raw["type"] == "m.room.encrypted"
    assert raw["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert "Message chiffré" not in str(raw)


async def test_default_limits_throttle_a_burst_until_overridden(
    synapse_default_limits: SynapseServer, matrix_clients: ClientFactory
) -> None:
    hs = synapse_default_limits
    _report("second homeserver startup", hs.startup_seconds or 0)
    sender_account = await hs.aregister(hs.unique_localpart("bot"))
    peer_account = await hs.aregister(hs.unique_localpart("citizen"))
    sender = await matrix_clients(sender_account)
    room_id = await create_dm(sender, peer_account.user_id)

    # Synapse's default rc_message: 0.2/s, burst 10 (per account). Stop at the first 429:
    # Synapse holds every rejected request for 0.5 s before answering.
    accepted = 0
    for i in range(20):
        result = await send_text(sender, room_id, f"annonce {i}")
        if isinstance(result, nio.RoomSendError):
            break
        accepted += 1
    else:
        raise AssertionError("20 messages in a burst should exceed the default rc_message")
    assert result.status_code == "M_LIMIT_EXCEEDED", result
    assert result.retry_after_ms is not None and result.retry_after_ms > 0, result
    assert 1 <= accepted <= 10

    await hs.aoverride_ratelimit(sender_account.user_id, messages_per_second=0, burst_count=0)
    more = [await send_text(sender, room_id, f"annonce bis {i}") for i in range(15)]
    assert all(isinstance(r, nio.RoomSendResponse) for r in more), [
        r for r in more if not isinstance(r, nio.RoomSendResponse)
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_homeserver_dies_with_the_process_that_started_it() -> None:
    """A killed test runner must not leave a homeserver behind (PR_SET_PDEATHSIG)."""
    script = (
        "import sys, time\n"
        "from tests.support.synapse import SynapseServer\n"
        "hs = SynapseServer(python=sys.argv[1]).start()\n"
        "print(hs.pid, hs.data_dir, flush=True)\n"
        "time.sleep(120)\n"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", script, str(synapse_python())],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        line = runner.stdout.readline()
        assert line, "the child runner could not start Synapse"
        pid_text, data_dir = line.split(maxsplit=1)
        pid = int(pid_text)
        assert _alive(pid)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "Synapse outlived the process that started it"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if "data_dir" in locals():
            subprocess.run(["rm", "-rf", data_dir.strip()], check=False)


def test_stop_ends_the_process_group_and_removes_the_data_dir() -> None:
    server = SynapseServer(python=synapse_python())
    with server:
        pid, data_dir = server.pid, server.data_dir
        assert pid is not None and _alive(pid)
        assert server.log_path.exists()
    assert not _alive(pid)
    assert not data_dir.exists()
