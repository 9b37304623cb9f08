"""Raw Bot API updates → portable events (adapters.telegram.translate), including the updates
Telegram may send that the bot ignores. These are the Bot API's own JSON shapes; the end-to-end
tests send the same through the test server."""

from __future__ import annotations

import pytest

from adapters.telegram.translate import MAX_FILE_BYTES, PendingDocument, translate
from bot.messages import (
    ActionPressed,
    ChatType,
    CommandMessage,
    FileReceived,
    InboundEvent,
    MessageRef,
    TextMessage,
    Unsupported,
)

BOT = "parlons_bot"
USER = {"id": 42, "is_bot": False, "first_name": "Camille", "last_name": "Dupont",
        "language_code": "en-GB"}  # fmt: skip
PRIVATE = {"id": 42, "type": "private", "first_name": "Camille"}
GROUP = {"id": -1001234, "type": "supergroup", "title": "Quartier"}


def message(text: str | None = None, chat: dict = PRIVATE, **extra: object) -> dict:
    body: dict = {"message_id": 7, "from": USER, "chat": chat, "date": 1700000000, **extra}
    if text is not None:
        body["text"] = text
    return {"update_id": 500, "message": body}


def event(update: dict) -> InboundEvent:
    result = translate(update, BOT)
    assert isinstance(result, InboundEvent), result
    return result


def test_text_message_context():
    ev = event(message("Bonjour"))
    assert ev.payload == TextMessage("Bonjour")
    ctx = ev.context
    assert (ctx.platform, ctx.chat_id, ctx.user_id) == ("telegram", "42", "42")
    # A stable key, not the update_id (which restarts at random after a week idle).
    assert ctx.event_id == "msg:42:7"
    assert ctx.display_name == "Camille Dupont"
    assert ctx.language == "en-GB"
    assert ctx.chat_type == ChatType.PRIVATE
    assert ctx.raw is not None and ctx.raw["update_id"] == 500


def test_commands_strip_the_bot_name_and_ignore_other_bots():
    assert event(message("/start ville-intelligente-affiche")).payload == CommandMessage(
        "start", ("ville-intelligente-affiche",), "ville-intelligente-affiche"
    )
    assert event(message(f"/stats@{BOT}", GROUP)).payload == CommandMessage("stats")
    assert event(message("/Stats@Parlons_Bot", GROUP)).payload == CommandMessage("stats")
    assert translate(message("/stats@other_bot", GROUP), BOT) is None
    # Not a command name: plain text (the core answers what it can).
    assert event(message("/ bonjour")).payload == TextMessage("/ bonjour")


def test_group_chat_type_and_reply():
    ev = event(message("Bravo", GROUP, reply_to_message={"message_id": 3, "chat": GROUP}))
    assert ev.context.chat_type == ChatType.GROUP
    assert ev.context.event_id == "msg:-1001234:7"
    assert ev.payload == TextMessage("Bravo", reply_to=MessageRef("-1001234", "3"))


def test_callback_query_carries_its_query_and_message():
    update = {
        "update_id": 501,
        "callback_query": {
            "id": "4382bfdwdsb323b2d9",
            "from": USER,
            "chat_instance": "-1",
            "data": "sup:12",
            "message": {"message_id": 55, "chat": PRIVATE, "date": 1700000000, "text": "x"},
        },
    }
    ev = event(update)
    assert ev.payload == ActionPressed("sup:12", query_id="4382bfdwdsb323b2d9")
    assert ev.context.event_id == "cb:4382bfdwdsb323b2d9"
    assert ev.context.message == MessageRef("42", "55")
    # Inline-mode buttons (no message) and game callbacks (no data) are ignored.
    inline = {"update_id": 502, "callback_query": {**update["callback_query"], "message": None}}
    inline["callback_query"].pop("message")
    inline["callback_query"]["inline_message_id"] = "AAA"
    assert translate(inline, BOT) is None
    game = {"update_id": 503, "callback_query": {**update["callback_query"], "data": None}}
    assert translate(game, BOT) is None


