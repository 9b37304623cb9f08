"""Matrix translation in and out, without a homeserver: events → portable events, portable
messages → event contents (notices with HTML, splitting, replies), error responses → outcomes."""

from __future__ import annotations

import json

import nio
import pytest

from adapters.matrix.channel import capabilities, outcome
from adapters.matrix.render import MAX_EVENT_BYTES, contents, html_of, split
from adapters.matrix.service import Backoff, newly_joined_cut, observed_kind, sync_filter
from adapters.matrix.translate import (
    Bot,
    Room,
    strip_reply_fallback,
    translate,
    translate_redaction,
    undecryptable,
)
from bot.channels import PermanentFailure, RetryAfter, TemporaryFailure, Unreachable
from bot.messages import (
    ChatType,
    CommandMessage,
    MessageRef,
    OutboundMessage,
    ReactionAdded,
    RichText,
    TextMessage,
    Unsupported,
    b,
)

BOT = Bot("@parlons:example.org", "Parlons")
DM = Room("!dm:example.org", ChatType.PRIVATE, lambda user: "Alice")
GROUP = Room("!group:example.org", ChatType.GROUP)


def message(body: str, **content: object) -> dict:
    return {
        "type": "m.room.message",
        "event_id": "$e1",
        "sender": "@alice:example.org",
        "origin_server_ts": 1,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def test_text_and_commands() -> None:
    event = translate(message("Bonjour"), DM, BOT)
    assert event is not None and event.payload == TextMessage("Bonjour")
    ctx = event.context
    assert (ctx.platform, ctx.chat_id, ctx.user_id, ctx.event_id) == (
        "matrix",
        "!dm:example.org",
        "@alice:example.org",
        "$e1",
    )
    assert ctx.display_name == "Alice" and ctx.chat_type == ChatType.PRIVATE
    for body in (
        "/support 3",
        "!support 3",
        "Parlons: /support 3",
        "@parlons:example.org !support 3",
    ):
        event = translate(message(body), DM, BOT)
        assert event is not None
        assert event.payload == CommandMessage("support", ("3",), "3"), body
    # "!" followed by something else is text; a command for another bot is not ours.
    assert translate(message("!!! super"), DM, BOT).payload == TextMessage("!!! super")  # type: ignore[union-attr]
    assert isinstance(translate(message("/start@otherbot"), DM, BOT).payload, TextMessage)  # type: ignore[union-attr]


def test_reply_strips_the_fallback_and_points_at_the_message() -> None:
    body = "> <@parlons:example.org> #1 · 👍 0\n> Une idée\n\nJe suis d'accord"
    event = translate(
        message(body, **{"m.relates_to": {"m.in_reply_to": {"event_id": "$idea"}}}), DM, BOT
    )
    assert event is not None
    assert event.payload == TextMessage(
        "Je suis d'accord", reply_to=MessageRef("!dm:example.org", "$idea")
    )
    assert strip_reply_fallback("no fallback\n> quoted later") == "no fallback\n> quoted later"
    # A thread's fallback reply is not a reply.
    thread = {
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": "$root",
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": "$last"},
        }
    }
    event = translate(message("dans le fil", **thread), DM, BOT)
    assert event is not None and event.payload == TextMessage("dans le fil")


def test_ignored_events() -> None:
    assert translate({**message("x"), "sender": BOT.user_id}, DM, BOT) is None  # our own
    assert translate(message("bot talk", msgtype="m.notice"), DM, BOT) is None  # other bots
    member = {
        "type": "m.room.member",
        "state_key": "@alice:example.org",
        "event_id": "$m",
        "sender": "@alice:example.org",
        "content": {"membership": "join"},
    }
    assert translate(member, DM, BOT) is None
    redacted = {**message("x"), "content": {}}
    assert translate(redacted, DM, BOT) is None
    assert translate({**message("x"), "type": "m.call.invite"}, DM, BOT) is None


