"""Reports, automatic hiding, the moderators' chat and its buttons end to end, bans."""

from __future__ import annotations

from bot.messages import ChatType
from storage.models import Comment, Contribution, Support
from storage.models_moderation import AuditEntry, Ban, Report
from tests.support.moderation import (
    ADMIN,
    build,
    chats,
    contribute,
    count,
    rows,
    set_settings,
    tr,
)

# The moderators work in a group on a platform with buttons (Telegram-like); citizens use the
# console (no buttons): notifications cross platforms through the outbox.
GROUP = {"chat_type": ChatType.GROUP, "chat_id": "-100mods", "buttons": True, "platform": "tg"}


def _status(app, cid=1):  # type: ignore[no-untyped-def]
    return next(c.status for c in rows(app, Contribution) if c.id == cid)


def new_report(target: str = "contribution #1") -> str:
    """The beginning of a report card in the moderators' chat (in the default language, fr)."""
    label = tr("fr", "contribution #{id}", id=target.rsplit("#", 1)[1])
    return (
        tr("fr", "⚑ New report on {target}: {reason}.", target=label, reason="X")
        .split(" X")[0]
        .rstrip(":")
        .rstrip()
    )


def _team(app):  # type: ignore[no-untyped-def]
    """An administrator, moderator mod1 (on the "tg" platform) and the moderators' group."""
    chat = chats(app)
    chat(ADMIN).send("/mod add tg:mod1")
    mods = chat("mod1", **GROUP)
    mods.send("/modchat")
    return chat, mods


def test_reporting_twice_counts_once(mapp):
    chat = chats(mapp)
    contribute(chat("author"), "Une idée", None)
    bob = chat("bob")
    assert "your report on contribution #1 is recorded" in bob.send("/report 1 spam").text
    replies = bob.send("/report 1 offensive")
    assert (
        tr(
            "en",
            "You have already reported {target}; a report counts once. Thank you.",
            target="contribution #1",
        )
        in replies.text
    )
    assert count(mapp, Report) == 1
    # Own content, unknown content and a bad target are refused.
    assert "cannot report what you wrote" in chat("author").send("/report 1 spam").text
    assert "can't find contribution #9" in bob.send("/report 9 spam").text
    assert "Usage: /report" in bob.send("/report x1 spam").text  # the declared usage
    assert count(mapp, Report) == 1


def test_content_is_hidden_after_n_reports(mapp):
    chat, mods = _team(mapp)
    author = chat("author")
    contribute(author, "Une idée discutable", None)
    chat("reader").send("/comment 1 Un commentaire")
    for user in ("r1", "r2"):
        chat(user).send("/report 1 offensive")
        assert _status(mapp) == "published"
        cards = mods.receive()
        assert new_report() in cards.text
    chat("r3").send("/report 1 spam")
    assert _status(mapp) == "hidden"
    cards = mods.receive()
    assert (
        tr(
            "fr",
            "⚑ {target} was hidden automatically after {n} reports: please review it.",
            target=tr("fr", "contribution #{id}", id=1).capitalize(),
            n=3,
        )
        in cards.text
    )
    assert cards.actions()[:2] == ["mrest:1", "mban:1"]
    told = author.receive()
    assert "was hidden after several reports" in told.text and "Une idée discutable" in told.text
    # Hidden content can be neither supported nor commented, nor reported again.
    bob = chat("bob")
    gone = tr("en", "Contribution #{id} is not available any more (withdrawn or hidden).", id=1)
    assert gone in bob.send("/support 1").text
    assert gone in bob.send("/comment 1 encore").text
    assert gone in bob.send("/report 1 spam").text
    assert "Une idée discutable" not in bob.send("/ideas 1").text
    assert count(mapp, Support) == 0 and count(mapp, Comment) == 1
    audit = [(e.action, e.actor_role, e.reason) for e in rows(mapp, AuditEntry)]
    assert ("hide", "system", "auto:3") in audit


