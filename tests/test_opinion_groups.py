"""Opinion groups (issue 15): the computation finds planted camps, is deterministic, is
recomputed identically from the published export, is posted with the closing results (text and
chart), and is computed by the scheduler's worker off the event path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlmodel import select

from bot.answers import compute_pending
from bot.exports import build_export
from bot.opinions import Groups, Votes, compute_groups, groups_from_export
from bot.services import Services
from storage.models import Citizen, Contribution, Support
from storage.models_legible import Disagreement
from storage.repositories import Repos
from tests.support.harness import Chat, FakeClock
from tests.support.moderation import build
from tests.support.scheduling import Scheduled, consultation_doc, scheduled, scheduler_app


def planted(n: int = 300, ideas: int = 40, seed: int = 3) -> tuple[Votes, np.ndarray]:
    """Three camps: camp g supports the ideas i with i % 3 == g and disagrees with the others
    (10 % noise); idea 0 (id 100) is supported by everyone."""
    rng = np.random.default_rng(seed)
    camp = np.arange(n) % 3
    rows, cols, vals = [], [], []
    for p in range(n):
        for j in rng.choice(ideas, size=15, replace=False):
            v = 1 if j == 0 or j % 3 == camp[p] else -1
            if j != 0 and rng.random() < 0.1:
                v = -v
            rows.append(p)
            cols.append(j)
            vals.append(v)
    votes = Votes(
        n, tuple(range(100, 100 + ideas)), np.array(rows), np.array(cols), np.array(vals)
    )
    return votes, camp


def test_planted_camps_are_found_with_their_defining_and_consensus_ideas():
    votes, camp = planted()
    groups = compute_groups(votes, seed=7, min_votes=5)
    assert len(groups.groups) == 3
    # 2 dimensions and 10 % noise misplace a few participants, not more.
    assert sum(g.size for g in groups.groups) == len(camp)
    assert all(abs(g.size - 100) <= 10 for g in groups.groups), groups.groups
    # Each group's defining ideas belong to one camp (idea id 100 + j, camp j % 3).
    camps = [{(d.idea - 100) % 3 for d in g.defining} for g in groups.groups]
    assert all(len(c) == 1 for c in camps) and len(set().union(*camps)) == 3
    assert 100 in {c.idea for c in groups.consensus}
    assert groups.divisive and 100 not in {d.idea for d in groups.divisive}
    # Deterministic, and the JSON form round-trips.
    assert compute_groups(votes, seed=7, min_votes=5) == groups
    assert Groups.from_json_data(json.loads(json.dumps(groups.to_json_data()))).to_json_data() == (
        groups.to_json_data()
    )


def test_too_few_votes_give_no_groups_and_say_who_was_left_out():
    votes, _camp = planted(n=30)
    groups = compute_groups(votes, seed=7, min_votes=16)  # everyone cast 15
    assert groups.groups == () and groups.left_out == 30


# --------------------------------------------------------------------------- with a database


def _camps(app, voters: int = 12) -> list[int]:  # type: ignore[no-untyped-def]
    """Four ideas through the chat; two camps of voters written directly (supports and
    disagreements rows, as the /sort handlers write them)."""
    from tests.support.moderation import chats, contribute

    chat = chats(app)
    for n in range(4):
        contribute(chat(f"author{n}"), f"Idée {n}", None)
    now = app.clock()
    with app.db.session() as s:
        ideas = [c.id for c in s.exec(select(Contribution).order_by(Contribution.id))]
        for n in range(voters):
            z = Citizen(
                platform="console",
                platform_user_id=f"voter{n}",
                pseudonym=f"p-voter-{n}",
                created_at=now,
                last_seen_at=now,
            )
            s.add(z)
            s.flush()
            pro = ideas[:2] if n % 2 else ideas[2:]
            for idea in ideas:
                model = Support if idea in pro else Disagreement
                s.add(model(contribution_id=idea, citizen_id=z.id, created_at=now))
    return ideas


def test_groups_recomputed_from_the_export_equal_the_published_ones(db_url, clock, tmp_path):
    app = build(db_url, clock, tmp_path, opinion_groups_min_votes=4, opinion_groups_seed=42)
    _camps(app)
    with app.db.session() as s:
        Repos(app.db, s).answers.request_groups(1, "stale", app.clock())
    assert compute_pending(app.db, app.settings, app.clock()) == [1]
    with app.db.session() as s:
        services = Services(Repos(app.db, s), app.clock())
        info = services.consultations.default()
        data = json.loads(build_export(services, info, app.settings).to_json())
    section = data["opinions"]
    assert section["seed"] == 42 and section["min_votes"] == 4
    assert section["participants"] == 12 and len(section["matrix"]) == 48
    # Anonymised: indices and idea ids only, no pseudonym or platform id anywhere in it.
    assert all(isinstance(x, int) for t in section["matrix"] for x in t)
    assert "voter" not in json.dumps(section)
    published = section["groups"]
    assert published is not None and [g["size"] for g in published["groups"]] == [6, 6]
    assert groups_from_export(data).to_json_data() == published
    # The same votes under another seed: another anonymous order, the same groups' sizes.
    other = dict(section, seed=7)
    recomputed = groups_from_export({"opinions": other})
    assert [g.size for g in recomputed.groups] == [6, 6]
    app.close()


# --------------------------------------------------------------------------- the closing

OPENS = datetime(2019, 9, 2, 8, 0, tzinfo=UTC)
CLOSES = datetime(2019, 10, 31, 17, 0, tzinfo=UTC)


@pytest.fixture
def world(db_url: str) -> Iterator[Scheduled]:
    clock = FakeClock(OPENS + timedelta(days=1))
    doc = consultation_doc(opens_at="2019-09-02T10:00:00", closes_at="2019-10-31T18:00:00")
    app = scheduler_app(db_url, clock, doc, opinion_groups_min_votes=4)
    s = scheduled(app)
    yield s
    s.close()
    app.close()


async def test_the_closing_results_post_the_opinion_groups_with_a_chart(world):
    await world.tick()
    Chat(world.app.engine, user="admin", language="en").send("/start")
    _camps(world.app)
    world.app.clock.now = CLOSES  # type: ignore[attr-defined]
    await world.tick()
    parts = [r for r in world.channel.records if r.chat_id == "admin"]
    text = "\n".join(r.text for r in parts if r.text)
    assert "Opinion groups" in text and "Group A: 6 participants" in text
    assert "Group B: 6 participants" in text
    files = {r.attachment: r.message.attachment for r in parts if r.attachment}
    assert files["groups-en.png"].data.startswith(b"\x89PNG")  # type: ignore[union-attr]


async def test_the_scheduler_worker_computes_requested_groups(world):
    await world.tick()
    _camps(world.app)
    admin = Chat(world.app.engine, user="admin", language="en")
    assert "being computed" in admin.send("/groups").text
    stop = asyncio.Event()
    task = asyncio.create_task(world.service._opinions(stop))
    try:
        for _ in range(600):  # the worker's thread; polled, not timed
            if "Group A" in admin.send("/groups").text:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert "Group A: 6 participants" in admin.last.text


async def test_supporters_get_the_official_answer_through_the_paced_broadcast(world):
    """The answer's broadcast is rendered and sent by the scheduler's sender, in each
    supporter's language, to those who accept news only."""
    from tests.support.moderation import contribute

    await world.tick()
    engine = world.app.engine
    author = Chat(engine, user="ann", language="fr")
    contribute(author, "Des toilettes publiques", None)
    ben, cam = Chat(engine, user="ben", language="en"), Chat(engine, user="cam", language="fr")
    for supporter, news in ((ben, "on"), (cam, "off")):
        supporter.send(f"/reminders {news}")
        supporter.send("/support 1")
    admin = Chat(engine, user="admin", language="en")
    admin.send("/answer 1 rejected Pas de budget cette année.")
    await world.tick()
    to = {r.chat_id: r.text for r in world.channel.records if r.text}
    assert "The moderators answered idea #1, which you support: ❌ rejected." in to["ben"]
    assert "Pas de budget cette année." in to["ben"]
    assert "cam" not in to and "ann" not in to  # cam declined the news; ann was told directly
