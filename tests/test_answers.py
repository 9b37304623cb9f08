"""Official answers and merging duplicates (issue 15), through the chat harness on SQLite and
PostgreSQL: who is told, what the idea card shows, the audit log, bad input, and statistics
counters that stay equal to a recount after a merge."""

from __future__ import annotations

from sqlmodel import select

from bot.answers import compute_pending
from storage.models import Comment, Contribution, Support
from storage.models_answers import IdeaMerge, OfficialAnswer
from storage.models_legible import Disagreement
from storage.models_moderation import AuditEntry
from storage.models_scheduler import Broadcast, BroadcastDelivery
from storage.repositories import Repos
from tests.support.moderation import ADMIN, build, chats, contribute, count, rows, tr


def _all(app, model):  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        return list(s.exec(select(model)).all())


def _team(app):  # type: ignore[no-untyped-def]
    chat = chats(app)
    chat(ADMIN).send("/mod add console:mod1")
    return chat, chat("mod1")


def _status(app, cid):  # type: ignore[no-untyped-def]
    return next(c.status for c in rows(app, Contribution) if c.id == cid)


def _counters_equal_recount(app) -> None:  # type: ignore[no-untyped-def]
    with app.db.session() as s:
        repos = Repos(app.db, s)
        repos.stats.fold_counters()
        cid = rows(app, Contribution)[0].consultation_id
        assert repos.stats.counters(cid) == repos.stats.recount(cid)


def test_official_answer_reaches_author_and_supporters_with_news(mapp):
    chat, mod = _team(mapp)
    author = chat("author", language="fr")
    contribute(author, "Plus de pistes cyclables", None)
    bob, carol = chat("bob"), chat("carol")
    bob.send("/reminders on")
    bob.send("/support 1")
    carol.send("/reminders off")
    carol.send("/support 1")
    author.receive()

    reply = mod.send("/answer 1 accepté C'est prévu au budget 2027.")
    assert tr("en", "📣 Idea #{id} answered: {status}.", id=1, status="✅ accepted") in reply.text
    assert "1 supporter who accepts news" in reply.text
    # The author, in French, at once.
    told = author.receive().text
    assert (
        tr("fr", "The moderators answered your idea #{id}: {status}.", id=1, status="✅ accepté")
        in told
    )
    assert "C'est prévu au budget 2027." in told
    # The supporters who accept news: a broadcast to bob only (carol declined the news).
    [broadcast] = rows(mapp, Broadcast, Broadcast.kind == "answer")
    deliveries = rows(mapp, BroadcastDelivery, BroadcastDelivery.broadcast_id == broadcast.id)
    assert [d.chat_id for d in deliveries] == ["bob"]
    # The card shows the answer; the audit log has it; the answer is in the row.
    assert "C'est prévu au budget 2027." in carol.send("/ideas 1").text
    assert [a.status for a in _all(mapp, OfficialAnswer)] == ["accepted"]
    assert [(e.action, e.target, e.reason) for e in rows(mapp, AuditEntry)][-1] == (
        "answer",
        "contribution:1",
        "accepted",
    )
    # Answering again replaces the answer (one per idea).
    mod.send("/answer 1 à l'étude Finalement, à l'étude.")
    assert [a.status for a in _all(mapp, OfficialAnswer)] == ["study"]


def test_bad_answers_change_nothing(mapp):
    chat, mod = _team(mapp)
    contribute(chat("author"), "Une idée", None)
    bob = chat("bob")
    # A citizen cannot answer.
    assert tr("en", "This is for moderators only.") in bob.send("/answer 1 accepted Oui").text or (
        "moderat" in bob.last.text
    )
    # Unknown status: the usage; unknown idea: said so; no text: how to give it.
    assert "/answer" in mod.send("/answer 1 peutetre bla").text
    assert "#999" in mod.send("/answer 999 accepted Bla").text
    assert "/answer 1 rejected" in mod.send("/answer 1 rejected").text
    assert count(mapp, OfficialAnswer) == 0
    assert not [e for e in rows(mapp, AuditEntry) if e.action == "answer"]


