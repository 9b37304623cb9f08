"""The closing results: the figures equal those recomputed from the published CSV and JSON,
the ranking, formula neutralisation, the chart, the size limit, and a pure module."""

from __future__ import annotations

import ast
import csv
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import results as results_module
from bot.broadcasts import BroadcastService
from bot.domain import Statistics, consultation_days
from bot.messages import render_html
from bot.results import ContributionFigures, QuestionInfo, compute_results, neutralise
from bot.services import Services
from storage.repositories import Repos
from tests.support.harness import Chat, FakeClock
from tests.support.scheduling import Scheduled, consultation_doc, scheduled, scheduler_app

OPENS = datetime(2019, 9, 2, 8, 0, tzinfo=UTC)
CLOSES = datetime(2019, 10, 31, 17, 0, tzinfo=UTC)


@pytest.fixture
def world(db_url: str) -> Iterator[Scheduled]:
    clock = FakeClock(OPENS + timedelta(days=1))
    doc = consultation_doc(opens_at="2019-09-02T10:00:00", closes_at="2019-10-31T18:00:00")
    app = scheduler_app(db_url, clock, doc)
    s = scheduled(app)
    yield s
    s.close()
    app.close()


def contribute(chat: Chat, *answers: str | None) -> None:
    chat.send("/participate")
    for answer in answers:
        if answer is None:
            chat.press("skip")
            continue
        chat.send(answer)
        chat.press("ok")


def take_part(s: Scheduled) -> dict[str, Chat]:
    engine = s.app.engine
    chats = {name: Chat(engine, user=name, language="fr") for name in ("ann", "ben", "cam", "dan")}
    chats["admin"] = Chat(engine, user="admin", language="en")
    for chat in chats.values():
        chat.send("/start")
    contribute(chats["ann"], '=HYPERLINK("http://evil.example","clic")', "Des jardins")  # 1, 2
    contribute(chats["ben"], "@SUM(1+1) et <b>gras</b>", None)  # 3
    contribute(chats["cam"], "-2+3 bancs", "Un budget participatif")  # 4, 5
    for name in ("ben", "cam", "dan"):
        chats[name].send("/support 2")
    for name in ("ann", "dan"):
        chats[name].send("/support 5")
    chats["dan"].send("/support 4")
    chats["ann"].send("/support 3")
    chats["dan"].send("/comment 5 Excellente idée")
    chats["ben"].send("/comment 5 Oui !")
    chats["ben"].send("/comment 1 Hum")
    chats["dan"].send("/ideas 1")  # a visit without taking part
    return chats


async def test_results_figures_equal_those_recomputed_from_the_published_export(world):
    await world.tick()
    take_part(world)
    with world.app.db.session() as session:
        services = Services(Repos(world.app.db, session), CLOSES)
        live = services.consultations.statistics(services.consultations.by_slug("demo"))
    world.app.clock.now = CLOSES  # type: ignore[attr-defined]
    await world.tick()
    parts = [r for r in world.channel.records if r.chat_id == "admin"]
    files = {r.attachment: r.message.attachment for r in parts if r.attachment}
    assert set(files) == {"chart-en.png", "results-demo.csv", "results-demo.json"}
    published = json.loads(files["results-demo.json"].data)  # type: ignore[union-attr]
    rows = list(csv.DictReader(io.StringIO(files["results-demo.csv"].data.decode())))  # type: ignore[union-attr]

    # Recompute every figure from the files alone.
    c = published["consultation"]
    days = consultation_days(
        datetime.fromisoformat(c["opens_at"]),
        datetime.fromisoformat(c["closes_at"]),
        datetime.fromisoformat(published["computed_at"]),
    )
    from_json = Statistics(
        days=days,
        participants=len(set(published["participants"])),
        contributions=sum(len(q["contributions"]) for q in published["questions"]),
        supports=sum(x["supports"] for q in published["questions"] for x in q["contributions"]),
        visitors=published["visitors"],
        comments=sum(x["comments"] for q in published["questions"] for x in q["contributions"]),
    )
    from_csv = (
        len(rows),
        sum(int(r["supports"]) for r in rows),
        sum(int(r["comments"]) for r in rows),
    )
    assert from_json == Statistics(**published["statistics"])
    assert from_csv == (from_json.contributions, from_json.supports, from_json.comments)
    # … and they are the live statistics at the closing, and what the message says.
    assert from_json == live
    assert live == Statistics(
        days=59, participants=4, contributions=5, supports=7, visitors=5, comments=3
    )
    text = parts[0].text
    for line in (
        "59 days of consultation",
        "4 participants",
        "5 contributions",
        "7 supports",
        "5 visitors",
    ):
        assert line in text

    # Ranking per question: most supports, then most comments, then the earliest.
    ranking = {
        q["position"]: [(x["id"], x["supports"], x["comments"]) for x in q["contributions"]]
        for q in published["questions"]
    }
    assert ranking == {1: [(3, 1, 0), (4, 1, 0), (1, 0, 1)], 2: [(2, 3, 0), (5, 2, 2)]}
    assert [(int(r["question"]), int(r["rank"]), int(r["contribution_id"])) for r in rows] == [
        (1, 1, 3), (1, 2, 4), (1, 3, 1), (2, 1, 2), (2, 2, 5),
    ]  # fmt: skip
    # Who supported what is never published; authors appear under their pseudonym only.
    assert "ann" not in files["results-demo.json"].data.decode()  # type: ignore[union-attr]
    assert all(len(r["author"]) == 16 for r in rows)


