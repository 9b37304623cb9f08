"""Issue 15 through Telegram: the real python-telegram-bot against the Bot API test server. A
near-duplicate draft's preview offers the similar idea with a "support #1 instead" button;
/sort deals an idea with 👍 / 👎 / ⏭ buttons and a 👎 press records a disagreement."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.i18n import gettext, use_locale
from storage.models import Contribution, Support
from storage.models_legible import Disagreement
from tests.support.bot_api_server import BotApiServer, SentRecord
from tests.support.telegram import running_bot

BOT = "parlons_test_bot"


def tr(msgid: str, **params: object) -> str:
    with use_locale("fr"):
        return gettext(msgid).format(**params)


def texts(records: list[SentRecord]) -> str:
    return "\n\n".join(r.plain_text or "" for r in records)


def with_button(records: list[SentRecord], data: str) -> SentRecord:
    for record in reversed(records):
        if data in record.callback_data:
            return record
    raise AssertionError(f"no button {data!r} in {[r.callback_data for r in records]}")


def count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


async def test_similar_idea_instead_and_sorting_buttons(app):
    alice, bob, carol = 2001, 2002, 2003
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        for user in (alice, bob, carol):
            await tg.say(user, "/start", language_code="fr")
            await tg.accept(user, language_code="fr")
        await tg.say(alice, "/participate", language_code="fr")
        idea = "Des pistes cyclables sécurisées pour les vélos"
        preview = with_button(await tg.say(alice, idea, language_code="fr"), "ok")
        assert not [d for d in preview.callback_data if d.startswith("sins:")]
        await tg.press(alice, "ok", preview.message_id, language_code="fr")
        assert count(app, Contribution) == 1

        # Bob's near-duplicate: the preview shows idea #1 and offers to support it instead.
        await tg.say(bob, "/participate", language_code="fr")
        sent = await tg.say(bob, "Une piste cyclable sécurisée pour mon vélo", language_code="fr")
        preview = with_button(sent, "sins:1")
        assert tr("Similar ideas already published:") in preview.plain_text
        assert "#1 Des pistes cyclables" in preview.plain_text
        assert preview.callback_data[:2] == ["sins:1", "ok"]
        assert tr("Publish mine anyway") in str(preview.reply_markup)
        sent, update_id = await tg.press(bob, "sins:1", preview.message_id, language_code="fr")
        assert tr("👍 You support #{id}; your draft was not published.", id=1) in texts(sent)
        assert (await server.wait_for_callback_answer(update_id)) is not None
        assert count(app, Contribution) == 1 and count(app, Support) == 1

        # Carol sorts: idea #1 is dealt with its three buttons; 👎 records a disagreement.
        sent = await tg.say(carol, "/sort", language_code="fr")
        card = with_button(sent, "sdis:1")
        assert card.callback_data[:3] == ["sagr:1", "sdis:1", "spas:1"]
        sent, update_id = await tg.press(carol, "sdis:1", card.message_id, language_code="fr")
        assert (await server.wait_for_callback_answer(update_id)) is not None
        assert tr("You have sorted every idea. Thank you!") in texts(sent)
        assert count(app, Disagreement) == 1
        assert count(app, Support) == 1  # Bob's only
