"""The whole citizen journey through Telegram, in French and English: the real
python-telegram-bot talks HTTP to the Bot API test server; nothing of ours is mocked."""

from __future__ import annotations

import pytest
from sqlmodel import select

from bot.consultation_file import load_consultation_file
from bot.i18n import gettext, language_name, ngettext, use_locale
from storage.models import Citizen, Comment, Contribution, Support, Visit
from tests.conftest import SEED
from tests.support.bot_api_server import BotApiServer, SentRecord
from tests.support.telegram import running_bot

DOC = load_consultation_file(SEED)
BOT = "parlons_test_bot"


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def ntr(locale: str, singular: str, plural: str, n: int) -> str:
    with use_locale(locale):
        return ngettext(singular, plural, n).format(n=n)


def texts(records: list[SentRecord]) -> str:
    return "\n\n".join(r.plain_text or "" for r in records)


def find(records: list[SentRecord], text: str) -> SentRecord:
    """The message containing ``text`` (other features may send more messages around it)."""
    for record in records:
        if text in (record.plain_text or ""):
            return record
    raise AssertionError(f"no message with {text!r} in {texts(records)!r}")


def with_button(records: list[SentRecord], data: str) -> SentRecord:
    for record in reversed(records):
        if data in record.callback_data:
            return record
    raise AssertionError(f"no button {data!r} in {[r.callback_data for r in records]}")