def test_unsupported_in_private_ignored_in_groups() -> None:
    image = message("photo.jpg", msgtype="m.image", url="mxc://a/b")
    assert translate(image, DM, BOT).payload == Unsupported("image")  # type: ignore[union-attr]
    assert translate(image, GROUP, BOT) is None
    sticker = {**message("x"), "type": "m.sticker", "content": {"body": "s", "url": "mxc://s"}}
    assert translate(sticker, DM, BOT).payload == Unsupported("sticker")  # type: ignore[union-attr]
    edit = message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e0"}})
    assert translate(edit, DM, BOT).payload == Unsupported("edit")  # type: ignore[union-attr]
    assert translate(edit, GROUP, BOT) is None
    assert undecryptable(message("x"), DM).payload == Unsupported("undecryptable")


def test_reactions_and_their_redaction() -> None:
    reaction = {
        "type": "m.reaction",
        "event_id": "$r",
        "sender": "@alice:example.org",
        "content": {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": "$idea", "key": "👍"}
        },
    }
    added = translate(reaction, DM, BOT)
    assert added is not None
    assert added.payload == ReactionAdded(MessageRef("!dm:example.org", "$idea"), "👍")
    redaction = {
        "type": "m.room.redaction",
        "event_id": "$x",
        "sender": "@alice:example.org",
        "redacts": "$r",
        "content": {},
    }
    removed = translate_redaction(redaction, DM, BOT, added)
    assert removed is not None and removed.context.event_id == "$x"
    assert removed.payload == ReactionAdded(
        MessageRef("!dm:example.org", "$idea"), "👍", removed=True
    )
    # Room version 11 puts "redacts" in the content.
    v11 = {**redaction, "content": {"redacts": "$r"}}
    del v11["redacts"]
    from adapters.matrix.translate import redacted_event_id

    assert redacted_event_id(v11) == "$r"
    # Someone else redacting Alice's reaction (a room moderator) does not withdraw her support.
    assert translate_redaction({**redaction, "sender": "@mod:example.org"}, DM, BOT, added) is None
    assert translate_redaction(redaction, DM, BOT, None) is None
    text = translate(message("x"), DM, BOT)
    assert translate_redaction(redaction, DM, BOT, text) is None


def test_rendering_a_notice_with_html_lists_and_escaping() -> None:
    rt = (
        RichText()
        .h("Titre")
        .p("Texte <b>pas gras</b> & ", b("gras"))
        .opt(b("[1]"), " Participer")
        .opt(b("[2]"), " Idées")
        .p("fin")
    )
    [content] = contents(OutboundMessage("!dm:example.org", rt))
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"] == (
        "<h4>Titre</h4><p>Texte &lt;b&gt;pas gras&lt;/b&gt; &amp; <b>gras</b></p>"
        "<ul><li><b>[1]</b> Participer</li><li><b>[2]</b> Idées</li></ul><p>fin</p>"
    )
    assert "Texte <b>pas gras</b> & gras" in content["body"]
    assert html_of(RichText().li("a")) == "<ul><li>a</li></ul>"