def test_the_threshold_is_a_setting(sqlite_url, clock, tmp_path):
    app = build(sqlite_url, clock, tmp_path, moderation_auto_hide_reports=1)
    chat = chats(app)
    contribute(chat("author"), "Une idée", None)
    chat("bob").send("/report 1 personal")
    assert _status(app) == "hidden"
    app.close()


def test_report_button_asks_for_a_reason(sapp):
    chat = chats(sapp)
    contribute(chat("author"), "Une idée", None)
    bob = chat("bob", buttons=True)
    replies = bob.send("/ideas 1")
    assert "rep:1" in replies.actions()
    assert "rep:1" not in chat("author", buttons=True).send("/ideas 1").actions()  # own idea
    replies = bob.press("rep:1")
    assert replies.actions() == [
        f"rep:1:{r}" for r in ("spam", "offensive", "offtopic", "personal", "other")
    ]
    assert count(sapp, Report) == 0
    replies = bob.press("rep:1:offtopic")
    assert "is recorded" in replies.text and replies[0].edit is not None
    assert [r.reason for r in rows(sapp, Report)] == ["offtopic"]
    # A comment is reported by its number, shown in the comments.
    bob.send("/comment 1 Hors sujet total")
    assert "c1 ·" in chat("carol").send("/comments 1").text
    chat("carol").send("/report c1 offtopic")
    assert [(r.target_type, r.target_id) for r in rows(sapp, Report)][-1] == ("comment", 1)


def test_moderation_buttons_end_to_end(mapp):
    chat, mods = _team(mapp)
    author = chat("author", language="fr")
    contribute(author, "Une idée limite", None)
    chat("reporter").send("/report 1 offensive")
    card = mods.receive()
    assert new_report() in card.text and "Une idée limite" in card.text
    assert "/hide 1" in card.text  # the typed commands are shown too
    # Hide, with a reason chosen on a button.
    replies = mods.press("mhide:1")
    assert replies.actions()[:2] == ["mhide:1:spam", "mhide:1:offensive"]
    assert _status(mapp) == "published"
    replies = mods.press("mhide:1:offensive")
    assert _status(mapp) == "hidden" and replies[0].edit is not None
    assert "mrest:1" in replies.actions()
    told = author.receive()
    assert tr("fr", "Offensive, hateful or abusive") in told.text
    assert (
        tr(
            "fr",
            "Your contribution #{id} was hidden by the moderators. Reason: {reason}. "
            "You can still read it with /mine.",
            id=1,
            reason=tr("fr", "Offensive, hateful or abusive"),
        )
        in told.text
    )
    # Restore, with a reason.
    replies = mods.press("mrest:1")
    replies = mods.press("mrest:1:mistake")
    assert _status(mapp) == "published"
    assert tr("fr", "Hidden by mistake") in author.receive().text
    # Reports were resolved by the decisions: the queue is empty.
    assert "Nothing awaits moderation" in mods.send("/queue").text
    # Typed equivalents, with a free-text reason.
    replies = mods.send("/hide 1 Propos injurieux envers un voisin")
    assert _status(mapp) == "hidden"
    assert "Propos injurieux envers un voisin" in author.receive().text
    mods.send("/restore 1 Reformulé après échange")
    assert _status(mapp) == "published"
    assert "Reformulé après échange" in author.receive().text
    actions = [(e.action, e.reason) for e in rows(mapp, AuditEntry) if e.action != "moderator.add"]
    assert actions == [
        ("modchat.add", None),
        ("hide", "offensive"),
        ("restore", "mistake"),
        ("hide", "Propos injurieux envers un voisin"),
        ("restore", "Reformulé après échange"),
    ]
    assert "Reformulé après échange" in mods.send("/audit").text