@pytest.mark.parametrize("lang", ["fr", "en"])
async def test_citizen_journey(any_app, lang):
    """On SQLite and PostgreSQL (where the runtime has several database threads)."""
    app = any_app
    other = "en" if lang == "fr" else "fr"
    content = DOC.localized(lang)
    alice, bob = 1001, 1002
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        # A deep link from a poster: /start <slug>-<source>.
        sent = await tg.say(alice, "/start ville-intelligente-affiche", language_code=lang)
        card = find(sent, content.title)
        assert card.parse_mode == "HTML" and card.plain_text.startswith(content.title)
        assert card.callback_data == ["part", "ideas", "about", "testi", "stats", "help"]
        # Bold headings are real entities, not markup shown as text.
        assert card.entities[0]["type"] == "bold" and "<b>" not in card.plain_text

        # The privacy notice, when the core shows one at first contact: the citizen accepts it.
        notices = [r for r in sent if any(d.startswith("pvok:") for d in r.callback_data)]
        for notice in notices:
            await tg.press(alice, notice.callback_data[0], notice.message_id, language_code=lang)

        # Participate: question 1, a contribution with markup typed by the citizen.
        sent, update_id = await tg.press(alice, "part", card.message_id, language_code=lang)
        answer = await server.wait_for_callback_answer(update_id)
        assert answer.text is None  # the spinner stops; the reply is a new message
        assert content.questions[0].text in texts(sent)
        typed = "Une maison du projet <b>ouverte</b> & gratuite, chaque samedi"
        preview = find(await tg.say(alice, typed, language_code=lang), typed)
        # Shown literally: escaped, not interpreted.
        assert "&lt;b&gt;" in (preview.text or "")
        assert not any(e["type"] == "bold" for e in preview.entities)
        assert tr(lang, "Publish it?") in preview.plain_text
        sent, _ = await tg.press(alice, "ok", preview.message_id, language_code=lang)
        assert tr(lang, "Thank you! Your contribution #{id} is published.", id=1) in texts(sent)
        assert content.questions[1].text in texts(sent)
        sent = await tg.say(alice, "Le budget participatif de 2018.", language_code=lang)
        preview = with_button(sent, "ok")
        sent, _ = await tg.press(alice, "ok", preview.message_id, language_code=lang)
        assert tr(lang, "Thank you for taking part!") in texts(sent)

        # Another citizen browses the ideas of question 1.
        await tg.say(bob, "/start", first_name="Bob", language_code=lang)
        await tg.accept(bob, language_code=lang)
        menu = with_button(
            await tg.say(bob, "/ideas", first_name="Bob", language_code=lang), "ideas:1:discover:1"
        )
        assert menu.callback_data[:2] == ["ideas:1:discover:1", "ideas:2:discover:1"]
        page, _ = await tg.press(bob, "ideas:1:discover:1", menu.message_id, language_code=lang)
        idea = with_button(page, "sup:1")
        assert typed in idea.plain_text and "👍 0" in idea.plain_text

        # Support with the button: the idea's message is edited in place, the query answered.
        sent, update_id = await tg.press(bob, "sup:1", idea.message_id, language_code=lang)
        assert [r.method for r in sent] == ["editMessageText"]
        assert sent[0].message_id == idea.message_id
        assert "👍 1" in sent[0].plain_text and "uns:1" in sent[0].callback_data
        answer = await server.wait_for_callback_answer(update_id)
        assert answer.text and "#1" in answer.text and len(answer.text) <= 200
        assert "👍 1" in server.message(bob, idea.message_id)["text"]

        # Comment with the button, then by replying to the idea's message.
        sent, _ = await tg.press(bob, "com:1", idea.message_id, language_code=lang)
        assert tr(lang, "Your comment on idea #{id}:", id=1) in texts(sent)
        sent = await tg.say(bob, "Oui, et le soir aussi !", language_code=lang)
        published = tr(lang, "Thank you, your comment on #{id} is published.", id=1)
        assert published in texts(sent)
        sent = await tg.say(
            bob, "En visio aussi.", reply_to_message_id=idea.message_id, language_code=lang
        )
        assert published in texts(sent)

        # Statistics.
        stats = await tg.say(bob, "/stats", language_code=lang)
        shown = texts(stats)
        for singular, plural, n in (
            ("{n} participant", "{n} participants", 2),
            ("{n} contribution", "{n} contributions", 2),
            ("{n} support", "{n} supports", 1),
            ("{n} visitor", "{n} visitors", 2),
        ):
            assert ntr(lang, singular, plural, n) in shown

        # Language switch: the confirmation and the card in the other language.
        sent = await tg.say(alice, f"/lang {other}", language_code=lang)
        with use_locale(other):
            name = language_name(other)
        find(sent, tr(other, "From now on I will speak {language} with you.", language=name))
        assert find(sent, DOC.localized(other).title).callback_data[0] == "part"

    with app.db.session() as s:
        contributions = s.exec(select(Contribution).order_by(Contribution.id)).all()
        assert [c.text for c in contributions] == [typed, "Le budget participatif de 2018."]
        assert len(s.exec(select(Support)).all()) == 1
        assert [c.text for c in s.exec(select(Comment).order_by(Comment.id)).all()] == [
            "Oui, et le soir aussi !",
            "En visio aussi.",
        ]
        citizens = {c.platform_user_id: c for c in s.exec(select(Citizen)).all()}
        assert set(citizens) == {"1001", "1002"}
        assert citizens["1001"].locale == other
        visits = {v.citizen_id: v.source for v in s.exec(select(Visit)).all()}
        assert visits[citizens["1001"].id] == "affiche"
        assert visits[citizens["1002"].id] is None


async def test_every_update_is_answered_once_even_when_sent_while_the_bot_was_down(any_app):
    app = any_app
    async with BotApiServer(bot_username=BOT) as server:
        # Citizens write before the bot starts: nothing is dropped.
        for user in range(3001, 3011):
            server.inject_message(user, "/start", language_code="en")
        async with running_bot(app, server) as tg:
            await tg.settle()
            title = DOC.localized("en").title
            for user in range(3001, 3011):
                cards = [m for m in server.messages_to(user) if m.plain_text.startswith(title)]
                assert len(cards) == 1
        drops = [
            c
            for c in server.requests
            if c.params.get("drop_pending_updates") not in (None, False, "false")
        ]
        assert drops == []
