"""Routes declared once, gates applied by the router for every entry path.

The matrix test swaps every route's handler for a recorder and sends each route through each of
its entry paths (typed command, button, numbered option, dialogue text, reply to an idea card,
reaction, file), for citizens who accepted the privacy notice and who did not, in a private
chat and in a group, as citizen, moderator and administrator. The handler must run exactly
when the route's declared gates allow it, and a refused event is never left unanswered (except
a bare number in a group, which is ordinary chat). The Telegram tests replay, through the real
python-telegram-bot and the Bot API test server, the holes outside testing found.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest
from sqlmodel import func, select

from bot.actions import pack
from bot.handlers import guards, scheduling
from bot.messages import ChatType, RichText
from bot.params import Kind, Param
from bot.router import Chats, Ctx, Dispatcher, Role, Route, Router, State
from storage.models import Comment, Contribution
from storage.models_moderation import PrivacyConsent
from storage.repositories import Repos
from tests.conftest import make_app
from tests.support.bot_api_server import BotApiServer
from tests.support.harness import Chat, FakeClock
from tests.support.telegram import running_bot

GROUP = "-100routes"
USERS = {  # (role, consented) -> user id
    (Role.CITIZEN, True): "cit-yes",
    (Role.CITIZEN, False): "cit-no",
    (Role.MODERATOR, True): "mod-yes",
    (Role.MODERATOR, False): "mod-no",
    (Role.ADMIN, True): "adm-yes",
    (Role.ADMIN, False): "adm-no",
}


def _token(param: Param) -> str | None:
    """A valid token for a required parameter (None: leave optional ones out)."""
    if param.optional:
        return None
    return {
        Kind.INT: "1",
        Kind.TARGET: "1",
        Kind.WORD: "x",
        Kind.TEXT: "texte",
        Kind.CHOICE: next(iter(param.choices), "x"),
    }[param.kind]


def _tokens(route: Route) -> list[str]:
    return [t for t in (_token(p) for p in route.params) if t is not None]


def _recording(dispatcher: Dispatcher, calls: list[str]) -> Dispatcher:
    """The same routes and gates, with handlers that only record that they ran."""
    swapped: dict[int, Route] = {}

    def swap(route: Route) -> Route:
        def record(ctx: Ctx, name: str = route.name) -> object:
            calls.append(name)
            return ctx.reply(RichText().p(f"ran {name}"))

        return swapped.setdefault(id(route), dataclasses.replace(route, handler=record))

    routers = []
    for r in dispatcher.routers:
        routers.append(
            Router(
                r.name,
                routes=[swap(x) for x in r.routes],
                states={s: swap(x) for s, x in r.states.items()},
                texts=[(m, swap(x)) for m, x in r.texts],
                reactions=[(m, swap(x)) for m, x in r.reactions],
                files=[swap(x) for x in r.files],
            )
        )
    return Dispatcher(
        routers,
        admins=dispatcher.admins,
        middlewares=[scheduling.remember_private_chat, *guards.MIDDLEWARES],
        gated=guards.GATED,
        settings=dispatcher.settings,
    )


@pytest.fixture
def world(sqlite_url: str, clock: FakeClock) -> Iterator[tuple]:
    app = make_app(
        sqlite_url,
        clock,
        admins=["console:adm-yes", "console:adm-no"],
        flood_actions_per_minute=1_000_000,
        flood_newcomer_actions_per_minute=1_000_000,
        flood_comments_per_hour=1_000_000,
        flood_newcomer_comments_per_hour=1_000_000,
    )
    author = Chat(app.engine, user="author")
    author.send("/participate")
    author.send("Une idée à soutenir")
    author.send("/confirm")
    admin = Chat(app.engine, user="adm-yes")
    admin.send("/mod add console:mod-yes")
    admin.send("/mod add console:mod-no")
    chats: dict[tuple[str, bool], Chat] = {}
    for (_role, consented), user in USERS.items():
        for private in (True, False):
            chat = Chat(
                app.engine,
                user=user,
                language="en",
                accept_privacy=consented,
                chat_type=ChatType.PRIVATE if private else ChatType.GROUP,
                chat_id=None if private else GROUP,
            )
            chat.send("/ideas 1")  # an idea card to reply to and react on, in that chat
            chats[user, private] = chat
    with app.db.session() as s:  # the author and the three who accepted
        assert s.exec(select(func.count()).select_from(PrivacyConsent)).one() == 4
    calls: list[str] = []
    app.engine.dispatcher = _recording(app.dispatcher, calls)
    yield app, chats, calls
    app.close()


def _set_dialogue(app, chat: Chat, **data: object) -> None:  # type: ignore[no-untyped-def]
    with app.db.session() as session:
        repos = Repos(app.db, session)
        key = (chat.platform, chat.chat_id or chat.user, chat.user)
        row = repos.dialogues.load(*key, app.clock())
        merged = dict(row.data or {})
        state = data.pop("state", None)
        merged.update(data)
        row.data = merged
        if state is not None:
            row.state = str(state)
        repos.dialogues.save(row, app.clock())


def _paths(dispatcher: Dispatcher, route: Route) -> list[str]:
    paths = []
    if route.command:
        paths.append("command")
    if route.verb:
        paths += ["button", "option"]
    if route in dispatcher.states.values():
        paths.append("state")
    if any(route is r for _m, r in dispatcher.texts):
        paths.append("reply")
    if any(route is r for _m, r in dispatcher.reactions):
        paths.append("reaction")
    if route in dispatcher.files:
        paths.append("file")
    return paths


def _send(app, dispatcher: Dispatcher, chat: Chat, route: Route, path: str):  # type: ignore[no-untyped-def]
    tokens = _tokens(route)
    if path == "command":
        return chat.send(" ".join([f"/{route.command}", *tokens]))
    if path == "button":
        return chat.press_stale(pack(route.verb, *tokens), message_id="m1")
    if path == "option":
        _set_dialogue(app, chat, options={"1": pack(route.verb, *tokens)})
        return chat.send("1")
    if path == "state":
        state = next(s for s, r in dispatcher.states.items() if r is route)
        extra = {"target": 1} if state in (State.COMMENTING, State.EDITING) else {"q": 0}
        _set_dialogue(app, chat, state=state, **extra)
        return chat.send("Un texte de dialogue")
    if path == "reply":
        card = chat.message_id_of(("contribution", 1))
        return chat.send("Une réponse à la carte", reply_to=card)
    if path == "reaction":
        # 👍 on an idea card supports it (ideas); 👎 disagrees with it (legible, issue 15).
        key = "👎" if route.name == "sort_reaction" else "👍"
        return chat.react(chat.message_id_of(("contribution", 1)), key)
    if path == "file":
        return chat.send_file("c.yaml", b"slug: x\n")
    raise AssertionError(path)


def _allowed(route: Route, path: str, role: Role, consented: bool, private: bool) -> bool:
    effective = role
    if role == Role.MODERATOR and not (route.role >= Role.MODERATOR or route.role_aware):
        effective = Role.CITIZEN  # moderators are looked up only where it matters
    if route.role > effective:
        return False
    if path == "option" and not private:
        return False  # a bare number in a group is chat, never an option
    if not (Chats.PRIVATE if private else Chats.GROUP) & route.chats:
        return False
    return not route.consent or consented


def test_every_route_every_path_applies_its_declared_gates(world) -> None:  # type: ignore[no-untyped-def]
    app, chats, calls = world
    dispatcher = app.engine.dispatcher
    routes = [r for r in dispatcher.routes.values()]
    cases = 0
    wrong: list[str] = []
    for route in routes:
        for path in _paths(dispatcher, route):
            for (role, consented), private in itertools.product(USERS, (True, False)):
                chat = chats[USERS[role, consented], private]
                before = len(calls)
                replies = _send(app, dispatcher, chat, route, path)
                ran = calls[before:] == [route.name]
                expected = _allowed(route, path, role, consented, private)
                cases += 1
                where = f"{route.name} via {path}, {role.name}, consented={consented}, " + (
                    "private" if private else "group"
                )
                if ran != expected:
                    wrong.append(f"{where}: ran={ran}, expected {expected}: {replies.text[:90]}")
                elif not ran and not replies and not (path == "option" and not private):
                    wrong.append(f"{where}: refused without an answer")
    assert not wrong, "\n".join(wrong)
    # Every entry path was exercised, and each route family too.
    assert cases > 1000
    assert {"reply_comment", "reaction", "state:answering", "state:commenting"} <= {
        r.name for r in routes
    }


def test_participation_routes_declare_consent_and_a_phase() -> None:
    """What writes a contribution, a support, a comment or a report is declared as taking part:
    the declaration is the only place the gate is decided (no verb list elsewhere)."""
    app_dispatcher = _recording(
        __import__("bot.handlers", fromlist=["build_dispatcher"]).build_dispatcher(), []
    )
    takes_part = {
        "participate", "confirm", "edit", "skip", "state:answering", "support", "unsupport",
        "comment", "state:commenting", "reply_comment", "reaction", "editidea", "state:editing",
        "withdraw", "mdelok", "report",
    }  # fmt: skip
    declared = {name for name, r in app_dispatcher.routes.items() if r.consent}
    assert takes_part <= declared, takes_part - declared
    assert all(app_dispatcher.routes[n].phase for n in takes_part - {"report"})


# --------------------------------------------------------------------------- typed parameters


@pytest.mark.parametrize(
    "line",
    [
        "/support 99999999999999999999999",
        "/comment 99999999999999999999 texte",
        "/ideas abc",
        "/ideas 1 new x",
        "/comments 1 x",
        "/about abc",
        "/testimonials zz",
        "/unsupport -3",
        "/withdraw 0",
    ],
)
def test_wrong_arguments_get_the_usage_and_change_nothing(app, chat, line: str) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language="fr")
    command = line.split()[0]
    replies = alice.send(line)
    assert replies.text.startswith("Utilisation\u202f: " + command) or replies.text.startswith(
        "Usage: " + command
    ), replies.text
    english = chat("bob", language="en").send(line)
    assert english.text.startswith("Usage: " + command), english.text
    with app.db.session() as s:
        assert s.exec(select(func.count()).select_from(Comment)).one() == 0


def test_localized_choices(app, chat) -> None:  # type: ignore[no-untyped-def]
    alice = chat("alice", language="fr")
    alice.send("/participate")
    alice.send("Une idée")
    alice.send("/confirm")
    bob = chat("bob", language="fr")
    assert "#1" in bob.send("/ideas 1 nouvelles").text
    replies = bob.send("/report 1 hors sujet")
    assert "#1" in replies.text and "?" not in replies.text.splitlines()[0]
    from storage.models_moderation import Report

    with app.db.session() as s:
        (report,) = s.exec(select(Report)).all()
        assert report.reason == "offtopic"


def test_a_closed_consultation_says_so_before_asking_for_consent(app, chat, clock) -> None:  # type: ignore[no-untyped-def]
    clock.advance(days=400)  # after the seed's closing
    newcomer = chat("newcomer", language="en", accept_privacy=False)
    replies = newcomer.send("/participate")
    assert "This consultation closed" in replies.text
    assert not any(a.startswith("pvok") for a in replies.actions())  # no privacy notice


# --------------------------------------------------------------------------- Telegram


BOT = "parlons_test_bot"


async def _count(app, model) -> int:  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        return int(s.exec(select(func.count()).select_from(model)).one())


async def test_telegram_group_members_without_consent_cannot_take_part(app) -> None:  # type: ignore[no-untyped-def]
    """Outside testing published comments and contributions from a group without consent:
    by replying to an idea card, after the Comment button, and Participate + reply + Confirm."""
    group = -100777
    kw = {"chat_id": group, "chat_type": "supergroup", "language_code": "en"}
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        # An author (in private, with consent) publishes idea #1.
        await tg.say(11, "/start", language_code="en")
        await tg.accept(11, language_code="en")
        await tg.say(11, "/participate", language_code="en")
        preview = [r for r in await tg.say(11, "Une idée", language_code="en") if r.buttons]
        await tg.press(11, "ok", preview[-1].message_id, language_code="en")
        assert await _count(app, Contribution) == 1
        # In the group, someone who never accepted the notice opens the ideas.
        cards = await tg.say(22, f"/ideas@{BOT} 1", **kw)
        card = next(r for r in cards if "sup:1" in r.callback_data)
        # 1. A reply to the idea card.
        answer = await tg.say(22, "Mon commentaire", reply_to_message_id=card.message_id, **kw)
        # 2. The Comment button, then text.
        press_kw = {"chat_id": group, "language_code": "en"}
        pressed, _uid = await tg.press(22, "com:1", card.message_id, **press_kw)
        await tg.say(22, "Un autre commentaire", **kw)
        # 3. Participate, a reply, Confirm.
        await tg.say(22, f"/participate@{BOT}", **kw)
        await tg.say(22, "Ma contribution", **kw)
        await tg.say(22, f"/confirm@{BOT}", **kw)
        # A support from the group's button is taking part too.
        await tg.press(22, "sup:1", card.message_id, **press_kw)
        assert await _count(app, Comment) == 0
        assert await _count(app, Contribution) == 1
        with app.db.session() as s:
            assert s.exec(select(func.count()).select_from(PrivacyConsent)).one() == 1
            from storage.models import Support

            assert s.exec(select(func.count()).select_from(Support)).one() == 0
        # Each attempt was answered in the group with the way to a private chat, never with
        # the privacy notice (which is personal) nor silence.
        private = "Let's continue in a private chat"
        assert private in " ".join(r.plain_text or "" for r in answer)
        assert private in " ".join(r.plain_text or "" for r in pressed)
        assert all("I accept" not in (r.plain_text or "") for r in server.sent)


async def test_telegram_every_button_press_is_answered_exactly_once(app) -> None:  # type: ignore[no-untyped-def]
    async with BotApiServer(bot_username=BOT) as server, running_bot(app, server) as tg:
        await tg.say(33, "/start", language_code="en")
        await tg.accept(33, language_code="en")
        presses = [
            "sup:99999999999999999999999",  # an id no database holds (was OverflowError)
            "sup:424242",  # no such idea
            "nosuchverb:1",  # an old button of a feature that is gone
            "ideas:1:discover:1",  # an ordinary one
            "cls:confirm",  # a moderator's button pressed by a citizen
        ]
        for data in presses:
            _records, update_id = await tg.press(33, data, 1, language_code="en")
            answers = [a for a in server.callback_answers if a.update_id == update_id]
            assert len(answers) == 1, (data, answers)
        assert not any("went wrong" in (r.plain_text or "") for r in server.sent)