async def test_spreadsheet_formulas_are_neutralised_in_the_csv_only(world):
    await world.tick()
    take_part(world)
    world.app.clock.now = CLOSES  # type: ignore[attr-defined]
    await world.tick()
    files = {r.attachment: r.message.attachment for r in world.channel.records if r.attachment}
    rows = list(csv.DictReader(io.StringIO(files["results-demo.csv"].data.decode())))  # type: ignore[union-attr]
    texts = {int(r["contribution_id"]): r["text"] for r in rows}
    assert texts[1] == '\'=HYPERLINK("http://evil.example","clic")'
    assert texts[3].startswith("'@SUM") and texts[4] == "'-2+3 bancs"
    assert texts[2] == "Des jardins"
    published = json.loads(files["results-demo.json"].data)  # type: ignore[union-attr]
    exact = {x["id"]: x["text"] for q in published["questions"] for x in q["contributions"]}
    assert exact[1].startswith("=HYPERLINK")  # JSON keeps the text as written
    # In the message, user text is escaped by the renderer.
    message = next(r.message for r in world.channel.records if r.chat_id == "ben")
    assert "&lt;b&gt;gras&lt;/b&gt;" in render_html(message.text)


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@A1", "\t=1", "\r=1"])
def test_neutralise(value):
    assert neutralise(value) == "'" + value
    assert neutralise("Bonjour =1") == "Bonjour =1"


def test_results_message_fits_in_a_telegram_message_and_chart_is_a_png():
    from bot.domain import ConsultationInfo
    from bot.i18n import use_locale
    from bot.notices import chart_png
    from bot.notices import results as results_parts
    from bot.router import Capabilities

    doc = consultation_doc(opens_at="2019-09-02T10:00:00", closes_at="2019-10-31T18:00:00")
    info = ConsultationInfo(1, "demo", "closed", OPENS, CLOSES, "Europe/Paris", doc, (1, 2))
    long = "Une idée très longue " * 40
    figures = [
        ContributionFigures(
            i, ("lieux", "reussites")[i % 2], f"p{i}", long, OPENS, 1000 - i, i % 7
        )
        for i in range(1, 400)
    ]
    questions = [QuestionInfo(n, q.key, q.text) for n, q in enumerate(doc.questions, 1)]
    results = compute_results(
        slug="demo", title=doc.title, timezone="Europe/Paris", opens_at=OPENS,
        closes_at=CLOSES, now=CLOSES, questions=questions, contributions=figures,
        participants=[f"p{i}" for i in range(1, 400)], visitors=1234,
    )  # fmt: skip
    caps = Capabilities(buttons=True, max_length=4096)
    for locale in ("fr", "en"):
        with use_locale(locale):
            png = chart_png(info, results, locale)
            parts = results_parts(info, results, {}, locale, "citizen", CLOSES, caps, None)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert len(render_html(parts[0].text)) <= 4096
        assert "#1 " in parts[0].text.plain() or "#1" in parts[0].text.plain()


def test_results_module_is_pure():
    tree = ast.parse(Path(results_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    # The standard library and the domain values only: no database, no messenger.
    outside = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert outside <= {"bot.domain"}, outside


def test_results_json_round_trip():
    questions = [QuestionInfo(1, "q", "Q?")]
    figures = [ContributionFigures(7, "q", "p", "t", OPENS, 2, 1)]
    results = compute_results(
        slug="s", title="T", timezone="UTC", opens_at=OPENS, closes_at=CLOSES, now=CLOSES,
        questions=questions, contributions=figures, participants=["p", "x", "p"], visitors=3,
    )  # fmt: skip
    again = results_module.Results.from_json(results.to_json())
    assert again == results and again.statistics.participants == 2


async def test_results_via_the_service_match_the_live_statistics_on_both_databases(world):
    await world.tick()
    take_part(world)
    with world.app.db.session() as session:
        repos = Repos(world.app.db, session)
        services = Services(repos, CLOSES)
        info = services.consultations.by_slug("demo")
        computed = BroadcastService(repos, CLOSES).compute_results(info)  # closed: in parallel
        assert computed.statistics == services.consultations.statistics(info)
        earlier = CLOSES - timedelta(days=1)  # still open: one query after the other
        live = BroadcastService(repos, earlier).compute_results(info)
        assert live.statistics == Services(repos, earlier).consultations.statistics(info)
        assert live.participants == computed.participants and live.questions == computed.questions


async def test_the_consultations_own_moderators_receive_the_results_files(world):
    await world.tick()
    chats = take_part(world)
    mia = Chat(world.app.engine, user="mia", language="fr")
    mia.send("/start")  # her private chat is known
    replies = chats["admin"].send("/mod add console:mia")
    assert "mia" in replies.text
    world.app.clock.now = CLOSES  # type: ignore[attr-defined]
    await world.tick()
    files = {r.attachment for r in world.channel.records if r.chat_id == "mia" and r.attachment}
    assert {"results-demo.csv", "results-demo.json"} <= files
    # a participant who is not a moderator gets the chart, not the export files
    ann = {r.attachment for r in world.channel.records if r.chat_id == "ann" and r.attachment}
    assert "results-demo.csv" not in ann
