"""Unit tests of the core's pure parts: the day rule, phases, the action codec, rendering and
escaping, message serialisation, command parsing, locale negotiation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.actions import MAX_BYTES, Action, ActionCodecError, pack, parse
from bot.consultation_file import load_consultation_file
from bot.domain import PERMISSIONS, ConsultationInfo, Phase, consultation_days
from bot.i18n import negotiate
from bot.messages import (
    ActionPressed,
    Attachment,
    Button,
    ChatType,
    CommandMessage,
    EventContext,
    FileReceived,
    InboundEvent,
    MessageRef,
    OutboundMessage,
    ReactionAdded,
    RichText,
    TextMessage,
    Unsupported,
    b,
    link,
    parse_command,
    render_html,
    render_plain,
)
from tests.conftest import SEED

PARIS = ZoneInfo("Europe/Paris")


def test_the_seed_consultation_lasted_553_days():
    doc = load_consultation_file(SEED)
    after = doc.closes_at_utc + timedelta(days=400)
    assert consultation_days(doc.opens_at_utc, doc.closes_at_utc, after) == 553


@pytest.mark.parametrize(
    ("now", "days"),
    [
        (datetime(2018, 2, 23, 9, 59, tzinfo=PARIS), 0),  # not open yet
        (datetime(2018, 2, 24, 9, 59, tzinfo=PARIS), 0),  # not a full day yet
        (datetime(2018, 2, 24, 10, 0, tzinfo=PARIS), 1),
        (datetime(2019, 8, 19, 10, 0, tzinfo=PARIS), 541),  # while open: days so far
        (datetime(2030, 1, 1, tzinfo=UTC), 553),  # after closing: the whole consultation
    ],
)
def test_days_are_full_days_elapsed_until_now_or_the_closing(now, days):
    opens = datetime(2018, 2, 23, 10, 0, tzinfo=PARIS)
    closes = datetime(2019, 8, 31, 0, 0, tzinfo=PARIS)
    assert consultation_days(opens, closes, now) == days


def _info(status: str = "scheduled") -> ConsultationInfo:
    doc = load_consultation_file(SEED)
    return ConsultationInfo(
        1, doc.slug, status, doc.opens_at_utc, doc.closes_at_utc, doc.timezone, doc, (1, 2)
    )


def test_phases_follow_the_dates_unless_the_status_says_otherwise():
    info = _info()
    assert info.phase(info.opens_at - timedelta(seconds=1)) == Phase.UPCOMING
    assert info.phase(info.opens_at) == Phase.OPEN
    assert info.phase(info.closes_at - timedelta(seconds=1)) == Phase.OPEN
    assert info.phase(info.closes_at) == Phase.CLOSED
    middle = info.opens_at + timedelta(days=10)
    assert _info("closed").phase(middle) == Phase.CLOSED
    assert _info("draft").phase(middle) == Phase.DRAFT
    assert _info("archived").phase(middle) == Phase.ARCHIVED
    assert PERMISSIONS[Phase.OPEN].contribute and PERMISSIONS[Phase.OPEN].support
    assert not PERMISSIONS[Phase.CLOSED].support and PERMISSIONS[Phase.CLOSED].results
    assert not any(
        vars_ for vars_ in (PERMISSIONS[Phase.UPCOMING].comment, PERMISSIONS[Phase.DRAFT].results)
    )


def test_action_codec_round_trip_and_limits():
    assert parse(pack("sup", 123)) == Action("sup", ("123",))
    assert parse("ideas:1:top:2").args == ("1", "top", "2")
    with pytest.raises(ActionCodecError):
        pack("sup", "x" * 70)
    with pytest.raises(ActionCodecError):
        pack("sup", "a:b")  # the separator cannot hide in an argument
    with pytest.raises(ActionCodecError):
        parse("x" * (MAX_BYTES + 1))
    for bad in ("", "Sup:1", "sup:", "sup:1 2", "sup:é", ":1"):
        with pytest.raises(ActionCodecError):
            parse(bad)
    with pytest.raises(ActionCodecError):
        Action("sup", ("abc",)).arg_int(0)


def test_html_rendering_escapes_user_text_everywhere():
    evil = '<b>x</b> & "y" <a href="javascript:alert(1)">'
    rt = RichText().h(evil).p(b(evil), " ", evil).quote(evil).li(evil)
    rt = rt.p(link(evil, 'https://example.org/?a=1&b="2"'))
    for html in (render_html(rt), render_html(rt, block_tags=True)):
        assert "<b>x</b>" not in html and 'javascript:alert(1)">' not in html
        assert "&lt;b&gt;x&lt;/b&gt; &amp;" in html
        assert 'href="https://example.org/?a=1&amp;b=&quot;2&quot;"' in html
    plain = render_plain(rt)
    assert evil in plain  # plain text is shown as is, never interpreted


def test_plain_rendering_layout():
    rt = RichText().h("Title").p("one").li("a").li("b").p("two")
    assert render_plain(rt) == "Title\n─────\n\none\n\n• a\n• b\n\ntwo"


def test_outbound_message_json_round_trip():
    msg = OutboundMessage(
        chat_id="42",
        text=RichText().h("T").p(b("bold"), " and ", link("l", "https://x.org")).quote("q"),
        keyboard=((Button("Yes", "ok"), Button("Site", url="https://x.org")),),
        attachment=Attachment("r.csv", "text/csv", b"a,b\n1,2\n", caption="c"),
        edit=MessageRef("42", "7"),
        reply_to=MessageRef("42", "6"),
        notice="n",
        subject=("contribution", 3),
        answers="q1",
    )
    assert OutboundMessage.from_json(msg.to_json()) == msg


@pytest.mark.parametrize(
    "payload",
    [
        TextMessage("hé", reply_to=MessageRef("c", "m")),
        CommandMessage("ideas", ("1", "top"), "1 top"),
        ActionPressed("sup:1", "q"),
        ReactionAdded(MessageRef("c", "m"), "👍", removed=True),
        FileReceived("c.yaml", "application/yaml", b"slug: x\n"),
        Unsupported("sticker"),
    ],
)
def test_inbound_event_json_round_trip(payload):
    ctx = EventContext(
        "telegram",
        "c",
        "u",
        "e1",
        "Camille",
        "fr",
        ChatType.GROUP,
        MessageRef("c", "m0"),
        {"update_id": 1},
    )
    event = InboundEvent(ctx, payload)
    assert InboundEvent.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start", CommandMessage("start", (), "")),
        ("/Start@Parlons_Bot ville-x", CommandMessage("start", ("ville-x",), "ville-x")),
        (
            "/comment 3 Très bien  dit",
            CommandMessage("comment", ("3", "Très", "bien", "dit"), "3 Très bien  dit"),
        ),
        ("/start@other_bot", None),
        ("hello /start", None),
        ("/", None),
        ("/💥", None),
    ],
)
def test_command_parsing(text, expected):
    assert parse_command(text, "parlons_bot") == expected


@pytest.mark.parametrize(
    ("hint", "locale"),
    [("fr", "fr"), ("fr-CA", "fr"), ("en_GB", "en"), ("EN", "en"), ("de", "fr"), (None, "fr")],
)
def test_locale_negotiation(hint, locale):
    assert negotiate(hint) == locale