def test_premoderation_queue_and_approval(mapp):
    set_settings(mapp, premoderation=True)
    chat, mods = _team(mapp)
    author = chat("author")
    contribute(author, "Une idée à valider", None)
    assert _status(mapp) == "pending"
    assert "Une idée à valider" not in chat("bob").send("/ideas 1").text
    card = mods.receive()
    assert tr("fr", "🕒 New contribution #{id} awaits approval", id=1) in card.text
    replies = mods.press("mok:1")
    assert _status(mapp) == "published"
    # The moderator's own replies are in their language (en); the chat's cards in fr.
    assert "✅ Contribution #1 approved: it is published." in replies.text
    assert "was approved by the moderators" in author.receive().text
    assert "Une idée à valider" in chat("bob").send("/ideas 1").text


def test_queue_lists_what_awaits(sapp):
    set_settings(sapp, premoderation=True)
    chat, mods = _team(sapp)
    contribute(chat("a1"), "En attente", None)
    replies = mods.send("/queue")
    assert "awaits approval" in replies.text and replies.actions()[:1] == ["mok:1"]


def test_moderators_without_a_chat_get_the_queue_in_private(sapp):
    chat = chats(sapp)
    chat(ADMIN).send("/mod add console:mod1")
    mod1 = chat("mod1")
    mod1.send("/start")  # they wrote to the bot in private once
    contribute(chat("author"), "Une idée", None)
    chat("bob").send("/report 1 spam")
    assert "New report on contribution #1" in mod1.receive().text
    assert "New report on contribution #1" in chat(ADMIN).receive().text


def test_ban_and_unban(mapp):
    chat, mods = _team(mapp)
    author = chat("author")
    contribute(author, "Idée un", "Réussite un")
    author.send("/comment 1 Mon propre commentaire")
    chat("bob").send("/report 1 spam")
    mods.receive()
    replies = mods.press("mban:1")
    assert replies.actions()[0] == "mban:1:spam"
    replies = mods.press("mban:1:spam")
    from storage.models import Citizen

    banned_id = rows(mapp, Ban)[0].citizen_id
    pseudonym = next(c.pseudonym for c in rows(mapp, Citizen) if c.id == banned_id)
    assert f"({pseudonym}) is suspended" in replies.text
    assert [c.status for c in rows(mapp, Contribution)] == ["hidden", "hidden"]
    assert [c.status for c in rows(mapp, Comment)] == ["hidden"]
    told = author.receive()
    assert "suspended your participation" in told.text and "are hidden" in told.text
    # The banned author can read, not take part.
    suspended = "A moderator has suspended your participation in this consultation"
    assert suspended in author.send("/participate").text
    contribute(chat("carol"), "Idée de Carol", None)
    assert suspended in author.send("/support 3").text
    assert suspended in author.send("/comment 3 Bof").text
    assert suspended in author.send("/report 3 spam").text
    assert "Idée de Carol" in author.send("/ideas 1").text
    assert count(mapp, Support) == 0
    # Moderators and administrators cannot be banned.
    chat(ADMIN).send("/mod add console:carol")
    assert "cannot be suspended" in mods.send("/ban 3 spam").text
    # Lift it.
    assert pseudonym in mods.send("/bans").text
    replies = mods.press("munban")
    assert "may take part again" in replies.text
    assert [c.status for c in rows(mapp, Contribution)][:2] == ["published", "published"]
    assert "again" in author.receive().text
    assert count(mapp, Ban) == 0
    author.send("/support 3")
    assert count(mapp, Support) == 1
    bans = [(e.action, e.target) for e in rows(mapp, AuditEntry) if "ban" in e.action]
    assert bans == [("ban", f"citizen:{pseudonym}"), ("unban", f"citizen:{pseudonym}")]


def test_unban_by_pseudonym_typed(sapp):
    chat, mods = _team(sapp)
    contribute(chat("author"), "Idée", None)
    mods.send("/ban 1 Insultes répétées")
    ban = rows(sapp, Ban)[0]
    from storage.models import Citizen

    pseudonym = next(c.pseudonym for c in rows(sapp, Citizen) if c.id == ban.citizen_id)
    assert "No suspension of" in mods.send("/unban nobody").text
    assert "may take part again" in mods.send(f"/unban {pseudonym} appel accepté").text
    assert [e.reason for e in rows(sapp, AuditEntry) if e.action == "unban"] == ["appel accepté"]
