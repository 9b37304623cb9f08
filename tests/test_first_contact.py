"""What a new citizen and a new moderator broke (issue 13, items 3, 6, 7 and 8): wrong arguments,
paging, prompts that spoke of old buttons, previews, unexplained figures, dates, typography, and
the deep-link sources."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import func, select

from bot.i18n import gettext, use_locale
from storage.models import Comment, Contribution, Dialogue, Seen, Support
from storage.models_moderation import Ban, Moderator, Report
from storage.models_scheduler import Broadcast, Subscription
from tests.conftest import make_app
from tests.support.harness import Chat

ADMIN = "admin"


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def snapshot(app: Any) -> dict[str, Any]:
    """What a refused command must leave as it was."""
    models = (Contribution, Comment, Support, Seen, Report, Ban, Moderator, Broadcast)
    with app.db.session() as s:
        counts = {m.__name__: s.exec(select(func.count()).select_from(m)).one() for m in models}
        states = sorted((d.user_id, d.state, d.data) for d in s.exec(select(Dialogue)).all())
        texts = sorted(s.exec(select(Contribution.id, Contribution.text)).all())
    return {"counts": counts, "states": states, "texts": texts}


@pytest.fixture
def mapp(sqlite_url, clock, tmp_path):  # type: ignore[no-untyped-def]
    app = make_app(
        sqlite_url, clock, admins=[f"console:{ADMIN}"], privacy_dir=str(tmp_path / "privacy")
    )
    yield app
    app.close()


def publish(chat: Chat, *texts: str) -> None:
    """Answer the first questions with these texts."""
    chat.send("/participate")
    for text in texts:
        chat.send(text)
        chat.send("/confirm")


# --------------------------------------------------------------------------- 13.3 wrong arguments

CITIZEN_LINES = [
    "/about abc",
    "/ideas abc",
    "/ideas 1 new x",
    "/comments 1 x",
    "/testimonials zz",
    "/comment 99999999999999999999 texte",
    "/support 1 2",
    "/withdraw 1 peut-être",
    "/lang klingon",
]
MODERATOR_LINES = [
    "/hide abc",
    "/hide",
    "/restore c",
    "/ban 99999999999999999999",
    "/approve x1",
    "/audit beaucoup",
    "/mod foo",
    "/unban",
    "/extend",
]


def _usage_prefix(locale: str, command: str) -> str:
    return (
        tr(locale, "Usage: {usage} — {help}", usage=command, help="").split(command)[0] + command
    )


@pytest.mark.parametrize("line", CITIZEN_LINES + MODERATOR_LINES)
def test_wrong_arguments_get_the_translated_usage_and_change_nothing(mapp, line) -> None:  # type: ignore[no-untyped-def]
    author = Chat(mapp.engine, user="author", language="fr")
    publish(author, "Une première idée à discuter")
    Chat(mapp.engine, user="reader", language="fr").send("/comment 1 Un commentaire")
    user = ADMIN if line in MODERATOR_LINES else "citizen"
    before = snapshot(mapp)
    command = line.split()[0]
    for locale in ("fr", "en"):
        replies = Chat(mapp.engine, user=user, language=locale).send(line)
        assert len(replies) == 1, replies.text
        text = replies.text
        assert text.startswith(_usage_prefix(locale, command) + " "), (locale, text)
        assert "Sorry" not in text and "Désolé" not in text
    fr_usage = Chat(mapp.engine, user=user, language="fr").send(line).text
    assert fr_usage.startswith("Utilisation\u202f: " + command), fr_usage  # French, typeset
    after = snapshot(mapp)
    # The two chats were created (and may have met the privacy notice): nothing else moved.
    assert after["counts"] == before["counts"]
    assert after["texts"] == before["texts"]


def test_an_about_page_out_of_range_says_which_pages_exist(app, chat) -> None:  # type: ignore[no-untyped-def]
    replies = chat("alice", language="en").send("/about 99")
    assert replies.text == tr(
        "en", "There is no page {n}: pages go from 1 to {total}.", n=99, total=5
    )


# --------------------------------------------------------------------------- 13.6 the lead's gates


def test_an_option_number_out_of_range_is_said_so_not_read_as_text(app, chat) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language="en")
    alice.send("/ideas")  # numbered options: the questions, the menu
    before = snapshot(app)
    replies = alice.send("42")
    assert "42" in replies.text and "option" in replies.text.lower(), replies.text
    assert snapshot(app) == before


def test_withdraw_with_yes_typed_withdraws_at_once(app, chat) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language="en")
    publish(alice, "Une idée à retirer", "Une autre idée")
    replies = alice.send("/withdraw 2 yes")
    assert tr("en", "Your contribution #{id} is withdrawn.", id=2) in replies.text
    with app.db.session() as s:
        assert s.get(Contribution, 2).status == "withdrawn"  # type: ignore[union-attr]
        assert s.get(Contribution, 1).status == "published"  # type: ignore[union-attr]


def test_report_with_a_french_reason(app, chat) -> None:  # type: ignore[no-untyped-def]
    publish(chat("alice", language="fr"), "Une idée", "Deux")
    bob = chat("bob", language="fr")
    bob.send("/report 2 hors sujet")
    with app.db.session() as s:
        (report,) = s.exec(select(Report)).all()
    assert (report.reason, report.target_type, report.target_id) == ("offtopic", "contribution", 2)


def test_a_closed_consultation_says_so_first_and_offers_no_reminders(app, chat, clock) -> None:  # type: ignore[no-untyped-def]
    clock.advance(days=400)
    newcomer = chat("newcomer", language="en", accept_privacy=False, buttons=True)
    replies = newcomer.send("/participate")
    assert replies.text.startswith(tr("en", "This consultation closed on {date}", date="")[:25])
    assert not any(a.startswith("pvok") for a in replies.actions())
    replies = newcomer.send("/start")
    assert not any(a.startswith("news:") for a in replies.actions()), replies.actions()
    assert tr("en", "Yes, keep me informed") not in replies.text
    # While it is open, the same first contact offers the news.
    open_app_chat = chat("other", language="en", buttons=True)
    clock.advance(days=-400)
    assert "news:on" in open_app_chat.send("/start").actions()
    with app.db.session() as s:
        assert s.exec(select(Subscription)).all() == []


# --------------------------------------------------------------------------- 13.6 prompts


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_typed_confirm_with_nothing_pending_says_how_to_take_part(app, chat, locale) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language=locale)
    replies = alice.send("/confirm")
    assert "/participate" in replies.text
    old_button = tr(
        locale,
        "That button is from an old message and no longer works. Type /start to begin again.",
    )
    assert old_button not in replies.text
    assert replies.text == tr(
        locale,
        "There is nothing to confirm right now. To take part, type /participate: I will ask you "
        "the questions one by one and show you your contribution before publishing it.",
    )
    # A pressed Confirm of an old preview is still an old button.
    assert old_button in alice.press_stale("ok").text


def test_an_edit_is_previewed_before_it_replaces_the_contribution(app, chat) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language="en")
    publish(alice, "Première version")
    alice.send("/editidea 1")
    replies = alice.send("Deuxième version")
    assert "Deuxième version" in replies.text
    assert [data for data in alice._options().values()][:3] == ["ok", "redo", "cancel"]
    with app.db.session() as s:
        assert s.get(Contribution, 1).text == "Première version"  # type: ignore[union-attr]
    # Edit again: back to writing, still nothing applied.
    alice.send("/edit")
    alice.send("Troisième version")
    with app.db.session() as s:
        assert s.get(Contribution, 1).text == "Première version"  # type: ignore[union-attr]
    replies = alice.send("/confirm")
    assert tr("en", "Your contribution #{id} is updated.", id=1) in replies.text
    with app.db.session() as s:
        assert s.get(Contribution, 1).text == "Troisième version"  # type: ignore[union-attr]
    # Cancel after a preview changes nothing.
    alice.send("/editidea 1")
    alice.send("Quatrième version")
    alice.send("/cancel")
    with app.db.session() as s:
        assert s.get(Contribution, 1).text == "Troisième version"  # type: ignore[union-attr]
    # A text too long is refused before the preview.
    alice.send("/editidea 1")
    assert "/confirm" not in alice.send("x" * 5000).text


def test_an_announcement_without_recipients_says_why_and_how(mapp) -> None:  # type: ignore[no-untyped-def]
    admin = Chat(mapp.engine, user=ADMIN, language="en")
    replies = admin.send("/announce Réunion publique jeudi")
    assert "0 recipients" not in replies.text
    assert "no citizen has subscribed" in replies.text
    assert "/reminders on" in replies.text and "/announce_here" in replies.text
    with mapp.db.session() as s:
        assert s.exec(select(Broadcast)).all() == []
    # Once someone subscribed, it goes out and says to how many.
    Chat(mapp.engine, user="alice", language="fr").send("/reminders on")
    replies = admin.send("/announce Réunion publique jeudi")
    assert "1 recipients" in replies.text or "1 recipient" in replies.text
    with mapp.db.session() as s:
        assert len(s.exec(select(Broadcast)).all()) == 1


def test_the_chart_title_fits_in_the_image() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from bot.chart import Bar, bar_figure
    from bot.consultation_file import load_consultation_file
    from tests.conftest import SEED

    doc = load_consultation_file(SEED)
    bars = [
        Bar(f"#{n} · Q1 · Une idée assez longue pour être coupée {n}", 20 - n) for n in range(8)
    ]
    for locale in ("fr", "en"):
        with use_locale(locale):
            title = tr(locale, "Most supported contributions — {title}", title="")
            title += doc.localized(locale).title
            fig = bar_figure(title, bars, xlabel="x", empty="-")
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        box = fig._suptitle.get_window_extent(renderer)  # type: ignore[union-attr]
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (locale, box, fig.bbox)
        assert box.y1 <= fig.bbox.y1
        shown = fig._suptitle.get_text().replace("\n", " ")  # type: ignore[union-attr]
        assert shown == " ".join(title.split())  # whole, wrapped on words
        # The axes start below the title.
        assert fig.axes[0].get_window_extent(renderer).y1 < box.y0


# ------------------------------------------------------------------------- 13.7 dates, typography


def test_dates_are_shown_in_the_consultations_time_zone(app, chat) -> None:  # type: ignore[no-untyped-def]
    # The clock is 19 August 2019, 10:00 in Paris (08:00 UTC).
    replies = chat("alice", language="fr").send("/privacy")
    assert "19 août 2019, 10:00" in replies.text, replies.text
    assert "08:00" not in replies.text
    replies = chat("bob", language="en").send("/privacy")
    assert (
        "Aug 19, 2019, 10:00\u202fAM" in replies.text or "Aug 19, 2019, 10:00 AM" in replies.text
    )


def test_every_date_formatter_is_given_a_time_zone() -> None:
    """fmt_date/fmt_datetime take the zone as a required argument: a call without one is a
    type error (mypy), and no call passes UTC for something a citizen reads."""
    import inspect
    import re
    from pathlib import Path

    from bot import i18n

    for fn in (i18n.fmt_date, i18n.fmt_datetime):
        assert inspect.signature(fn).parameters["tz"].default is inspect.Parameter.empty
    root = Path(i18n.__file__).parent
    calls = [
        (path.name, line)
        for path in root.rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"fmt_date(time)?\(.*\"UTC\"", line)
    ]
    assert calls == []


def test_french_typography_of_the_catalog_and_numbers() -> None:
    from datetime import UTC, datetime

    from bot.i18n import fmt_date, fmt_datetime, fmt_number, typeset_fr

    nn = "\u202f"
    assert typeset_fr("Utilisation : /x") == f"Utilisation{nn}: /x"
    assert typeset_fr("Merci ! Vraiment ? Oui ; non") == f"Merci{nn}! Vraiment{nn}? Oui{nn}; non"
    assert typeset_fr("Merci!") == f"Merci{nn}!"
    assert typeset_fr("la « ville »") == f"la «{nn}ville{nn}»"
    assert typeset_fr("l'idée d'{name}") == "l’idée d’{name}"
    # Times, links and moderation targets keep their colon.
    assert (
        typeset_fr("à 10:00, https://exemple.fr?a=1, c7:x")
        == "à 10:00, https://exemple.fr?a=1, c7:x"
    )
    with use_locale("fr"):
        # Catalog strings are typeset; the text inserted into them is not.
        line = gettext("Usage: {usage} — {help}").format(usage="/x a : b !", help="")
        assert line.startswith(f"Utilisation{nn}: /x a : b !")
        assert gettext("Read the “About” rubric (extracts of the report)").count(nn) == 2
        assert fmt_number(1234) == f"1{nn}234"
        assert fmt_date(datetime(2019, 9, 1, 8, tzinfo=UTC), "Europe/Paris") == "1er sept. 2019"
        # 23:30 UTC on 31 August is already the first in Paris.
        when = datetime(2019, 8, 31, 23, 30, tzinfo=UTC)
        assert fmt_datetime(when, "Europe/Paris") == "1er sept. 2019, 01:30"
        assert fmt_date(datetime(2019, 9, 11, tzinfo=UTC), "UTC") == "11 sept. 2019"
    with use_locale("en"):
        assert fmt_date(datetime(2019, 9, 1, 8, tzinfo=UTC), "Europe/Paris") == "Sep 1, 2019"
        assert gettext("Usage: {usage} — {help}").startswith("Usage: ")
    # No French catalog entry keeps a space before : ; ! ? or a typewriter apostrophe in a word.
    import re

    from bot.i18n import _catalog

    for text in _catalog("fr")._catalog.values():  # type: ignore[attr-defined]
        for value in text if isinstance(text, tuple) else (text,):
            assert not re.search(r"[ \u00a0][:;!?]|\w'\w|« | »", value), value


# --------------------------------------------------------------------------- 13.8 sources


@pytest.fixture
def any_mapp(db_url, clock, tmp_path):  # type: ignore[no-untyped-def]
    app = make_app(
        db_url, clock, admins=[f"console:{ADMIN}"], privacy_dir=str(tmp_path / "privacy")
    )
    yield app
    app.close()


def _sources_scenario(app: Any) -> None:
    def visitor(user: str, source: str | None = None) -> Chat:
        chat = Chat(app.engine, user=user, language="en")
        chat.send("/start ville-intelligente" + (f"-{source}" if source else ""))
        return chat

    poster1, poster2 = visitor("p1", "affiche"), visitor("p2", "affiche")
    radio = visitor("r1", "radio")
    visitor("p3", "affiche")  # a visitor who does nothing
    visitor("d1")  # direct
    publish(poster1, "Idée de l'affiche", "Une autre idée de l'affiche")
    publish(radio, "Idée de la radio")
    poster2.send("/support 3")
    radio.send("/start ville-intelligente-affiche")  # a later visit keeps the first source
    Chat(app.engine, user="x1", language="en").send("/comment 1 Un avis")  # no /start first


def test_moderators_stats_break_visitors_down_by_source(any_mapp) -> None:  # type: ignore[no-untyped-def]
    _sources_scenario(any_mapp)
    admin = Chat(any_mapp.engine, user=ADMIN, language="en")
    text = admin.send("/stats").text
    assert "By source" in text
    lines = [line for line in text.splitlines() if " — " in line and "visitor" in line]
    assert lines[0].endswith("affiche — visitors: 3 · participants: 2 · contributions: 2"), lines
    assert lines[1].endswith("radio — visitors: 1 · participants: 1 · contributions: 1"), lines
    assert "direct (no source)" in lines[2], lines
    # Citizens see the public figures only.
    citizen = Chat(any_mapp.engine, user="p1", language="en").send("/stats").text
    assert "By source" not in citizen and "affiche" not in citizen
    # In French, typeset.
    assert "Par source" in Chat(any_mapp.engine, user=ADMIN, language="fr").send("/stats").text


def test_the_export_has_a_sources_table(any_mapp) -> None:  # type: ignore[no-untyped-def]
    import csv
    import io
    import json

    from bot.exports import build_export
    from bot.services import Services
    from storage.repositories import Repos

    _sources_scenario(any_mapp)
    with any_mapp.db.session() as s:
        services = Services(Repos(any_mapp.db, s), any_mapp.clock())
        info = services.consultations.by_slug("ville-intelligente")
        data = build_export(services, info)
    files = {name: content for name, _mime, content in data.files()}
    rows = list(csv.DictReader(io.StringIO(files["ville-intelligente-sources.csv"].decode()[1:])))
    table = [(r["source"], r["visitors"], r["participants"], r["contributions"]) for r in rows]
    # direct: d1 and x1 (x1 visited through its first event); x1 commented, so one participant
    assert table == [
        ("affiche", "3", "2", "2"),
        ("radio", "1", "1", "1"),
        ("", table[2][1], "1", "0"),
    ]
    document = json.loads(files["ville-intelligente.json"])
    assert document["sources"][0] == {
        "source": "affiche", "visitors": 3, "participants": 2, "contributions": 2,
    }  # fmt: skip
    stats = document["statistics"]
    for key in ("visitors", "participants", "contributions"):
        assert sum(r[key] for r in document["sources"]) == stats[key], key


# --------------------------------------------------------------------------- 13.6 discover paging


def _shown(replies: Any) -> list[int]:
    import re

    return [int(n) for n in re.findall(r"^#(\d+) · 👍", replies.text, re.MULTILINE)]


@pytest.mark.parametrize("typed", [False, True], ids=["buttons", "typed"])
def test_discover_pages_show_each_idea_exactly_once(any_app, typed) -> None:  # type: ignore[no-untyped-def]
    for n in range(12):
        publish(Chat(any_app.engine, user=f"author{n}", language="en"), f"Idée numéro {n}")
    bob = Chat(any_app.engine, user="bob", language="en", buttons=True)
    bob.send("/support 12")  # supports and views change the order between pages
    shown: list[int] = []
    replies = bob.send("/ideas 1 discover")
    for page in (1, 2, 3):
        ids = _shown(replies)
        assert len(ids) == (5 if page < 3 else 2), (page, ids)
        shown += ids
        # While browsing: bob supports an idea of this page, and a new idea is published.
        bob.send(f"/support {ids[0]}")
        late = Chat(any_app.engine, user=f"late{page}", language="en", buttons=True)
        publish(late, f"Idée tardive {page}")
        if page < 3:
            if typed:
                replies = bob.send(f"/ideas 1 discover {page + 1}")
            else:
                bob.last = replies
                replies = bob.press(f"ideas:1:discover:{page + 1}")
    assert sorted(shown) == list(range(1, 13)), shown  # each once, none skipped
    # A new browse starts from now: the ideas published meanwhile come first (unseen).
    first = _shown(bob.send("/ideas 1 discover"))
    assert set(first) == {13, 14, 15} | set(first[3:]) and set(first[:3]) == {13, 14, 15}


def test_idea_opens_one_card_that_reactions_and_replies_act_on(app, chat) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language="en")
    publish(alice, "Une idée à ouvrir", "Une idée retirée")
    alice.send("/withdraw 2 yes")
    bob = chat("bob", language="en")
    replies = bob.send("/idea 1")
    assert len(replies) == 1 and replies.subjects() == [("contribution", 1)]
    assert "Une idée à ouvrir" in replies.text
    bob.react(bob.message_id_of(("contribution", 1)))  # 👍 on that card supports idea 1
    bob.send("Un commentaire en réponse", reply_to=bob.message_id_of(("contribution", 1)))
    with app.db.session() as s:
        assert [(r.contribution_id) for r in s.exec(select(Support)).all()] == [1]
        assert [(c.contribution_id, c.text) for c in s.exec(select(Comment)).all()] == [
            (1, "Un commentaire en réponse")
        ]
    assert "#2" in bob.send("/idea 2").text and bob.last.subjects() == []  # withdrawn
    assert bob.send("/idea deux").text.startswith("Usage: /idea ")


# --------------------------------------------------------------------------- through Telegram


async def test_telegram_renders_the_french_usage_typeset_and_an_edit_preview(app) -> None:  # type: ignore[no-untyped-def]
    """Through the real python-telegram-bot and the Bot API test server: a wrong argument gets
    the French usage with its narrow no-break space (kept by the HTML rendering), an edit is
    previewed with Confirm/Edit/Cancel buttons and applied by the Confirm button."""
    from tests.support.bot_api_server import BotApiServer
    from tests.support.telegram import running_bot

    async with (
        BotApiServer(bot_username="parlons_test_bot") as server,
        running_bot(app, server) as tg,
    ):
        await tg.say(41, "/start", language_code="fr")
        await tg.accept(41, language_code="fr")
        (usage,) = await tg.say(41, "/about abc", language_code="fr")
        assert (usage.plain_text or "").startswith("Utilisation\u202f: /about [PAGE]")
        await tg.say(41, "/participate", language_code="fr")
        preview = [r for r in await tg.say(41, "Une idée", language_code="fr") if r.buttons]
        await tg.press(41, "ok", preview[-1].message_id or 0, language_code="fr")
        await tg.say(41, "/editidea 1", language_code="fr")
        records = await tg.say(41, "Une idée meilleure", language_code="fr")
        (shown,) = [r for r in records if r.buttons]
        assert shown.callback_data == ["ok", "redo", "cancel"]
        assert "Une idée meilleure" in (shown.plain_text or "")
        with app.db.session() as s:
            assert s.get(Contribution, 1).text == "Une idée"  # type: ignore[union-attr]
        await tg.press(41, "ok", shown.message_id or 0, language_code="fr")
        with app.db.session() as s:
            assert s.get(Contribution, 1).text == "Une idée meilleure"  # type: ignore[union-attr]
