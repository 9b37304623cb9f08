"""The whole citizen journey on Matrix, against a real Synapse with real matrix-nio citizens:
in an unencrypted DM and in an encrypted DM, and the start from a public room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nio
import pytest
from sqlmodel import func, select

from bot.app import App
from bot.consultation_file import load_consultation_file
from bot.i18n import gettext, ngettext, use_locale
from storage.models import Comment, Contribution, Support
from storage.models_moderation import Moderator
from tests.conftest import SEED, make_app
from tests.support.harness import FakeClock
from tests.support.matrix_bot import (
    Citizen,
    Replies,
    RunningBot,
    bot_settings,
    wait_ignored,
    wait_joined,
)
from tests.support.matrix_fixtures import (
    AccountFactory,
    ClientFactory,
    create_dm,
    join_room,
    send_text,
    sync_once,
)

DOC = load_consultation_file(SEED)


def tr(msgid: str, locale: str = "fr", **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def count(app: App, model: type) -> int:
    with app.db.session() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


@pytest.fixture
async def bot(
    app: App, matrix_account: AccountFactory, tmp_path: Path
) -> AsyncIterator[RunningBot]:
    account = await matrix_account.create("parlons")
    async with RunningBot(app, bot_settings(app, account, tmp_path / "bot-store")) as running:
        yield running


async def open_dm(
    app: App,
    bot: RunningBot,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    *,
    encrypted: bool = False,
    prefix: str = "citizen",
) -> Citizen:
    account = await matrix_account.create(prefix)
    client = await matrix_clients(account, encryption=encrypted)
    room_id = await create_dm(client, bot.user_id, encrypted=encrypted)
    await wait_joined(client, room_id, bot.user_id, timeout=20)
    return Citizen(app, account, client, room_id, bot.user_id)


async def accept_privacy_notice(citizen: Citizen, replies: Replies) -> Replies:
    """Accept the privacy notice shown at first contact (by its option number), if any."""
    try:
        number = replies.option("/accept")
    except AssertionError:
        return replies
    await citizen.say(number)
    return replies


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_citizen_journey_in_a_dm(
    app: App,
    bot: RunningBot,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    encrypted: bool,
) -> None:
    fr, en = DOC.localized("fr"), DOC.localized("en")
    alice = await open_dm(app, bot, matrix_account, matrix_clients, encrypted=encrypted)
    bob = await open_dm(app, bot, matrix_account, matrix_clients, encrypted=encrypted)

    # The card, with the keyboard degraded to numbered options and their typed commands.
    await accept_privacy_notice(alice, await alice.say("/start"))
    card = await alice.say("/menu")
    assert fr.title in card.text and "[1]" in card.text and "/participate" in card.text
    notice = card[0].content
    assert notice["msgtype"] == "m.notice"
    assert notice["format"] == "org.matrix.custom.html"
    assert "<h4>" in notice["formatted_body"] and "<ul><li>" in notice["formatted_body"]

    # Participate in both questions: "1" presses option 1, then preview and confirm.
    replies = await alice.say(card.option("/participate"))
    assert fr.questions[0].text in replies.text
    replies = await alice.say("Une maison du projet <ouverte> à tous, chaque samedi.")
    assert tr("Publish it?") in replies.text
    assert "&lt;ouverte&gt;" in replies[0].html  # user text escaped in HTML
    assert count(app, Contribution) == 0
    replies = await alice.say(replies.option("/confirm"))
    assert tr("Thank you! Your contribution #{id} is published.", id=1) in replies.text
    assert fr.questions[1].text in replies.text
    await alice.say("Le budget participatif de 2018.")
    replies = await alice.say("!confirm")  # Element users may type ! instead of /
    assert tr("Thank you for taking part!") in replies.text
    await accept_privacy_notice(bob, await bob.say("/start"))
    replies = await bob.say("/participate")
    assert fr.questions[0].text in replies.text
    await bob.say("Des ateliers de quartier.")
    await bob.say("/confirm")
    await bob.say("/skip")
    assert count(app, Contribution) == 3

    # Browse the ideas of question 1, support idea #1 by its number.
    replies = await bob.say("/ideas 1 new")
    idea = replies.about(1)
    assert "Une maison du projet" in idea.body
    replies = await bob.say(replies.option("/support 1"))
    assert "#1 · 👍 1 ·" in replies.text  # the idea, shown again with its new count
    assert count(app, Support) == 1

    # Alice supports Bob's idea #3 with a 👍 reaction on its message, then withdraws it.
    page = await alice.say("/ideas 1")
    bobs_idea = page.about(3)
    reaction = await alice.react(bobs_idea, "👍", encrypted=encrypted)
    replies = await alice.replies_to(reaction)
    assert "#3 · 👍 1 ·" in replies.text
    assert count(app, Support) == 2
    other = await alice.react(bobs_idea, "🎉")  # not a support: ignored, no answer
    assert await alice.replies_to(other) == []
    redaction = await alice.redact(reaction)
    replies = await alice.replies_to(redaction)
    assert tr("Your support for #{id} is withdrawn.", id=3) in replies.text
    assert "#3 · 👍 0 ·" in replies.text
    assert count(app, Support) == 1

    # Bob comments on idea #1 with a Matrix reply to its message (fallback stripped).
    replies = await bob.reply(idea, "Oui, et le soir aussi !")
    assert tr("Thank you, your comment on #{id} is published.", id=1) in replies.text
    with app.db.session() as s:
        comments = [c.text for c in s.exec(select(Comment)).all()]
    assert comments == ["Oui, et le soir aussi !"]
    replies = await alice.say("/comments 1")
    assert "Oui, et le soir aussi !" in replies.text

    # Statistics and the language switch.
    replies = await bob.say("/stats")
    with use_locale("fr"):
        line = ngettext("{n} contribution", "{n} contributions", 3).format(n="3")
    assert line in replies.text
    replies = await bob.say("/lang en")
    assert en.title in replies.text
    replies = await bob.say("/stats")
    assert "3 contributions" in replies.text and "1 support" in replies.text

    # Unsupported things get a clear answer and change nothing.
    image = await bob.send({"msgtype": "m.image", "body": "photo.jpg", "url": "mxc://x/y"})
    replies = await bob.replies_to(image)
    assert (
        tr("I can only read text messages and commands. Type /help to see what you can do.", "en")
        in replies.text
    )
    edit = await bob.send(
        {
            "msgtype": "m.text",
            "body": "* corrected",
            "m.new_content": {"msgtype": "m.text", "body": "corrected"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": image},
        }
    )
    replies = await bob.replies_to(edit)
    assert "edited messages" in replies.text
    assert count(app, Contribution) == 3 and count(app, Comment) == 1
    if encrypted:
        assert bot.service.stats.undecryptable == 0


async def test_public_room_start_offers_a_dm_and_keeps_answers_private(
    sqlite_url: str,
    clock: FakeClock,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
    tmp_path: Path,
) -> None:
    moderator_account = await matrix_account.create("moderator")
    app = make_app(sqlite_url, clock, admins=[f"matrix:{moderator_account.user_id}"])
    bot_account = await matrix_account.create("parlons")
    try:
        async with RunningBot(app, bot_settings(app, bot_account, tmp_path / "store")) as bot:
            moderator = await matrix_clients(moderator_account)
            created = await moderator.room_create(
                preset=nio.RoomPreset.public_chat, invite=[bot.user_id], name="Consultation"
            )
            assert isinstance(created, nio.RoomCreateResponse), created
            room_id = created.room_id
            await wait_joined(moderator, room_id, bot.user_id, timeout=20)
            citizen_account = await matrix_account.create("citizen")
            citizen_client = await matrix_clients(citizen_account)
            await join_room(citizen_client, room_id)
            await sync_once(citizen_client)
            citizen = Citizen(app, citizen_account, citizen_client, room_id, bot.user_id)

            card = await citizen.say("/start")
            assert DOC.localized("fr").title in card.text
            assert f"https://matrix.to/#/{bot.user_id}" in card[0].html
            assert "[1]" not in card.text  # no menu in a room: participation is private
            # Participation is never carried out in the room: no question is asked there.
            replies = await citizen.say("/participate")
            assert replies and DOC.localized("fr").questions[0].text not in replies.text
            # Free text in a room is none of the bot's business; images neither.
            assert await citizen.say("Bonjour tout le monde") == []
            sent = await citizen.send({"msgtype": "m.image", "body": "x.jpg", "url": "mxc://a/b"})
            await wait_ignored(app, sent, timeout=1.5)
            assert count(app, Contribution) == 0

            # A moderator of a consultation (not an administrator) may invite it too...
            moderator2_account = await matrix_account.create("moderator")
            with app.db.session() as s:
                s.add(
                    Moderator(
                        consultation_id=1,
                        platform="matrix",
                        platform_user_id=moderator2_account.user_id,
                        created_at=clock(),
                    )
                )
            moderator2 = await matrix_clients(moderator2_account)
            hall = await moderator2.room_create(invite=[bot.user_id], name="Town hall")
            assert isinstance(hall, nio.RoomCreateResponse)
            await wait_joined(moderator2, hall.room_id, bot.user_id)
            # ...but a citizen cannot pull the bot into a group room...
            stranger = await matrix_clients(await matrix_account.create("stranger"))
            other = await stranger.room_create(invite=[bot.user_id], name="Elsewhere")
            assert isinstance(other, nio.RoomCreateResponse)
            # ...but a DM from anyone is accepted.
            dm = await create_dm(stranger, bot.user_id)
            await wait_joined(stranger, dm, bot.user_id, timeout=20)
            await sync_once(stranger)
            room = stranger.rooms[other.room_id]
            assert bot.user_id not in room.users or room.users[bot.user_id].invited
            assert other.room_id not in bot.service.client.rooms
            assert other.room_id not in bot.service.invites
    finally:
        app.close()


async def test_a_message_sent_before_the_bot_joined_is_answered(
    app: App,
    bot: RunningBot,
    matrix_account: AccountFactory,
    matrix_clients: ClientFactory,
) -> None:
    account = await matrix_account.create("citizen")
    client = await matrix_clients(account)
    room_id = await create_dm(client, bot.user_id)
    sent = await send_text(client, room_id, "/start")  # races the bot's join
    assert isinstance(sent, nio.RoomSendResponse)
    citizen = Citizen(app, account, client, room_id, bot.user_id)
    replies = await citizen.replies_to(sent.event_id)
    assert DOC.localized("fr").title in replies.text
