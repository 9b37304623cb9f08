"""TelegramChannel.send on its own, with the real python-telegram-bot against the Bot API test
server: attachments, captions, errors and their outcomes, a group moved to a supergroup, and
the spacing of messages in groups."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot

from adapters.telegram.channel import TelegramChannel
from bot.channels import Pace, PermanentFailure, RetryAfter, TemporaryFailure, Unreachable
from bot.messages import Attachment, Button, OutboundMessage, RichText, b
from tests.support.bot_api_server import ApiCall, ApiError, BotApiServer

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a4ba0000000049454e44ae426082"
)


@pytest.fixture
async def server() -> AsyncIterator[BotApiServer]:
    async with BotApiServer(bot_username="parlons_test_bot") as running:
        yield running


@pytest.fixture
async def channel(server: BotApiServer) -> AsyncIterator[TelegramChannel]:
    bot = Bot(server.token, base_url=server.base_url, base_file_url=server.base_file_url)
    async with bot:
        yield TelegramChannel(bot, Pace(per_group_per_minute=240))


async def test_images_go_as_photos_and_files_as_documents_with_their_caption(server, channel):
    chart = OutboundMessage(
        "42",
        RichText().p(b("Résultats"), " <final>"),
        keyboard=((Button("Menu", "menu"),),),
        attachment=Attachment("results.png", "image/png", PNG, caption="Graphique"),
    )
    sent = await channel.send(chart, key="out-1")
    (photo,) = server.sent
    assert photo.method == "sendPhoto" and sent.message_id == str(photo.message_id)
    assert photo.file is not None and photo.file.data == PNG
    assert photo.plain_text == "Résultats <final>\n\nGraphique"
    assert photo.callback_data == ["menu"]
    export = OutboundMessage(
        "42", RichText().p("Export"), attachment=Attachment("ideas.csv", "text/csv", b"id;text\n")
    )
    await channel.send(export, key="out-2")
    assert server.sent[-1].method == "sendDocument"
    assert server.sent[-1].file.filename == "ideas.csv"


async def test_a_text_too_long_for_a_caption_goes_first(server, channel):
    long = RichText().paragraphs("\n\n".join(["Un paragraphe assez long. " * 20] * 3))
    message = OutboundMessage(
        "42",
        long,
        keyboard=((Button("Menu", "menu"),),),
        attachment=Attachment("r.pdf", "application/pdf", b"%PDF-1.4", caption="Le rapport"),
    )
    await channel.send(message, key="out-3")
    assert [r.method for r in server.sent] == ["sendMessage", "sendDocument"]
    assert server.sent[1].plain_text == "Le rapport" and server.sent[1].callback_data == ["menu"]


async def test_a_notice_without_a_query_to_answer_becomes_a_message(server, channel):
    await channel.send(OutboundMessage("42", notice="Soutien enregistré"), key="out-4")
    assert server.sent[-1].plain_text == "Soutien enregistré"


def _error(status: int, description: str) -> dict[str, object]:
    return {"kind": "error", "status": status, "description": description}


@pytest.mark.parametrize(
    "fault, outcome",
    [
        ({"kind": "429", "retry_after": 7}, RetryAfter),
        ({"kind": "403"}, Unreachable),
        (_error(400, "Bad Request: chat not found"), Unreachable),
        (_error(403, "Forbidden: user is deactivated"), Unreachable),
        ({"kind": "5xx", "status": 503}, TemporaryFailure),
        (_error(400, "Bad Request: BUTTON_DATA_INVALID"), PermanentFailure),
    ],
)
async def test_errors_become_the_cores_outcomes(server, channel, fault, outcome):
    server.fail_next("sendMessage", **fault)
    with pytest.raises(outcome) as raised:
        await channel.send(OutboundMessage("42", RichText().p("x")), key="out-5")
    if outcome is RetryAfter:
        assert raised.value.seconds == 7


async def test_a_group_upgraded_to_a_supergroup_is_followed(server, channel):
    original = server._handlers["sendmessage"][1]

    async def migrating(call: ApiCall) -> object:
        if str(call.params.get("chat_id")) == "-500":
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": -1000000000500},
            )
        return await original(call)

    server.add_method("sendMessage", migrating)
    await channel.send(OutboundMessage("-500", RichText().p("Bonjour")), key="out-6")
    assert [r.chat_id for r in server.sent] == [-1000000000500]


async def test_messages_to_one_group_are_spaced(server, channel):
    """Telegram allows about 20 messages a minute in a group (here 240, to keep the test short):
    after a small burst, the delivery runtime's lane spaces them (the channel tells groups
    apart); private chats are not held back by the group's spacing."""
    from bot.delivery import AccountPacer, Job, Lanes, PriorityGate

    lanes = Lanes(
        channel,
        AccountPacer(1000.0),
        PriorityGate(16),
        chat_interval=0.0,
        group_interval=60 / 240,
        group_burst=3.0,
    )
    done: list[str] = []
    for n in range(6):
        message = OutboundMessage("-100777", RichText().p(f"m{n}"))
        group = channel.is_group_chat(message.chat_id)
        lanes.submit(
            Job(message.chat_id, message, f"g{n}", lambda j, _o: done.append(j.key), group=group)
        )
    for n in range(5):
        message = OutboundMessage(str(9000 + n), RichText().p("x"))
        group = channel.is_group_chat(message.chat_id)
        lanes.submit(
            Job(message.chat_id, message, f"p{n}", lambda j, _o: done.append(j.key), group=group)
        )
    await lanes.drain()
    stamps = [r.time for r in server.sent if r.chat_id == -100777]
    assert len(stamps) == 6
    assert stamps[-1] - stamps[0] >= 3 * (60 / 240) * 0.9  # 3 after the burst of 3, 0.25 s apart
    private = [r.time for r in server.sent if r.chat_id != -100777]
    assert len(private) == 5 and max(private) < stamps[3]  # not behind the group's spacing