def test_answer_buttons_on_the_idea_card(mapp):
    chat, _mod = _team(mapp)
    contribute(chat("author"), "Une idée", None)
    mod = chat("mod1", buttons=True, platform="console")
    card = mod.send("/ideas 1")
    assert "ans:1" in card.actions()
    picker = mod.press("ans:1")
    assert {"ans:1:accepted", "ans:1:study", "ans:1:rejected"} <= set(picker.actions())
    hint = mod.press("ans:1:rejected")
    assert "/answer 1 rejected" in hint.text
    # Citizens have no such button.
    assert "ans:1" not in chat("bob", buttons=True).send("/ideas 1").actions()


def test_merge_counts_each_supporter_once_and_keeps_counters_exact(mapp):
    chat, mod = _team(mapp)
    contribute(chat("author1"), "Des bancs au parc", None)  # 1
    contribute(chat("author2"), "Installer des bancs dans le parc", None)  # 2
    both, only1, only2, against = chat("both"), chat("only1"), chat("only2"), chat("against")
    both.send("/support 1")
    both.send("/support 2")
    only1.send("/support 1")
    only2.send("/support 2")
    against.send("/disagree 1")
    chat("author2").send("/support 1")  # the target's author supported the duplicate
    only1.send("/comment 1 Oui, près de l'aire de jeux")
    for name in ("author1", "author2"):
        chat(name).receive()
    _counters_equal_recount(mapp)

    reply = mod.send("/merge 1 2")
    assert tr("en", "🔀 #{id} merged into #{into}.", id=1, into=2) in reply.text
    # Supports: once per citizen, never the target's author on their own idea.
    supporters = sorted(s.citizen_id for s in rows(mapp, Support, Support.contribution_id == 2))
    assert len(supporters) == len(set(supporters)) == 3  # both, only1, only2
    assert count(mapp, Support, Support.contribution_id == 1) == 0
    assert count(mapp, Disagreement, Disagreement.contribution_id == 2) == 1
    assert count(mapp, Comment, Comment.contribution_id == 2) == 1
    assert _status(mapp, 1) == "merged"
    assert [(m.contribution_id, m.into_id) for m in _all(mapp, IdeaMerge)] == [(1, 2)]
    _counters_equal_recount(mapp)
    # Both authors are told; the merged idea points to its target.
    assert "#2" in chat("author1").receive().text
    assert "#1" in chat("author2").receive().text
    answer = only2.send("/support 1").text
    assert (
        tr(
            "en",
            "Idea #{id} was merged into #{into}: support or comment #{into} instead.",
            id=1,
            into=2,
        )
        in answer
    )
    assert [e.action for e in rows(mapp, AuditEntry)][-1] == "merge"


def test_bad_merges_change_nothing(mapp):
    chat, mod = _team(mapp)
    contribute(chat("author1"), "Idée un", None)
    contribute(chat("author2"), "Idée deux", None)
    chat("bob").send("/support 1")
    assert tr("en", "An idea cannot be merged into itself.") in mod.send("/merge 1 1").text
    assert "#999" in mod.send("/merge 1 999").text
    assert "/merge" in mod.send("/merge 1").text  # the usage
    chat("bob").send("/merge 1 2")
    mod.send("/merge 1 2")
    # A second merge of the merged idea (either way round) is refused.
    again = mod.send("/merge 2 1").text
    assert "#1" in again and "#2" in again
    assert [(m.contribution_id, m.into_id) for m in _all(mapp, IdeaMerge)] == [(1, 2)]
    _counters_equal_recount(mapp)


