"""The Bot API test server, driven by the real python-telegram-bot over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import re
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllPrivateChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from tests.support.bot_api_server import (
    BotApiServer,
    EntityParseError,
    RateLimits,
    parse_html,
    parse_markdown_v2,
)

TOKEN = "123456:TEST"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def server() -> AsyncIterator[BotApiServer]:
    async with BotApiServer(TOKEN) as srv:
        yield srv
    assert not srv.running


@pytest.fixture
async def bot(server: BotApiServer) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=server.base_url, base_file_url=server.base_file_url) as b:
        yield b


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert leftovers == []


def keyboard(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(f"Option {d}", callback_data=d)] for d in data]
    )


def tiny_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


# -- identity and transport ----------------------------------------------------------------


async def test_get_me_through_ptb(server: BotApiServer, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "parlons_test_bot")
    assert me.can_join_groups is True
    assert me.can_read_all_group_messages is False
    assert me.supports_inline_queries is False
    assert bot.username == "parlons_test_bot"  # initialize() called getMe already
    assert server.base_url == f"http://127.0.0.1:{server.port}/bot"
    assert server.stats.requests["getMe"] == 2


async def test_wrong_token_is_unauthorized(server: BotApiServer) -> None:
    requests = (HTTPXRequest(), HTTPXRequest())
    intruder = Bot(
        "654321:NOPE",
        base_url=server.base_url,
        request=requests[0],
        get_updates_request=requests[1],
    )
    try:
        with pytest.raises(InvalidToken, match="Unauthorized"):
            await intruder.get_me()
    finally:
        for request in requests:
            await request.shutdown()
    assert server.requests == []


# -- sending ---------------------------------------------------------------------------------


async def test_inline_keyboard_is_recorded_and_messages_are_numbered_per_chat(
    server: BotApiServer, bot: Bot
) -> None:
    sent = await bot.send_message(42, "Votez :", reply_markup=keyboard("v:1", "v:2"))
    assert (sent.message_id, sent.chat.id, sent.chat.type) == (1, 42, "private")
    assert sent.from_user is not None and sent.from_user.id == 123456 and sent.from_user.is_bot
    assert sent.date.year >= 2024
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[1][0].callback_data == "v:2"

    (record,) = server.messages_to(42)
    assert record.method == "sendMessage"
    assert record.chat_id == 42 and record.message_id == 1
    assert record.reply_markup == {
        "inline_keyboard": [
            [{"text": "Option v:1", "callback_data": "v:1"}],
            [{"text": "Option v:2", "callback_data": "v:2"}],
        ]
    }
    assert record.callback_data == ["v:1", "v:2"]
    assert record.button_texts == ["Option v:1", "Option v:2"]

    assert (await bot.send_message(42, "Et de deux")).message_id == 2
    assert (await bot.send_message(43, "Autre chat")).message_id == 1
    assert [r.plain_text for r in await server.wait_for_messages(42, 2)] == [
        "Votez :",
        "Et de deux",
    ]


async def test_html_becomes_text_and_utf16_entities(server: BotApiServer, bot: Bot) -> None:
    html = "🗳️ <b>Vote</b> ouvert &amp; <a href='https://example.org/c/1'>détails</a>  \n"
    sent = await bot.send_message(14, html, parse_mode=ParseMode.HTML)
    assert sent.text == "🗳️ Vote ouvert & détails"  # trailing whitespace trimmed like Telegram
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [
        ("bold", 4, 4),
        ("text_link", 18, 7),
    ]
    assert [sent.parse_entity(e) for e in sent.entities] == ["Vote", "détails"]
    assert sent.entities[1].url == "https://example.org/c/1"
    (record,) = server.messages_to(14)
    assert record.text == html and record.parse_mode == "HTML"


async def test_reply_parameters(server: BotApiServer, bot: Bot) -> None:
    update_id = server.inject_message(13, "Ma proposition")
    asked = server.update(update_id)["message"]["message_id"]
    reply = await bot.send_message(13, "Merci !", reply_parameters=ReplyParameters(asked))
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.text == "Ma proposition"
    assert reply.message_id == asked + 1  # one message_id sequence per chat

    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await bot.send_message(13, "?", reply_parameters=ReplyParameters(999))
    lenient = ReplyParameters(999, allow_sending_without_reply=True)
    assert (await bot.send_message(13, "!", reply_parameters=lenient)).reply_to_message is None


async def test_edits(server: BotApiServer, bot: Bot) -> None:
    sent = await bot.send_message(12, "Question ?", reply_markup=keyboard("a"))
    edited = await bot.edit_message_text("Question close", chat_id=12, message_id=sent.message_id)
    assert isinstance(edited, object) and not isinstance(edited, bool)
    assert edited.text == "Question close" and edited.edit_date is not None
    assert edited.reply_markup is None  # editMessageText without a keyboard removes it

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text("Question close", chat_id=12, message_id=sent.message_id)
    await bot.edit_message_reply_markup(12, sent.message_id, reply_markup=keyboard("b"))
    current = server.message(12, sent.message_id)
    assert current is not None
    assert current["reply_markup"] == {
        "inline_keyboard": [[{"text": "Option b", "callback_data": "b"}]]
    }
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=12, message_id=99)

    user_message = server.update(server.inject_message(12, "Moi"))["message"]["message_id"]
    with pytest.raises(BadRequest, match=r"(?i)message can't be edited"):
        await bot.edit_message_text("x", chat_id=12, message_id=user_message)

    assert await bot.delete_message(12, sent.message_id)
    assert server.message(12, sent.message_id) is None
    assert [r.method for r in server.sent] == [
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
    ]
    assert len(server.edits_to(12)) == 2 and len(server.messages_to(12)) == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"text": ""}, "message text is empty"),
        ({"text": " \n "}, "message text is empty"),
        ({"text": "x" * 4097}, "message is too long"),
        ({"text": "<b>gras", "parse_mode": "HTML"}, 'corresponding to start tag "b"'),
        ({"text": "<b>gras</i>", "parse_mode": "HTML"}, "Unmatched end tag at byte offset 7"),
        ({"text": "1 < 2", "parse_mode": "HTML"}, 'Unsupported start tag "" at byte offset 2'),
        ({"text": "<p>para</p>", "parse_mode": "HTML"}, 'Unsupported start tag "p"'),
        ({"text": "Tom & Jerry", "parse_mode": "HTML"}, "can't parse entities: Character '&'"),
        ({"text": "Fin.", "parse_mode": "MarkdownV2"}, "Character '.' is reserved"),
        ({"text": "Choix", "reply_markup": keyboard("x" * 65)}, "BUTTON_DATA_INVALID"),
        ({"text": "Choix", "reply_markup": keyboard("é" * 33)}, "BUTTON_DATA_INVALID"),
        (
            {"text": "Choix", "reply_markup": {"inline_keyboard": [[{"text": "nu"}]]}},
            "Text buttons are unallowed in the inline keyboard",
        ),
        ({"text": "x", "parse_mode": "BBCode"}, "unsupported parse_mode"),
    ],
)
async def test_invalid_messages_are_rejected_like_telegram(
    server: BotApiServer, bot: Bot, kwargs: dict[str, Any], error: str
) -> None:
    # python-telegram-bot drops the "Bad Request: " prefix and capitalises what is left.
    with pytest.raises(BadRequest, match=r"(?i)" + re.escape(error)):
        await bot.send_message(11, **kwargs)
    assert server.messages_to(11) == []
    (call,) = server.calls("sendMessage")
    assert call.status == 400 and call.description is not None
    assert call.description.startswith("Bad Request: ")


async def test_limits_are_inclusive(bot: Bot) -> None:
    assert len((await bot.send_message(11, "x" * 4096)).text or "") == 4096
    await bot.send_message(11, "Choix", reply_markup=keyboard("x" * 64))
    await bot.send_message(11, "Tom &amp; Jerry &lt;3", parse_mode=ParseMode.HTML)


async def test_lenient_html_keeps_a_bare_ampersand_like_telegram() -> None:
    async with (
        BotApiServer(TOKEN, strict_html=False) as server,
        Bot(TOKEN, base_url=server.base_url) as bot,
    ):
        sent = await bot.send_message(1, "Tom & Jerry &amp", parse_mode=ParseMode.HTML)
    assert sent.text == "Tom & Jerry &"


async def test_send_document_stores_the_bytes_and_serves_them(
    server: BotApiServer, bot: Bot
) -> None:
    data = "nom;avis\nLéa;pour\n".encode()
    sent = await bot.send_document(
        15, data, filename="avis.csv", caption="<i>Export</i>", parse_mode=ParseMode.HTML
    )
    assert sent.document is not None
    assert (sent.document.file_name, sent.document.file_size) == ("avis.csv", len(data))
    assert sent.caption == "Export"
    assert [e.type for e in sent.caption_entities] == ["italic"]

    (record,) = server.messages_to(15)
    assert record.method == "sendDocument" and record.file is not None
    assert record.file.data == data
    assert (record.file.filename, record.file.mime_type) == ("avis.csv", "text/csv")

    downloaded = await (await bot.get_file(sent.document.file_id)).download_as_bytearray()
    assert bytes(downloaded) == data  # through base_file_url

    again = await bot.send_document(16, sent.document.file_id)  # by file_id, no upload
    assert again.document is not None and again.document.file_id == sent.document.file_id

    with pytest.raises(BadRequest, match=r"(?i)caption is too long"):
        await bot.send_document(15, data, filename="a.csv", caption="x" * 1025)


async def test_send_photo_knows_its_size(server: BotApiServer, bot: Bot) -> None:
    sent = await bot.send_photo(17, tiny_png(3, 2), caption="Carte")
    (size,) = sent.photo
    assert (size.width, size.height) == (3, 2)
    assert server.messages_to(17)[0].file is not None


async def test_user_files_can_be_injected_and_downloaded(server: BotApiServer, bot: Bot) -> None:
    upload = server.register_file(b"%PDF-1.4 ...", "avis.pdf")
    server.inject_message(18, None, document=upload.as_document(), caption="Mon avis")
    (update,) = await bot.get_updates()
    assert update.message is not None and update.message.document is not None
    assert update.message.caption == "Mon avis"
    file = await update.message.document.get_file()
    assert bytes(await file.download_as_bytearray()) == b"%PDF-1.4 ..."


# -- updates ----------------------------------------------------------------------------------


async def test_get_updates_redelivers_until_confirmed(server: BotApiServer, bot: Bot) -> None:
    first = server.inject_message(7, "/start campagne-1", first_name="Léa", username="lea")
    second = server.inject_message(7, "Bonjour")
    assert second == first + 1

    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [first, second]
    message = updates[0].message
    assert message is not None and message.from_user is not None
    assert (message.text, message.from_user.first_name, message.from_user.language_code) == (
        "/start campagne-1",
        "Léa",
        "fr",
    )
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 6)]

    # Not confirmed yet: delivered again, as often as asked.
    assert [u.update_id for u in await bot.get_updates()] == [first, second]
    assert [u.update_id for u in await bot.get_updates(limit=1)] == [first]

    # offset = first + 1 confirms the first one only.
    assert [u.update_id for u in await bot.get_updates(offset=first + 1)] == [second]
    assert server.is_confirmed(first) and not server.is_confirmed(second)
    assert [u.update_id for u in await bot.get_updates()] == [second]

    assert await bot.get_updates(offset=second + 1) == ()
    assert server.pending_updates == []


async def test_negative_offset_keeps_only_the_latest(server: BotApiServer, bot: Bot) -> None:
    ids = [server.inject_message(8, f"m{i}") for i in range(4)]
    assert [u.update_id for u in await bot.get_updates(offset=-2)] == ids[2:]
    assert [u.update_id for u in await bot.get_updates()] == ids[2:]


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    server: BotApiServer, bot: Bot
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    assert not poll.done()
    server.inject_message(7, "Bonjour")
    updates = await asyncio.wait_for(poll, 2)
    assert [u.message.text for u in updates if u.message] == ["Bonjour"]
    assert loop.time() - started < 1.0


async def test_long_poll_waits_the_whole_timeout_when_idle(bot: Bot) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await bot.get_updates(timeout=dtm.timedelta(seconds=0.3)) == ()
    assert 0.28 <= loop.time() - started < 2.0


async def test_a_second_poller_terminates_the_first(server: BotApiServer, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    async with Bot(TOKEN, base_url=server.base_url) as other_instance:
        second = asyncio.create_task(other_instance.get_updates(timeout=5))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await asyncio.wait_for(first, 2)
        server.inject_message(9, "pour qui ?")
        assert len(await asyncio.wait_for(second, 2)) == 1


async def test_callback_query_round_trip(server: BotApiServer, bot: Bot) -> None:
    sent = await bot.send_message(50, "Votez :", reply_markup=keyboard("v:1", "v:2"))
    update_id = server.inject_callback(50, "v:2", sent.message_id)
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None and query.message is not None
    assert (query.data, query.from_user.id, query.message.message_id) == ("v:2", 50, 1)
    assert query.message.chat.id == 50 and query.chat_instance
    assert query.id == server.callback_query_id(update_id)

    assert await query.answer("Merci !")
    answer = await server.wait_for_callback_answer(update_id)
    assert (answer.text, answer.show_alert) == ("Merci !", False)

    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await query.answer()  # a query is answered once

    again = server.inject_callback(50, "v:1", sent.message_id)
    # python-telegram-bot's .capitalize() turns "MESSAGE_TOO_LONG" into "Message_too_long".
    with pytest.raises(BadRequest, match=r"(?i)MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(server.callback_query_id(again), text="x" * 201)
    assert await bot.answer_callback_query(server.callback_query_id(again), text="x" * 200)


async def test_arbitrary_updates_parse_in_ptb(server: BotApiServer, bot: Bot) -> None:
    sticker = {
        "file_id": "CAACAgIAAxkBAAIB",
        "file_unique_id": "AgADsticker",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": "👍",
    }
    server.inject_message(60, None, sticker=sticker)
    typo = server.update(server.inject_message(60, "Proposiiton"))["message"]["message_id"]
    server.inject_message(60, "Proposition", edited=True, message_id=typo)
    user = {"id": 60, "is_bot": False, "first_name": "Camille"}
    server.inject_update(
        {
            "my_chat_member": {
                "chat": {"id": 60, "type": "private", "first_name": "Camille"},
                "from": user,
                "date": 1_750_000_000,
                "old_chat_member": {"status": "member", "user": server.bot_user},
                "new_chat_member": {"status": "kicked", "user": server.bot_user, "until_date": 0},
            }
        }
    )
    server.inject_update({"chat_member": {"chat": {"id": -100, "type": "group"}}})  # not asked

    updates = await bot.get_updates()
    assert len(updates) == 4
    assert updates[0].message is not None and updates[0].message.sticker is not None
    assert updates[0].message.sticker.emoji == "👍"
    assert updates[2].edited_message is not None
    assert updates[2].edited_message.text == "Proposition"
    assert updates[2].edited_message.message_id == typo
    assert updates[3].my_chat_member is not None
    assert updates[3].my_chat_member.new_chat_member.status == "kicked"


async def test_groups_chats_and_members(server: BotApiServer, bot: Bot) -> None:
    server.inject_message(
        5,
        "/start@parlons_test_bot",
        chat_id=-100123,
        chat_type="supergroup",
        chat_title="Quartier",
    )
    (update,) = await bot.get_updates()
    message = update.message
    assert message is not None and message.chat.type == "supergroup"
    assert message.chat.title == "Quartier"
    assert message.entities[0].length == len("/start@parlons_test_bot")

    chat = await bot.get_chat(-100123)
    assert (chat.id, chat.type, chat.title) == (-100123, "supergroup", "Quartier")
    member = await bot.get_chat_member(-100123, 5)
    assert member.status == "member" and member.user.first_name == "Camille"
    server.chat_members[(-100123, 5)] = {"status": "left", "user": member.user.to_dict()}
    assert (await bot.get_chat_member(-100123, 5)).status == "left"

    strict = BotApiServer(TOKEN, require_known_chats=True)
    async with strict, Bot(TOKEN, base_url=strict.base_url) as strict_bot:
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await strict_bot.send_message(777, "Bonjour")
        strict.add_chat(777)
        await strict_bot.send_message(777, "Bonjour")


# -- faults -----------------------------------------------------------------------------------


async def test_429_surfaces_as_retry_after(
    server: BotApiServer, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter.retry_after as a timedelta
    fault = server.fail_next("sendMessage", "429", retry_after=7)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(20, "Trop vite")
    assert caught.value.retry_after == dtm.timedelta(seconds=7)
    assert fault.hits == 1 and server.faults == []
    await bot.send_message(20, "Ça passe")  # only the next one failed
    assert [r.plain_text for r in server.messages_to(20)] == ["Ça passe"]
    assert server.stats.too_many_requests == 1 and server.stats.faults == 1


async def test_403_for_blocked_chats(server: BotApiServer, bot: Bot) -> None:
    server.block_chat(41)
    with pytest.raises(Forbidden, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(41, "Rappel")
    with pytest.raises(Forbidden):
        await bot.send_chat_action(41, "typing")
    await bot.send_message(42, "Ailleurs, ça passe")
    server.unblock_chat(41)
    await bot.send_message(41, "Rappel")

    server.fail_next(None, "403", count=None, chat_id=43)  # a predicate form, per chat
    for _ in range(2):
        with pytest.raises(Forbidden):
            await bot.send_message(43, "Rappel")
    await bot.send_message(44, "Rappel")
    assert server.stats.blocked == 2 and server.stats.faults == 2


async def test_5xx_and_timeouts(server: BotApiServer) -> None:
    request = HTTPXRequest(read_timeout=0.2)
    async with Bot(TOKEN, base_url=server.base_url, request=request) as bot:
        server.fail_next("sendMessage", "5xx")
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(30, "Bonjour")
        assert server.messages_to(30) == []

        # The call takes effect but the answer comes too late: the client cannot tell.
        server.fail_next("sendMessage", "timeout", delay=1.0)
        with pytest.raises(TimedOut):
            await bot.send_message(30, "Allô ?")
        assert [r.plain_text for r in server.messages_to(30)] == ["Allô ?"]

        server.fail_next("sendMessage", "timeout", delay=1.0, apply=False)
        with pytest.raises(TimedOut):
            await bot.send_message(30, "Perdu")
        assert len(server.messages_to(30)) == 1

        server.fail_next(
            "sendMessage",
            "error",
            when=lambda call: call.params.get("text") == "Ko",
            status=400,
            description="Bad Request: chat not found",
        )
        await bot.send_message(30, "Ok")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(30, "Ko")


async def test_rate_limits_per_chat_and_group(
    server: BotApiServer, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    server.rate_limits = RateLimits(per_chat_per_s=1, per_chat_burst=1, per_group_per_min=2)
    await bot.send_message(21, "un")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(21, "deux")
    assert caught.value.retry_after == dtm.timedelta(seconds=1)
    await bot.send_message(22, "un autre chat")

    await bot.send_message(-100777, "groupe 1")
    await bot.send_message(-100777, "groupe 2")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(-100777, "groupe 3")
    retry_after = caught.value.retry_after
    assert isinstance(retry_after, dtm.timedelta)
    assert dtm.timedelta(seconds=55) <= retry_after <= dtm.timedelta(seconds=60)
    assert server.stats.rate_limited == 2 and server.stats.too_many_requests == 2
    assert len(server.sent) == 4


async def test_rate_limits_global_with_compressed_time(
    server: BotApiServer, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # or RetryAfter() itself warns
    limits = RateLimits(global_per_s=3, time_scale=2)  # a Telegram second lasts 0.5 s
    server.rate_limits = limits
    for chat_id in (31, 32, 33):
        await bot.send_message(chat_id, "annonce")
    with pytest.raises(RetryAfter):
        await bot.send_message(34, "annonce")
    await asyncio.sleep(limits.real_seconds(1) + 0.05)
    await bot.send_message(34, "annonce")
    assert server.stats.rate_limited == 1
    assert len(server.sent) == 4


# -- commands, webhook, application --------------------------------------------------------


async def test_commands_by_scope_and_language(server: BotApiServer, bot: Bot) -> None:
    assert await bot.set_my_commands(
        [BotCommand("start", "Commencer"), BotCommand("aide", "Obtenir de l'aide")],
        language_code="fr",
    )
    assert await bot.set_my_commands(
        [BotCommand("start", "Start")], scope=BotCommandScopeAllPrivateChats(), language_code="en"
    )
    assert [c.command for c in await bot.get_my_commands(language_code="fr")] == ["start", "aide"]
    assert await bot.get_my_commands() == ()
    assert server.get_commands("all_private_chats", "en") == [
        {"command": "start", "description": "Start"}
    ]
    assert set(server.commands) == {("default", "fr"), ("all_private_chats", "en")}

    assert await bot.delete_my_commands(language_code="fr")
    assert server.get_commands("default", "fr") == []
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand("Start!", "x")])
    assert await bot.set_chat_menu_button()


async def test_webhook_delivery_with_secret_and_retries(server: BotApiServer, bot: Bot) -> None:
    received: list[tuple[str | None, dict[str, Any]]] = []
    statuses = iter([500, 200, 200])

    async def hook(request: web.Request) -> web.Response:
        received.append(
            (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
        )
        return web.Response(status=next(statuses))

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    server.webhook_retry_delay = 0.05
    try:
        assert await bot.set_webhook(f"http://127.0.0.1:{port}/hook", secret_token="s3cret")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        update_id = server.inject_message(9, "par webhook")
        await server.wait_confirmed(update_id)
        assert [(secret, body["update_id"]) for secret, body in received] == [
            ("s3cret", update_id),
            ("s3cret", update_id),  # retried after the 500
        ]
        assert Update.de_json(received[0][1], bot).message.text == "par webhook"  # type: ignore[union-attr]
        info = await bot.get_webhook_info()
        assert info.url.endswith("/hook") and info.pending_update_count == 0
        assert info.last_error_message is not None and "500" in info.last_error_message
        assert [d.status for d in server.webhook_deliveries] == [500, 200]

        assert await bot.delete_webhook()
        server.inject_message(9, "par polling")
        (update,) = await bot.get_updates()
        assert update.message is not None and update.message.text == "par polling"
    finally:
        await runner.cleanup()


async def test_application_with_polling_end_to_end(server: BotApiServer) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "Bienvenue !", reply_markup=keyboard("vote:1", "vote:2")
        )

    async def vote(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer("Vote enregistré")
        await update.callback_query.edit_message_text("Merci pour votre vote.")

    app = (
        Application.builder()
        .token(TOKEN)
        .base_url(server.base_url)
        .base_file_url(server.base_file_url)
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(vote))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=5))
        await app.start()
        try:
            start_id = server.inject_message(42, "/start", first_name="Léa")
            (welcome,) = await server.wait_for_messages(42, 1)
            assert welcome.plain_text == "Bienvenue !"
            assert welcome.callback_data == ["vote:1", "vote:2"]

            click = server.inject_callback(42, "vote:2", welcome.message_id or 0)
            answer = await server.wait_for_callback_answer(click)
            assert answer.text == "Vote enregistré"
            edit = await server.wait_for(lambda r: r.is_edit)
            assert edit.plain_text == "Merci pour votre vote." and edit.reply_markup is None
        finally:
            await app.updater.stop()
            await app.stop()
    # The updater's last getUpdates confirmed everything it had fetched.
    assert server.is_confirmed(start_id) and server.is_confirmed(click)


async def test_standalone_process_with_control_api() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.bot_api_server",
        "--port",
        "0",
        "--token",
        TOKEN,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        control = f"http://127.0.0.1:{ready['port']}/_test"
        async with Bot(TOKEN, base_url=ready["base_url"]) as bot, aiohttp.ClientSession() as http:
            assert bot.username == "parlons_test_bot"
            async with http.post(
                f"{control}/inject_message", json={"user_id": 3, "text": "/start"}
            ) as response:
                update_id = (await response.json())["result"]["update_id"]
            (update,) = await bot.get_updates()
            assert update.update_id == update_id
            await bot.send_message(3, "Salut")
            async with http.get(f"{control}/sent") as response:
                sent = (await response.json())["result"]
            assert [(r["chat_id"], r["message"]["text"]) for r in sent] == [(3, "Salut")]
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0


async def test_restart_keeps_port_and_state(server: BotApiServer, bot: Bot) -> None:
    port = server.port
    update_id = server.inject_message(5, "avant la panne")
    await server.stop()
    with pytest.raises(NetworkError):
        await bot.get_updates()
    await server.start()
    assert server.port == port
    (update,) = await bot.get_updates()
    assert update.update_id == update_id


# -- the parsers on their own (cases from tdlib's test suite) -------------------------------


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("➡️ ➡️<b>➡️ ➡️</b>", "➡️ ➡️➡️ ➡️", [("bold", 5, 5)]),
        ("<i>a</>", "a", [("italic", 0, 1)]),
        (
            "<span class='tg-spoiler'>s</span><tg-spoiler>t</tg-spoiler>",
            "st",
            [("spoiler", 0, 1), ("spoiler", 1, 1)],
        ),
        ('<pre><code class="language-fift">x&lt;</code></pre>', "x<", [("pre", 0, 2)]),
        ("<blockquote expandable>a</blockquote>", "a", [("expandable_blockquote", 0, 1)]),
        ("<a href=telegram.org>t</a>", "t", [("text_link", 0, 1)]),
        ("&#128512;<u>x</u>", "😀x", [("underline", 2, 1)]),
    ],
)
def test_parse_html(html: str, text: str, entities: list[tuple[str, int, int]]) -> None:
    parsed_text, parsed = parse_html(html)
    assert parsed_text == text
    assert [(e["type"], e["offset"], e["length"]) for e in parsed] == entities


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("🏟 🏟&lt;<abacaba", "Unclosed start tag at byte offset 13"),
        ("🏟 🏟&lt;<abac>", 'Unsupported start tag "abac" at byte offset 13'),
        ("🏟 🏟&lt;<i   =aba>", 'Empty attribute name in the tag "i" at byte offset 13'),
        ("🏟 🏟&lt;</", "Unexpected end tag at byte offset 13"),
        ("🏟 🏟&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
        (
            "🏟 🏟&lt;<i>a</em   >",
            'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"',
        ),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("&ge;", "Character '&' at byte offset 0"),
    ],
)
def test_parse_html_errors(html: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(html)
    assert str(caught.value).startswith(error)


def test_parse_html_lenient_ampersand() -> None:
    assert parse_html("&ge;&lt;&amp &Or;", strict=False) == ("&ge;<& &Or;", [])


@pytest.mark.parametrize(
    ("markdown", "text", "entities"),
    [
        ("🏟 🏟_abac \\* asd _", "🏟 🏟abac * asd ", [("italic", 5, 11)]),
        ("||test||", "test", [("spoiler", 0, 4)]),
        ("🏟 🏟```🏟\n🏟```", "🏟 🏟🏟", [("pre", 5, 2)]),
        ("abc\n> \n> \n>\ndef", "abc\n \n \n\ndef", [("blockquote", 4, 5)]),
        ("[telegram\\.org](https://telegram.dog)", "telegram.org", [("text_link", 0, 12)]),
        ("*gras __souligné__*", "gras souligné", [("bold", 0, 13), ("underline", 5, 8)]),
    ],
)
def test_parse_markdown_v2(markdown: str, text: str, entities: list[tuple[str, int, int]]) -> None:
    parsed_text, parsed = parse_markdown_v2(markdown)
    assert parsed_text == text
    assert [(e["type"], e["offset"], e["length"]) for e in parsed] == entities


@pytest.mark.parametrize(
    ("markdown", "error"),
    [
        ("🏟 🏟_abacaba", "Can't find end of Italic entity at byte offset 9"),
        ("🏟 🏟_abac * asd ", "Can't find end of Bold entity at byte offset 15"),
        ("🏟 🏟```a ", "Can't find end of PreCode entity at byte offset 9"),
        ("[telegram\\.org](asd\\)", "Can't find end of a URL at byte offset 16"),
        ("🏟 🏟!", "Character '!' is reserved and must be escaped with the preceding '\\'"),
        ("a-b", "Character '-' is reserved"),
    ],
)
def test_parse_markdown_v2_errors(markdown: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_markdown_v2(markdown)
    assert str(caught.value).startswith(error)
