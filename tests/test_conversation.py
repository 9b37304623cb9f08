"""Every citizen flow of the core through the chat harness, in French and English, on a
numbered-options channel (console, Matrix) and on a buttons channel (Telegram)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.app import build_app
from bot.consultation_file import ConsultationDocument, load_consultation_file
from bot.i18n import gettext, use_locale
from bot.messages import ChatType, Unsupported
from bot.settings import Settings
from storage.models import Comment, Contribution, Support, Visit
from tests.conftest import SEED
from tests.support.harness import Chat


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def count(app, model) -> int:  # type: ignore[no-untyped-def]
    from sqlmodel import func, select

    with app.db.session() as s:
        return s.exec(select(func.count()).select_from(model)).one()


def contribute(chat: Chat, *answers: str) -> None:
    """Answer the questions in turn (skipping where the answer is None)."""
    chat.send("/participate")
    for answer in answers:
        if answer is None:
            chat.press("skip")
            continue
        chat.send(answer)
        chat.press("ok")


LANGS = ["fr", "en"]
DOC = load_consultation_file(SEED)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("buttons", [False, True], ids=["numbered", "buttons"])
def test_start_shows_the_card_and_counts_a_visitor_once(app, chat, lang, buttons):
    alice = chat("alice", language=lang, buttons=buttons)
    replies = alice.send("/start")
    content = DOC.localized(lang)
    assert content.title in replies.text
    assert content.framing_paragraphs[0][:60] in replies.text
    # 19 Aug 2019 10:00 → 31 Aug 2019 00:00: 11.6 days left, shown as 12
    with use_locale(lang):
        from bot.i18n import ngettext

        assert (
            ngettext("Open — closes in {n} day", "Open — closes in {n} days", 12).format(n=12)
            in replies.text
        )
    if buttons:
        # The card's menu, then the news choice offered at first contact (scheduler issue).
        assert replies.actions() == [
            *("part", "ideas", "about", "testi", "stats", "help"),
            *("news:on", "news:off"),
        ]
    else:
        assert "[1]" in replies.text and "/participate" in replies.text
    alice.send("/start")
    assert count(app, Visit) == 1
    if lang == "en":
        assert DOC.localized("fr").title not in replies.text


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("buttons", [False, True], ids=["numbered", "buttons"])
def test_participate_in_both_questions_with_preview_edit_and_confirm(app, chat, lang, buttons):
    alice = chat("alice", language=lang, buttons=buttons)
    alice.send("/start")
    q = DOC.localized(lang).questions
    replies = alice.press("part")
    assert q[0].text in replies.text
    replies = alice.send("Une maison du projet ouverte à tous, chaque samedi.")
    assert "Une maison du projet ouverte à tous, chaque samedi." in replies.text
    assert tr(lang, "Publish it?") in replies.text
    assert count(app, Contribution) == 0  # nothing before confirmation
    replies = alice.press("ok")
    assert tr(lang, "Thank you! Your contribution #{id} is published.", id=1) in replies.text
    assert q[1].text in replies.text
    alice.send("Le budget participatif de 2018.")
    replies = alice.press("redo")
    assert q[1].text in replies.text
    alice.send("Le budget participatif de 2018, 40 projets votés.")
    replies = alice.press("ok")
    assert tr(lang, "Thank you for taking part!") in replies.text
    with app.db.session() as s:
        from sqlmodel import select

        texts = [c.text for c in s.exec(select(Contribution).order_by(Contribution.id)).all()]
    assert texts == [
        "Une maison du projet ouverte à tous, chaque samedi.",
        "Le budget participatif de 2018, 40 projets votés.",
    ]
    replies = alice.send("/participate")
    assert tr(lang, "You have answered every question.") in replies.text


def test_resume_exactly_where_left_after_a_detour_and_a_restart(app, chat, sqlite_url, clock):
    alice = chat("alice")
    alice.send("/participate")
    alice.send("/stats")  # detour while answering
    replies = alice.send("Mon idée après un détour")
    assert "Mon idée après un détour" in replies.text  # became the draft of question 1
    alice.send("/ideas")  # another detour while previewing
    replies = alice.send("/participate")
    assert "Mon idée après un détour" in replies.text
    assert tr("fr", "Publish it?") in replies.text
    app.close()
    # Restart: a new process on the same database.
    restarted = build_app(Settings(database_url=sqlite_url), clock=clock)
    bob_view = Chat(restarted.engine, user="alice")
    replies = bob_view.send("/confirm")
    assert tr("fr", "Thank you! Your contribution #{id} is published.", id=1) in replies.text
    assert DOC.localized("fr").questions[1].text in replies.text
    restarted.close()


def test_skip_then_skipped_questions_are_offered_again(app, chat):
    alice = chat("alice", language="en")
    q = DOC.localized("en").questions
    alice.send("/participate")
    replies = alice.press("skip")
    assert q[1].text in replies.text
    replies = alice.press("skip")
    assert tr("en", "Thank you for taking part!") in replies.text
    replies = alice.send("/participate")
    assert q[0].text in replies.text


def _ideas(app, chat, n=7):  # type: ignore[no-untyped-def]
    for k in range(n):
        contribute(chat(f"author{k}"), f"Idée numéro {k}", None)
    return count(app, Contribution)


def test_browse_paginates_and_sorts(app, chat):
    assert _ideas(app, chat) == 7
    # Supports: idea 3 gets 2, idea 5 gets 1
    for user, cid in (("s1", 3), ("s2", 3), ("s3", 5)):
        chat(user).send(f"/support {cid}")
    bob = chat("bob", language="en", buttons=True)
    replies = bob.send("/ideas 1 top")
    assert replies.subjects()[:2] == [("contribution", 3), ("contribution", 5)]
    assert len(replies.subjects()) == 5
    assert "ideas:1:top:2" in replies.actions()
    replies = bob.press("ideas:1:top:2")
    assert len(replies.subjects()) == 2
    replies = bob.send("/ideas 1 new")
    assert replies.subjects()[0] == ("contribution", 7)
    # discover: what bob has not been shown yet comes first
    carol = chat("carol", buttons=True)
    first = carol.send("/ideas 1 discover").subjects()
    second = carol.send("/ideas 1 discover").subjects()
    assert set(first).isdisjoint(second[:2])
    assert len(set(first) | set(second)) == 7


def test_ideas_menu_lists_both_questions(app, chat):
    contribute(chat("author"), "Une idée", "Une réussite")
    bob = chat("bob", language="en", buttons=True)
    replies = bob.send("/ideas")
    assert replies.actions()[:2] == ["ideas:1:discover:1", "ideas:2:discover:1"]
    replies = bob.press("ideas:2")
    assert "Une réussite" in replies.text and "Une idée" not in replies.text


def test_support_toggle_edits_the_idea_in_place(app, chat):
    contribute(chat("alice"), "Des ateliers de quartier", None)
    bob = chat("bob", language="en", buttons=True)
    bob.send("/ideas 1")
    replies = bob.press("sup:1")
    assert len(replies) == 1 and replies[0].edit is not None  # the idea message, updated
    assert replies[0].notice and "#1" in replies[0].notice
    assert "👍 1" in replies.text and "uns:1" in replies.actions()
    assert count(app, Support) == 1
    replies = bob.press("uns:1")
    assert "👍 0" in replies.text and "sup:1" in replies.actions()
    assert count(app, Support) == 0


def test_a_typed_support_answers_with_one_message_thanks_above_the_updated_idea(app, chat):
    contribute(chat("alice"), "Des ateliers de quartier", None)
    bob = chat("bob", language="en", buttons=True)
    replies = bob.send("/support 1")
    assert len(replies) == 1 and replies[0].edit is None
    (message,) = replies
    text = message.text.plain()
    thanks = tr("en", "👍 Thank you, you support #{id} ({count} support in all).", id=1, count=1)
    assert text.startswith(thanks) and text.index(thanks) < text.index("Des ateliers")
    assert "👍 1" in text and replies.actions()[0] == "uns:1"
    assert message.subject == ("contribution", 1)  # a reaction or reply to it targets idea #1
    replies = bob.send("/unsupport 1")
    assert len(replies) == 1 and "👍 0" in replies.text and replies.actions()[0] == "sup:1"


def test_support_rules(app, chat):
    contribute(chat("alice"), "Des ateliers de quartier", None)
    bob = chat("bob", language="en")
    bob.send("/support 1")
    replies = bob.send("/support 1")
    assert tr("en", "You already support contribution #{id}.", id=1) in replies.text
    replies = chat("alice", language="en").send("/support 1")
    assert tr("en", "You cannot support your own contribution.") in replies.text
    replies = bob.send("/unsupport 1")
    replies = bob.send("/unsupport 1")
    assert tr("en", "You do not support contribution #{id}.", id=1) in replies.text
    replies = bob.send("/support 99")
    assert (
        tr("en", "I can't find contribution #{id}. It may have been withdrawn.", id=99)
        in replies.text
    )
    assert count(app, Support) == 0


def test_support_withdrawal_can_be_forbidden(app, chat):
    chat("early").send("/start")  # the dispatcher has now parsed (and cached) the document
    data = DOC.to_json()
    data["settings"]["support_withdrawal"] = False
    app.import_consultation(ConsultationDocument.from_json(data))
    contribute(chat("alice"), "Des ateliers de quartier", None)
    bob = chat("bob", language="en")
    bob.send("/support 1")
    replies = bob.send("/unsupport 1")
    assert (
        tr(
            "en",
            "In this consultation a support cannot be withdrawn once given (like a signature).",
        )
        in replies.text
    )
    assert count(app, Support) == 1


@pytest.mark.parametrize("lang", LANGS)
def test_comment_and_read_comments(app, chat, lang):
    contribute(chat("alice"), "Des ateliers de quartier", None)
    bob = chat("bob", language=lang, buttons=True)
    bob.send("/ideas 1")
    replies = bob.press("com:1")
    assert tr(lang, "Your comment on idea #{id}:", id=1) in replies.text
    replies = bob.send("Oui, et le soir <b>aussi</b> !")
    assert tr(lang, "Thank you, your comment on #{id} is published.", id=1) in replies.text
    bob.send("/comment 1 Et en visio pour ceux qui travaillent.")
    replies = bob.send("/comments 1")
    assert "Oui, et le soir <b>aussi</b> !" in replies.text
    assert "Et en visio" in replies.text
    assert count(app, Comment) == 2
    # the idea now shows its comment count
    replies = bob.send("/ideas 1")
    assert "💬 2" in replies.text and "coms:1:1" in replies.actions()


def test_comment_bad_input_changes_nothing(app, chat):
    contribute(chat("alice"), "Des ateliers de quartier", None)
    bob = chat("bob", language="en")
    bob.send("/comment 1")
    replies = bob.send("   ")
    assert tr("en", "Your message is empty. Please write a few words.") in replies.text
    replies = bob.send("x" * 1001)
    assert (
        tr(
            "en",
            "Your text is {length} characters long; the limit is {limit}. Please shorten it.",
            length=1001,
            limit=1000,
        )
        in replies.text
    )
    assert count(app, Comment) == 0
    bob.send("Un commentaire correct")  # still in the commenting state
    assert count(app, Comment) == 1


def test_my_contributions_edit_and_withdraw(app, chat):
    alice = chat("alice", language="en", buttons=True)
    contribute(alice, "Première version", "Deuxième idée")
    replies = alice.send("/mine")
    assert replies.subjects() == [("contribution", 1), ("contribution", 2)]
    alice.press("medit:1")
    replies = alice.send("Version corrigée")  # a preview first (issue 13.6), nothing applied
    assert replies.actions() == ["ok", "redo", "cancel"]
    assert "Version corrigée" in replies.text
    assert "Première version" in chat("bob", language="en", buttons=True).send("/ideas 1 new").text
    replies = alice.press("ok")
    assert tr("en", "Your contribution #{id} is updated.", id=1) in replies.text
    alice.send("/mine")
    alice.press("mdel:2")
    replies = alice.press("mdelok:2")
    assert tr("en", "Your contribution #{id} is withdrawn.", id=2) in replies.text
    replies = chat("bob", language="en").send("/ideas 2")
    assert "Deuxième idée" not in replies.text
    replies = chat("bob", language="en").send("/support 2")
    assert (
        tr("en", "Contribution #{id} is not available any more (withdrawn or hidden).", id=2)
        in replies.text
    )
    replies = chat("bob", language="en").send("/editidea 1")
    assert tr("en", "Contribution #{id} is not yours.", id=1) in replies.text


def test_closed_and_not_yet_open_consultation(app, chat, clock):
    contribute(chat("alice"), "Une idée", None)
    clock.now = DOC.closes_at_utc + timedelta(days=3)
    bob = chat("bob", language="en")
    for line in ("/participate", "/support 1", "/comment 1 trop tard"):
        replies = bob.send(line)
        assert "closed on" in tr(
            "en",
            "This consultation closed on {date}: contributions, "
            "supports and comments are no longer accepted. Type "
            "/stats to see its results.",
            date="x",
        )
        assert "31 Aug 2019" in replies.text or "Aug 31, 2019" in replies.text, replies.text
    assert count(app, Support) == 0 and count(app, Comment) == 0
    replies = bob.send("/stats")
    assert "553" in replies.text
    clock.now = DOC.opens_at_utc - timedelta(days=1)
    replies = bob.send("/participate")
    assert "2018" in replies.text and count(app, Contribution) == 1


def test_statistics_counters(app, chat):
    contribute(chat("alice"), "Idée A", None)
    contribute(chat("bob"), "Idée B", "Réussite B")
    chat("carol").send("/support 1")
    chat("carol").send("/support 2")
    chat("dave").send("/comment 1 d'accord")
    chat("erin").send("/start")
    chat("erin").send("/start ville-intelligente")
    replies = chat("frank", language="en").send("/stats")
    text = replies.text
    assert "541" in text  # days so far: 23 Feb 2018 10:00 → 19 Aug 2019 10:00
    for figure, msgid in (
        (4, "{n} participants"),
        (3, "{n} contributions"),
        (2, "{n} supports"),
        (6, "{n} visitors"),
    ):
        assert msgid.replace("{n}", str(figure)) in text, text
    # withdrawing a contribution removes it, its supports and its comments from the counters
    chat("alice").send("/withdraw 1")
    chat("alice").press("mdelok:1")
    text = chat("frank", language="en").send("/stats").text
    assert "2 contributions" in text and "1 support" in text and "2 participants" in text


def test_bad_input_gets_a_clear_answer_and_changes_nothing(app, chat):
    bob = chat("bob", language="en", buttons=True)
    replies = bob.send("/frobnicate")
    assert (
        tr(
            "en",
            "I don't know the command /{name}. Type /help to see what you can do.",
            name="frobnicate",
        )
        in replies.text
    )
    replies = bob.send("/support abc")
    assert "/support" in replies.text and "Usage" in replies.text
    replies = bob.press_stale("ok")
    assert (
        tr(
            "en",
            "That button is from an old message and no longer works. Type /start to begin again.",
        )
        in replies.text
    )
    replies = bob.press_stale("zz:1:2")
    assert "old message" in replies.text
    replies = bob.press_stale("ideas:9:top:1")
    assert tr("en", "That question does not exist in this consultation.") in replies.text
    bob.send("/participate")
    replies = bob.send("x" * 2001)
    assert "2001" in replies.text
    replies = bob.send("")
    assert tr("en", "Your message is empty. Please write a few words.") in replies.text
    replies = bob.deliver(bob._event(Unsupported("sticker")))
    assert (
        tr("en", "I can only read text messages and commands. Type /help to see what you can do.")
        in replies.text
    )
    assert count(app, Contribution) == 0
    replies = bob.send("Une vraie réponse")  # the dialogue is still on question 1
    assert "Une vraie réponse" in replies.text


def test_an_event_delivered_twice_has_its_effect_once(app, chat):
    from bot.messages import CommandMessage

    alice = chat("alice")
    contribute(chat("author"), "Une idée", None)
    event = alice._event(CommandMessage("support", ("1",), "1"))
    first = alice.deliver(event)
    second = alice.deliver(event)
    assert first and not second
    assert count(app, Support) == 1


def test_language_switch_is_remembered(app, chat):
    alice = chat("alice", language="fr")
    replies = alice.send("/lang en")
    assert DOC.localized("en").title in replies.text
    replies = alice.send("/stats")
    assert "days of consultation" in replies.text
    replies = alice.send("/lang xx")
    assert "Usage: /lang [fr|en]" in replies.text
    replies = alice.send("/lang")
    assert "lang:fr" in " ".join(alice._options().values())


def test_help_is_generated_from_command_metadata(app, chat):
    replies = chat("alice", language="en").send("/help")
    for spec in app.dispatcher.visible_commands(0):  # type: ignore[arg-type]
        assert f"/{spec.name}" in replies.text


def test_numbered_options_press_buttons(app, chat):
    alice = chat("alice", language="en")
    alice.send("/start")
    replies = alice.send("5")  # option 5 of the card is Statistics
    assert "days of consultation" in replies.text
    replies = alice.send("42")  # no such option: said so, not read as free text
    assert "There is no option 42 in my last message" in replies.text


def test_group_chat_offers_a_private_deep_link(app, chat):
    group = chat("alice", language="en", buttons=True, chat_type=ChatType.GROUP, chat_id="-100200")
    replies = group.send("/start@parlons_bot")
    urls = [b.url for _m, b in replies.buttons() if b.url]
    assert urls == ["https://t.me/parlons_bot?start=ville-intelligente"]
    replies = group.send("/participate")
    assert (
        tr("en", "Let's continue in a private chat: open a conversation with me to take part.")
        in replies.text
    )
    assert group.send("/start@other_bot") == []


def test_reaction_supports_and_reply_comments(app, chat):
    contribute(chat("alice"), "Des bancs partout", None)
    bob = chat("bob", language="en")  # a channel without buttons (Matrix-like)
    bob.send("/ideas 1")
    mid = bob.message_id_of(("contribution", 1))
    replies = bob.react(mid, "👍")
    assert count(app, Support) == 1 and "👍 1" in replies.text
    bob.react(mid, "👍", removed=True)
    assert count(app, Support) == 0
    assert bob.react(mid, "🎉") == []  # other reactions are ignored
    replies = bob.send("Bonne idée, surtout près des écoles", reply_to=mid)
    assert count(app, Comment) == 1


def test_about_pages_and_testimonials(app, chat):
    alice = chat("alice", language="en", buttons=True)
    replies = alice.send("/about")
    pages = DOC.localized("en").about
    assert [a for a in replies.actions() if a.startswith("about:")] == [
        f"about:{n}" for n in range(1, len(pages) + 1)
    ]
    replies = alice.press("about:2")
    assert pages[1].body[:50] in replies.text
    replies = alice.send("/about 99")
    assert count(app, Contribution) == 0 and replies
    replies = alice.send("/testimonials")
    for t in DOC.localized("en").testimonials:
        assert t.author in replies.text


def test_deep_link_source_is_recorded(app, chat):
    chat("alice").send("/start ville-intelligente-affiche-mairie")
    chat("bob").send("/start ville-intelligente")
    replies = chat("carol", language="en").send("/start nope")
    assert "nope" in replies.text
    from sqlmodel import select

    with app.db.session() as s:
        sources = sorted(str(v.source) for v in s.exec(select(Visit)).all())
    assert sources == ["None", "affiche-mairie"]


def test_user_text_is_escaped_in_html(app, chat):
    from bot.messages import render_html

    contribute(chat("alice"), "<script>alert(1)</script> & co", None)
    replies = chat("bob", buttons=True).send("/ideas 1")
    html = "".join(render_html(m.text) for m in replies)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; co" in html


def test_reimporting_the_same_file_keeps_an_extension_but_a_new_date_wins(app):
    from sqlmodel import select

    from storage.models import Consultation

    extended = DOC.closes_at_utc + timedelta(days=14)
    with app.db.session() as s:  # what /extend does to the row
        row = s.exec(select(Consultation)).one()
        row.closes_at = extended
    app.import_consultation(SEED)
    with app.db.session() as s:
        assert s.exec(select(Consultation.closes_at)).one() == extended
    data = DOC.to_json()
    data["closes_at"] = "2019-09-30T00:00:00"
    app.import_consultation(ConsultationDocument.from_json(data))
    with app.db.session() as s:
        closes = s.exec(select(Consultation.closes_at)).one()
    assert closes == ConsultationDocument.from_json(data).closes_at_utc


def test_in_a_group_participation_points_to_the_private_chat_even_before_consent(app, chat):
    group = chat(
        "newcomer",
        language="en",
        buttons=True,
        chat_type=ChatType.GROUP,
        chat_id="-100300",
        accept_privacy=False,
    )
    replies = group.send("/participate@parlons_bot")
    assert (
        tr("en", "Let's continue in a private chat: open a conversation with me to take part.")
        in replies.text
    )
    assert "/accept" not in replies.text