def test_groups_are_computed_off_the_event_path_and_cached(db_url, clock, tmp_path):
    mapp = build(db_url, clock, tmp_path, opinion_groups_min_votes=4)
    chat, mod = _team(mapp)
    for n in range(4):
        contribute(chat(f"author{n}"), f"Idée numéro {n}", None)
    # Two camps: supporters of 1 and 2 disagree with 3 and 4, and the other way round.
    for n in range(12):
        voter = chat(f"voter{n}")
        pro, con = ((1, 2), (3, 4)) if n % 2 else ((3, 4), (1, 2))
        for idea in pro:
            voter.send(f"/support {idea}")
        for idea in con:
            voter.send(f"/disagree {idea}")
    first = mod.send("/groups").text
    assert (
        tr(
            "en",
            "The opinion groups are being computed from the latest votes. Ask again with "
            "/groups in a minute.",
        )
        in first
    )
    assert compute_pending(mapp.db, mapp.settings, mapp.clock()) == [1]
    shown = mod.send("/groups").text
    assert "Group A" in shown and "Group B" in shown
    assert "6 participants" in shown
    # Nothing to compute again while the votes have not changed; a new vote asks again.
    assert compute_pending(mapp.db, mapp.settings, mapp.clock()) == []
    chat("late").send("/support 1")
    assert "being computed" in mod.send("/groups").text
    # Citizens may not see them.
    assert "Group A" not in chat("bob").send("/groups").text
    mapp.close()


def test_merge_keeps_the_support_unique_constraint(mapp):
    """A support moved by a merge still obeys one support per (citizen, idea)."""
    chat, mod = _team(mapp)
    contribute(chat("a1"), "Un", None)
    contribute(chat("a2"), "Deux", None)
    chat("x").send("/support 1")
    chat("x").send("/support 2")
    mod.send("/merge 1 2")
    with mapp.db.session() as s:
        pairs = s.exec(select(Support.contribution_id, Support.citizen_id)).all()
    assert len(pairs) == len(set(pairs)) == 1


# --------------------------------------------------------------------------- through Telegram


async def test_an_official_answer_reaches_the_author_through_telegram(sqlite_url, clock):
    """The real python-telegram-bot against the Bot API test server: a moderator answers from
    the idea card's button and the typed command; the author gets the answer in their chat."""
    from tests.conftest import make_app
    from tests.support.bot_api_server import BotApiServer
    from tests.support.telegram import running_bot

    app = make_app(sqlite_url, clock, admins=["telegram:4242"])
    alice, admin = 1001, 4242
    try:
        async with (
            BotApiServer(bot_username="parlons_test_bot") as server,
            running_bot(app, server, admins=app.settings.admins) as tg,
        ):
            await tg.say(alice, "/start", language_code="fr")
            await tg.accept(alice, language_code="fr")
            with app.db.session() as s:
                author = Repos(app.db, s).citizens.by_platform_id("telegram", str(alice))
                assert author is not None
                question = s.exec(select(Contribution.question_id)).first()
                now = app.clock()
                s.add(
                    Contribution(
                        consultation_id=1,
                        question_id=question or 1,
                        citizen_id=author.id,
                        text="Des fontaines à eau potable",
                        status="published",
                        created_at=now,
                        updated_at=now,
                    )
                )
            [idea_id] = [c.id for c in rows(app, Contribution)]
            card = next(
                r for r in await tg.say(admin, "/ideas 1") if f"ans:{idea_id}" in r.callback_data
            )
            picker, _u = await tg.press(admin, f"ans:{idea_id}", card.message_id)
            assert any(f"ans:{idea_id}:accepted" in r.callback_data for r in picker)
            mark = len(server.sent)
            await tg.say(admin, f"/answer {idea_id} accepted Prévu au budget 2027.")
            to_alice = [r for r in server.sent[mark:] if str(r.chat_id) == str(alice)]
            text = "\n".join(r.plain_text or "" for r in to_alice)
            expected = tr(
                "fr",
                "The moderators answered your idea #{id}: {status}.",
                id=idea_id,
                status="✅ accepté",
            )
            assert expected in text and "Prévu au budget 2027." in text
    finally:
        app.close()


