"""Issue 15, reading thousands of ideas: similar ideas in the preview, /search, /sort with
disagreements. Search and similarity run on both databases (PostgreSQL's full-text search, SQLite's
FTS5 with Snowball stems)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bot.app import App
from storage.models import Contribution, Support
from storage.models_legible import Disagreement, SortDealt
from storage.repositories import Repos
from tests.support.harness import Chat, FakeClock


def publish(app: App, user: str, text: str, question: int = 1, clock: FakeClock | None = None):
    """A published idea of ``user`` (written straight to the database: the set-up of a test)."""
    db = app.engine.db
    now = app.engine.clock()
    with db.session() as s:
        repos = Repos(db, s)
        citizen, _new = repos.citizens.resolve("console", user, user.capitalize(), now)
        info = Repos(db, s).consultations.all()[0]
        qid = repos.consultations.questions(info.id)[question - 1].id
        row = repos.contributions.add(
            Contribution(
                consultation_id=info.id,
                question_id=qid,
                citizen_id=citizen.id,
                text=text,
                created_at=now,
                updated_at=now,
            )
        )
        return row.id


def count(app: App, model, **where) -> int:
    with app.engine.db.session() as s:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(col(getattr(model, key)) == value)
        return int(s.execute(stmt).scalar_one())


def contributions(app: App) -> int:
    return count(app, Contribution)


# --------------------------------------------------------------------------- similar ideas


def test_preview_shows_similar_ideas_and_supporting_one_instead_publishes_nothing(any_app):
    first = publish(any_app, "alice", "Plus de pistes cyclables sécurisées pour les vélos")
    publish(any_app, "carol", "Des bancs et des arbres sur la place du marché")
    publish(any_app, "dan", "Bike lanes: more of them, and safer", question=2)  # other question
    bob = Chat(any_app.engine, user="bob")
    bob.send("/participate")
    preview = bob.send("Une piste cyclable sécurisée pour mon vélo, rue Nationale")
    assert "Idées similaires déjà publiées" in preview.text
    assert f"#{first} Plus de pistes cyclables" in preview.text
    assert "bancs" not in preview.text  # unrelated idea
    assert "Bike lanes" not in preview.text  # another question
    assert "Publier la mienne quand même" in preview.text
    before = contributions(any_app)
    replies = bob.press(f"sins:{first}")
    assert f"Vous soutenez #{first}" in replies.text
    assert "n’a pas été publié" in replies.text
    assert contributions(any_app) == before  # the draft was dropped
    assert count(any_app, Support, contribution_id=first) == 1
    # The next question is asked; the draft is gone (/confirm has nothing to publish).
    assert "Question 2 sur 2" in replies.text


def test_preview_of_an_english_draft_finds_english_plurals_and_publish_anyway(any_app):
    idea = publish(any_app, "alice", "Safer bike lanes along the river")
    bob = Chat(any_app.engine, user="bob", language="en")
    bob.send("/participate")
    preview = bob.send("We need a bike lane by the river")
    assert f"#{idea} Safer bike lanes" in preview.text
    before = contributions(any_app)
    bob.send("/confirm")  # publish mine anyway
    assert contributions(any_app) == before + 1


def test_preview_without_similar_idea_is_unchanged(any_app):
    publish(any_app, "alice", "Des bancs sur la place du marché")
    bob = Chat(any_app.engine, user="bob")
    bob.send("/participate")
    preview = bob.send("Un compost collectif dans chaque quartier")
    assert "similaires" not in preview.text
    assert "✅ Valider" in preview.text
    assert not [a for a in preview.actions() if a.startswith("sins:")]


def test_own_ideas_are_not_offered_as_similar(any_app):
    publish(any_app, "bob", "Des pistes cyclables sécurisées")
    bob = Chat(any_app.engine, user="bob")
    bob.send("/participate")
    assert "similaires" not in bob.send("Des pistes cyclables sécurisées partout").text


# --------------------------------------------------------------------------- search


def test_search_finds_stemmed_words_in_both_languages_and_filters_by_question(any_app):
    a = publish(any_app, "alice", "Plus de pistes cyclables pour les vélos")
    b = publish(any_app, "carol", "Des vélos en libre-service à la gare", question=2)
    c = publish(any_app, "dan", "Secure parking for bikes near schools")
    publish(any_app, "erin", "Des arbres dans les cours d’école")
    bob = Chat(any_app.engine, user="bob")
    found = bob.send("/search vélo")
    assert f"#{a}" in found.text and f"#{b}" in found.text
    assert f"#{c}" not in found.text
    assert "2 idées trouvées" in found.text
    only_2 = bob.send("/search q:2 vélos")
    assert f"#{b}" in only_2.text and f"#{a}" not in only_2.text
    english = bob.send("/search bike parking")
    assert f"#{c}" in english.text and "1 idée trouvée" in english.text
    # Every word must be there.
    assert "Aucune idée" in bob.send("/search vélo parking").text


def test_search_pages_like_ideas_with_buttons_and_numbered_options(any_app):
    ids = [publish(any_app, f"u{n}", f"Idée numéro {n} sur les transports") for n in range(7)]
    for buttons in (True, False):
        bob = Chat(any_app.engine, user=f"bob{buttons}", buttons=buttons)
        first = bob.send("/search transports")
        assert "Page 1 sur 2" in first.text and "7 idées trouvées" in first.text
        assert len(first.subjects()) == 5
        second = bob.press("srchp:2")
        assert "Page 2 sur 2" in second.text
        shown = {s[1] for s in first.subjects()} | {s[1] for s in second.subjects()}
        assert shown == set(ids)
        assert "Page 1 sur 2" in bob.send("/searchpage 1").text


def test_bad_searches_get_a_clear_answer(any_app):
    publish(any_app, "alice", "Des pistes cyclables")
    bob = Chat(any_app.engine, user="bob", language="en")
    assert "Which words?" in bob.send("/search q:1").text
    assert "does not exist" in bob.send("/search q:9 vélo").text
    assert "don't understand the filter" in bob.send("/search status:lost vélo").text
    assert "moderator" in bob.send("/search status:pending vélo").text.lower()
    assert "no search to continue" in bob.send("/searchpage 2").text
    assert "Usage" in bob.send("/search").text
    # Words that are only punctuation or stop words match nothing, without an error.
    assert "No idea matches" in bob.send("/search the and --").text


def test_search_follows_edits_and_moderation(any_app):
    idea = publish(any_app, "alice", "Des pistes cyclables")
    bob = Chat(any_app.engine, user="bob")
    assert f"#{idea}" in bob.send("/search cyclables").text
    db = any_app.engine.db
    with db.session() as s:
        row = s.get(Contribution, idea)
        row.text = "Des jardins partagés"
        row.updated_at = row.updated_at + timedelta(seconds=1)
        s.add(row)
    assert "Aucune idée" in bob.send("/search cyclables").text
    assert f"#{idea}" in bob.send("/search jardin").text
    with db.session() as s:
        row = s.get(Contribution, idea)
        row.status = "hidden"
        s.add(row)
    assert "Aucune idée" in bob.send("/search jardin").text


# --------------------------------------------------------------------------- sorting


@pytest.mark.parametrize("buttons", [True, False])
def test_sort_deals_each_idea_once_and_records_opinions(any_app, buttons):
    ideas = [publish(any_app, f"u{n}", f"Idée {n}") for n in range(3)]
    publish(any_app, "bob", "Mon idée")  # never dealt to its author
    bob = Chat(any_app.engine, user="bob", buttons=buttons)
    dealt = bob.send("/sort")
    first = dealt.subjects()[0][1]
    assert ("sort", first) in dealt.subjects()
    assert "3 idées restent à trier" in dealt.text
    second_card = bob.press(f"sagr:{first}")
    assert f"Vous soutenez #{first}" in second_card.text
    second = second_card.subjects()[0][1]
    third_card = bob.press(f"sdis:{second}")
    third = third_card.subjects()[0][1]
    end = bob.press(f"spas:{third}")
    assert "Vous avez trié toutes les idées" in end.text
    assert {first, second, third} == set(ideas)
    assert count(any_app, Support, contribution_id=first) == 1
    assert count(any_app, Disagreement, contribution_id=second) == 1
    assert count(any_app, Disagreement) == 1 and count(any_app, Support) == 1
    # Never dealt again.
    assert "Vous avez trié toutes les idées" in bob.send("/sort").text


def test_one_opinion_per_idea_disagreement_withdrawable_counts_only(any_app):
    idea = publish(any_app, "alice", "Une idée discutée")
    bob = Chat(any_app.engine, user="bob", language="en")
    carol = Chat(any_app.engine, user="carol", language="en")
    bob.send(f"/support {idea}")
    replies = bob.send(f"/disagree {idea}")
    assert "disagreement with #" in replies.text
    assert count(any_app, Support, contribution_id=idea) == 0  # disagreeing withdrew it
    assert "already disagree" in bob.send(f"/disagree {idea}").text
    assert count(any_app, Disagreement) == 1
    carol.send(f"/disagree {idea}")
    card = Chat(any_app.engine, user="dan", language="en").send("/sort")
    assert "2 disagreements" in card.text
    assert "Bob" not in card.text and "Carol" not in card.text
    bob.send(f"/agree {idea}")  # supporting withdraws the disagreement
    assert count(any_app, Disagreement, contribution_id=idea) == 1
    assert count(any_app, Support, contribution_id=idea) == 1
    assert "withdrawn" in carol.send(f"/undisagree {idea}").text
    assert "do not disagree" in carol.send(f"/undisagree {idea}").text
    assert count(any_app, Disagreement) == 0
    assert (
        "own"
        in Chat(any_app.engine, user="alice", language="en").send(f"/disagree {idea}").text.lower()
        or count(any_app, Disagreement) == 0
    )


def test_disagreement_unique_constraint_in_the_database(any_app):
    idea = publish(any_app, "alice", "Une idée")
    db = any_app.engine.db
    now = any_app.engine.clock()
    with db.session() as s:
        repos = Repos(db, s)
        bob, _ = repos.citizens.resolve("console", "bob", "Bob", now)
        assert repos.legible.disagree(idea, bob.id, now) is True
        assert repos.legible.disagree(idea, bob.id, now) is False
    assert count(any_app, Disagreement) == 1


def test_reactions_on_a_dealt_card_and_thumbs_down_on_an_idea_card(any_app):
    ideas = [publish(any_app, f"u{n}", f"Idée {n}") for n in range(2)]
    bob = Chat(any_app.engine, user="bob")  # no buttons, like Matrix
    card = bob.send("/sort")
    first = card.subjects()[0][1]
    mid = bob.message_id_of(("sort", first))
    nxt = bob.react(mid, "👎")
    assert count(any_app, Disagreement, contribution_id=first) == 1
    second = nxt.subjects()[0][1]
    assert second != first and second in ideas
    assert "retiré" in bob.react(mid, "👎", removed=True).text
    assert count(any_app, Disagreement) == 0
    # 👎 on an ordinary idea card (/ideas) records a disagreement too, and deals nothing.
    listing = bob.send("/ideas 1")
    card_id = bob.message_id_of(("contribution", second))
    replies = bob.react(card_id, "👎")
    assert listing and count(any_app, Disagreement, contribution_id=second) == 1
    assert not replies.subjects()


def test_sorting_needs_the_support_phase_and_changes_nothing_when_closed(any_app, clock):
    idea = publish(any_app, "alice", "Une idée")
    bob = Chat(any_app.engine, user="bob")
    clock.advance(days=30)
    assert "terminée" in bob.send("/sort").text
    bob.send(f"/disagree {idea}")
    assert count(any_app, Disagreement) == 0
    assert count(any_app, SortDealt) == 0


def test_forget_erases_disagreements_and_what_was_dealt(app):
    idea = publish(app, "alice", "Une idée")
    publish(app, "carol", "Une autre idée")
    bob = Chat(app.engine, user="bob")
    bob.send("/sort")
    bob.send(f"/disagree {idea}")
    assert count(app, Disagreement) == 1 and count(app, SortDealt) >= 1
    data = bob.send("/mydata")
    assert data  # the export lists them (see bot.privacy: every table with citizen_id)
    bob.send("/forget yes")
    assert count(app, Disagreement) == 0
    assert count(app, SortDealt) == 0