def test_reply_to_and_lone_notice() -> None:
    reply = OutboundMessage(
        "!dm:example.org", RichText().p("ok"), reply_to=MessageRef("!dm:example.org", "$q")
    )
    assert contents(reply)[0]["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    [content] = contents(OutboundMessage("!dm:example.org", notice="Soutien enregistré"))
    assert content["body"] == "Soutien enregistré"
    assert contents(OutboundMessage("!dm:example.org")) == []


def test_long_messages_are_split_between_blocks() -> None:
    rt = RichText()
    for n in range(400):
        rt = rt.p(f"Paragraphe {n} " + "é" * 100)
    parts = split(rt)
    assert len(parts) > 1
    assert sum(len(p.blocks) for p in parts) == 400
    for part in parts:
        size = len(
            json.dumps(contents(OutboundMessage("!r", part))[0], ensure_ascii=False).encode()
        )
        assert size <= MAX_EVENT_BYTES
    huge = RichText().p("x" * 200_000)
    pieces = split(huge)
    assert "".join(s.text for p in pieces for blk in p.blocks for s in blk.spans) == "x" * 200_000


def test_error_responses_become_channel_outcomes() -> None:
    def error(code: str | None, status: int, retry: int | None = None) -> nio.RoomSendError:
        response = nio.RoomSendError("boom", code, retry)
        response.transport_response = type("T", (), {"status": status})()  # type: ignore[assignment]
        return response

    throttled = outcome(error("M_LIMIT_EXCEEDED", 429, 2500), "send")
    assert isinstance(throttled, RetryAfter) and throttled.seconds == 2.5
    assert isinstance(outcome(error("M_FORBIDDEN", 403), "send"), Unreachable)
    assert isinstance(outcome(error(None, 502), "send"), TemporaryFailure)
    assert isinstance(outcome(error("M_TOO_LARGE", 413), "send"), PermanentFailure)


def test_capabilities_and_sync_filter() -> None:
    caps = capabilities("@parlons:example.org")
    assert not caps.buttons and not caps.edits and caps.max_length < 65_536
    assert caps.deep_link == "https://matrix.to/#/@parlons:example.org"
    room_filter = sync_filter(20)["room"]
    assert room_filter["timeline"]["limit"] == 20
    assert room_filter["state"]["lazy_load_members"] is True


def test_room_kinds() -> None:
    """From the homeserver's member counts (joined + invited) and the join rule; nio's member
    list is lazy-loaded (after a restart it holds only recent senders): never a count."""
    room = nio.MatrixRoom("!r:x", "@parlons:x")
    room.add_member("@parlons:x", "Parlons", None)
    room.add_member("@alice:x", "Alice", None)
    assert observed_kind(room) is None  # no summary: unknown (the adapter treats it as a group)
    assert observed_kind(None) is None
    room.update_summary(nio.RoomSummary(joined_member_count=2, invited_member_count=0))
    assert observed_kind(room) == (ChatType.PRIVATE, 2)
    room.update_summary(nio.RoomSummary(joined_member_count=2, invited_member_count=1))
    assert observed_kind(room) == (ChatType.GROUP, 3)
    room.update_summary(nio.RoomSummary(joined_member_count=1, invited_member_count=0))
    assert observed_kind(room) == (ChatType.PRIVATE, 1)
    for rule in ("public", "knock", "restricted"):
        public = nio.MatrixRoom("!p:x", "@parlons:x")
        public.join_rule = rule
        assert observed_kind(public) == (ChatType.GROUP, None), rule


def _member(idx: int, membership: str, prev: str | None = None) -> object:
    source = {
        "type": "m.room.member",
        "state_key": "@parlons:x",
        "event_id": f"$m{idx}",
        "content": {"membership": membership},
        "unsigned": {"prev_content": {"membership": prev}} if prev else {},
    }
    return type("E", (), {"source": source})()


def test_history_before_the_invitation_is_skipped() -> None:
    msg = type("E", (), {"source": message("old")})()
    timeline = [msg, _member(1, "invite"), msg, _member(2, "join", "invite")]
    assert newly_joined_cut(timeline, "@parlons:x") == (1, False)
    # The invitation fell out of a limited timeline: cut at the join, and say it is missing.
    assert newly_joined_cut([msg, _member(2, "join", "invite")], "@parlons:x") == (1, True)
    assert newly_joined_cut([msg, _member(2, "join")], "@parlons:x") == (1, False)
    assert newly_joined_cut([msg, _member(3, "join", "join")], "@parlons:x") == (None, False)
    assert newly_joined_cut([msg], "@parlons:x") == (None, False)


def _fresh(failures: int) -> float:
    backoff = Backoff(base=0.5, cap=60)
    backoff.failures = failures
    return backoff.next()


@pytest.mark.parametrize("failures", [0, 3, 20])
def test_backoff_has_jitter_and_a_cap(failures: int) -> None:
    delays = [_fresh(failures) for _ in range(20)]
    ceiling = min(60, 0.5 * 2**failures)
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered
    backoff = Backoff(base=0.5, cap=60)
    backoff.next(), backoff.next()
    backoff.reset()
    assert backoff.next() <= 0.5