@pytest.mark.parametrize(
    "kind, value",
    [
        ("sticker", {"file_id": "S", "type": "regular", "width": 1, "height": 1}),
        ("photo", [{"file_id": "P", "file_unique_id": "p", "width": 1, "height": 1}]),
        ("voice", {"file_id": "V", "file_unique_id": "v", "duration": 3}),
        ("location", {"latitude": 48.85, "longitude": 2.35}),
        ("poll", {"id": "1", "question": "?", "options": []}),
    ],
)
def test_unsupported_content_in_private_chats(kind, value):
    assert event(message(**{kind: value})).payload == Unsupported(kind)
    # In groups (privacy mode) it is ignored.
    assert translate(message(chat=GROUP, **{kind: value}), BOT) is None


def test_forwarded_text_is_not_taken_as_the_citizens_words():
    origin = {"type": "user", "date": 1, "sender_user": {"id": 9, "is_bot": False,
                                                         "first_name": "X"}}  # fmt: skip
    assert event(message("Un texte", forward_origin=origin)).payload == Unsupported("forward")


def test_documents_are_downloaded_first_and_limited():
    doc = {"file_id": "D1", "file_unique_id": "d", "file_name": "c.yaml",
           "mime_type": "application/yaml", "file_size": 120}  # fmt: skip
    pending = translate(message(document=doc), BOT)
    assert isinstance(pending, PendingDocument)
    assert pending.file_id == "D1"
    done = pending.complete(b"slug: x\n")
    assert done.payload == FileReceived("c.yaml", "application/yaml", b"slug: x\n")
    assert pending.complete(b"x" * (MAX_FILE_BYTES + 1)).payload == Unsupported("document")
    big = {**doc, "file_size": MAX_FILE_BYTES + 1}
    assert event(message(document=big)).payload == Unsupported("document")


def test_edits_are_answered_in_private_and_ignored_in_groups():
    body = {"message_id": 7, "from": USER, "chat": PRIVATE, "date": 1, "edit_date": 5,
            "text": "corrigé"}  # fmt: skip
    ev = event({"update_id": 504, "edited_message": body})
    assert ev.payload == Unsupported("edit")
    assert ev.context.event_id == "edit:42:7:5"
    assert translate({"update_id": 505, "edited_message": {**body, "chat": GROUP}}, BOT) is None


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 1, "channel_post": {"message_id": 1, "chat": {"id": -100, "type":
                                          "channel"}, "date": 1, "text": "/start"}},
        {"update_id": 2, "edited_channel_post": {"message_id": 1, "chat": {"id": -100},
                                                 "date": 1, "text": "x"}},
        {"update_id": 3, "my_chat_member": {"chat": PRIVATE, "from": USER, "date": 1,
                                            "old_chat_member": {}, "new_chat_member": {}}},
        {"update_id": 4, "inline_query": {"id": "1", "from": USER, "query": "", "offset": ""}},
        {"update_id": 5, "poll": {"id": "1"}},
        {"update_id": 6},
        # Service messages: members joining, the bot added to a group.
        message(chat=GROUP, new_chat_members=[USER]),
        message(chat=GROUP, group_chat_created=True),
        # Bots, anonymous admins and linked channels.
        {"update_id": 7, "message": {"message_id": 1, "from": {**USER, "is_bot": True},
                                     "chat": PRIVATE, "date": 1, "text": "/start"}},
        message("/start", GROUP, sender_chat={"id": -1001234, "type": "supergroup"}),
        message("x", GROUP, is_automatic_forward=True),
        # Malformed.
        {"update_id": 8, "message": {"text": "no chat"}},
        {"update_id": 9, "callback_query": "nonsense"},
    ],
)  # fmt: skip
def test_ignored_updates(update):
    assert translate(update, BOT) is None
