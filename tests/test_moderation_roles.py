"""Roles: administrators from the settings, moderators per consultation granted by immutable
platform id, never recognised by a display name; every action in the audit log."""

from __future__ import annotations

from bot.messages import ChatType
from storage.models import Contribution
from storage.models_moderation import AuditEntry, Moderator
from tests.support.moderation import (
    ADMIN,
    SECOND_SLUG,
    chats,
    contribute,
    count,
    rows,
    second_consultation,
    tr,
)

RESERVED = "This command is reserved for the consultation's moderators."


def test_a_display_name_never_makes_a_moderator(mapp):
    chat = chats(mapp)
    contribute(chat("author"), "Une idée", None)
    admin = chat(ADMIN)
    admin.send("/mod add console:realmod")
    # Display names that look like a moderator, the moderator's id, or the administrator's.
    for user, name in (
        ("impostor1", "Modérateur"),
        ("impostor2", "console:realmod"),
        ("impostor3", f"console:{ADMIN}"),
        ("impostor4", "realmod"),
    ):
        impostor = chat(user, display_name=name)
        for line in ("/queue", "/hide 1 spam", "/ban 1 spam", "/approve 1", "/export", "/audit"):
            assert tr("en", RESERVED) in impostor.send(line).text, (user, line)
        assert tr("en", RESERVED) in impostor.send("/mod add console:impostor1").text
        impostor.buttons = True
        assert tr("en", RESERVED) in impostor.press_stale("mhide:1:spam").text
        assert tr("en", RESERVED) in impostor.press_stale("mban:1:spam").text
    assert rows(mapp, Contribution)[0].status == "published"
    assert [e.action for e in rows(mapp, AuditEntry)] == ["moderator.add"]
    # The real moderator, by immutable id, whatever their display name.
    real = chat("realmod", display_name="Just Bob")
    assert "Moderation queue" in real.send("/queue").text or "Nothing awaits" in real.last.text


def test_administrator_grants_and_revokes_moderators_by_platform_id(sapp):
    chat = chats(sapp)
    admin = chat(ADMIN)
    assert "/mod" in admin.send("/help").text
    assert "/mod " not in chat("citizen").send("/help").text
    replies = admin.send("/mod add @bob")
    assert "not an immutable platform id" in replies.text
    replies = admin.send("/mod add telegram:@bob")
    assert "not an immutable platform id" in replies.text
    assert count(sapp, Moderator) == 0
    replies = admin.send("/mod add console:mod1")
    assert "console:mod1 is now a moderator" in replies.text
    assert "was already a moderator" in admin.send("/mod add mod1").text  # own platform
    replies = admin.send("/mod list")
    assert "console:mod1" in replies.text
    mod1 = chat("mod1")
    assert "Nothing awaits moderation" in mod1.send("/queue").text
    assert "/queue" in mod1.send("/help").text
    assert "/mod " not in mod1.last.text  # administrators only
    assert tr("en", RESERVED) in mod1.send("/mod add console:mod2").text
    replies = admin.send("/mod remove console:mod1")
    assert "no longer a moderator" in replies.text
    assert tr("en", RESERVED) in mod1.send("/queue").text
    actions = [(e.action, e.target, e.actor_role) for e in rows(sapp, AuditEntry)]
    assert actions == [
        ("moderator.add", "console:mod1", "admin"),
        ("moderator.remove", "console:mod1", "admin"),
    ]
    replies = admin.send("/audit")
    assert "moderator.add console:mod1" in replies.text and f"console:{ADMIN}" in replies.text


def test_moderators_are_scoped_to_their_consultation(mapp):
    chat = chats(mapp)
    second = second_consultation(mapp)
    admin = chat(ADMIN)
    admin.send("/mod add console:mod1")  # the default consultation (the seed)
    contribute(chat("author"), "Idée dans la première", None)  # #1, seed
    author2 = chat("author2")
    author2.send(f"/start {second}")
    contribute(author2, "Idée dans la deuxième", None)  # #2, second consultation
    mod1 = chat("mod1")
    # Acting on content of the other consultation is refused, button or command.
    assert tr("en", RESERVED) in mod1.send("/hide 2 spam").text
    mod1.buttons = True
    assert tr("en", RESERVED) in mod1.press_stale("mhide:2:spam").text
    assert tr("en", RESERVED) in mod1.press_stale("mban:2:spam").text
    mod1.buttons = False
    assert [c.status for c in rows(mapp, Contribution)] == ["published", "published"]
    # Looking at the other consultation, mod1 is a citizen there.
    mod1.send(f"/start {second}")
    assert tr("en", RESERVED) in mod1.send("/queue").text
    assert tr("en", RESERVED) in mod1.send("/export").text
    # Back on their own consultation, they moderate it.
    mod1.send("/start ville-intelligente")
    replies = mod1.send("/hide 1 spam")
    assert "hidden" in replies.text
    assert [c.status for c in rows(mapp, Contribution)] == ["hidden", "published"]
    # The administrator names a consultation explicitly.
    admin.send(f"/mod add console:mod2 {SECOND_SLUG}")
    mod2 = chat("mod2")
    assert tr("en", RESERVED) in mod2.send("/hide 1 spam").text
    assert "hidden" in mod2.send("/hide 2 offtopic").text


def test_whoami_shows_the_immutable_id(sapp):
    chat = chats(sapp)
    replies = chat("zoe", display_name="Zoé").send("/whoami")
    assert "console:zoe" in replies.text and "participant" in replies.text
    assert "administrator" in chat(ADMIN).send("/whoami").text


def test_group_members_cannot_use_the_moderators_buttons(sapp):
    chat = chats(sapp)
    contribute(chat("author"), "Une idée", None)
    chat(ADMIN).send("/mod add console:mod1")
    group = dict(chat_type=ChatType.GROUP, chat_id="-100mods", buttons=True)
    mod1 = chat("mod1", **group)
    assert "moderators' chat" in mod1.send("/modchat").text or "moderation queue" in mod1.last.text
    chat("reporter").send("/report 1 spam")
    cards = mod1.receive()
    assert cards.actions()[:3] == ["mok:1", "mhide:1", "mban:1"]
    lurker = chat("lurker", **group)
    lurker.last, lurker.sent = cards, mod1.sent  # the same group: the same messages
    assert tr("en", RESERVED) in lurker.press("mhide:1").text
    assert rows(sapp, Contribution)[0].status == "published"


def test_moderation_commands_without_arguments_show_their_usage(sapp):
    chat = chats(sapp)
    chat(ADMIN).send("/mod add console:mod1")
    mod1 = chat("mod1")
    for line in ("/hide", "/restore", "/ban", "/approve", "/unban", "/mod add"):
        user = chat(ADMIN) if line.startswith("/mod") else mod1
        assert "Usage: " + line.split()[0] in user.send(line).text, line
    assert "Usage: /report" in chat("citizen").send("/report").text