def test_the_author_of_a_merged_idea_sees_where_it_went_and_cannot_edit_it(mapp):
    chat, mod = _team(mapp)
    first = chat("author1")
    contribute(first, "Un composteur par quartier", None)
    contribute(chat("author2"), "Des composteurs collectifs", None)
    mod.send("/answer 2 study Étude en cours avec la métropole.")
    mod.send("/merge 1 2")
    mine = first.send("/mine").text
    assert tr("en", "Merged into #{into}.", into=2) in mine
    assert "/editidea" not in mine and "/withdraw" not in mine  # no buttons for it
    refused = tr(
        "en",
        "Idea #{id} was merged into #{into}: support or comment #{into} instead.",
        id=1,
        into=2,
    )
    assert refused in first.send("/editidea 1").text
    assert refused in first.send("/withdraw 1").text
    assert _status(mapp, 1) == "merged"
    # The target's card shows its official answer.
    assert "Étude en cours avec la métropole." in chat("bob").send("/ideas 1").text


def test_crossed_merges_cannot_both_pass_on_postgresql(pg_url, clock, tmp_path):
    """1 → 2 and 2 → 1 at the same time: the second waits for the first's row locks, then sees
    the merge and refuses (fails if the rows read before the lock are not read again)."""
    import threading

    from bot.answers import AnswerService, MergedIdea
    from bot.moderation import Actor
    from tests.support.moderation import build

    app = build(pg_url, clock, tmp_path)
    chat = chats(app)
    contribute(chat("a1"), "Un", None)
    contribute(chat("a2"), "Deux", None)
    chat("x").send("/support 1")
    outcome: dict[str, object] = {}

    def merge(source: int, target: int, hold: threading.Event | None = None) -> None:
        try:
            with app.db.session() as s:
                repos = Repos(app.db, s)
                admin = repos.citizens.by_platform_id("console", "x")
                assert admin is not None
                actor = Actor(admin, "console", ADMIN, True)
                AnswerService(repos, app.clock(), app.settings).merge(actor, source, target)
                if hold is not None:
                    hold.wait(30)
            outcome[f"{source}>{target}"] = "merged"
        except MergedIdea:
            outcome[f"{source}>{target}"] = "refused"

    release = threading.Event()
    first = threading.Thread(target=merge, args=(1, 2, release))
    first.start()
    with app.db.session() as s:  # wait until the first holds its locks (polled, not timed)
        from sqlalchemy import text

        for _ in range(3000):
            if s.get(Contribution, 1) is not None and _locked(s):
                break
            threading.Event().wait(0.01)
    second = threading.Thread(target=merge, args=(2, 1))
    second.start()
    with app.db.session() as s:
        for _ in range(3000):
            waiting = s.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
            if waiting:
                break
            threading.Event().wait(0.01)
    release.set()
    first.join(30)
    second.join(30)
    assert outcome == {"1>2": "merged", "2>1": "refused"}
    assert [(m.contribution_id, m.into_id) for m in _all(app, IdeaMerge)] == [(1, 2)]
    _counters_equal_recount(app)
    app.close()


def _locked(session) -> bool:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    return bool(
        session.execute(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'contribution' AND l.mode = 'RowShareLock' AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()
    )


def test_without_buttons_the_status_picker_is_numbered_options(mapp):
    """Matrix and the console: the card's 📣 and the statuses are numbered options with their
    typed commands; "1" and then "2" pick them."""
    chat, mod = _team(mapp)
    contribute(chat("author"), "Une idée", None)
    card = mod.send("/ideas 1").text
    assert "/answer 1" in card  # the typed equivalent of the 📣 button
    options = mod._options()
    number = next(n for n, data in options.items() if data == "ans:1")
    picker = mod.send(number).text
    assert "/answer 1 study" in picker
    study = next(n for n, data in mod._options().items() if data == "ans:1:study")
    assert "/answer 1 study" in mod.send(study).text
    mod.send("/answer 1 under study Nous regardons.")
    assert [a.status for a in _all(mapp, OfficialAnswer)] == ["study"]
