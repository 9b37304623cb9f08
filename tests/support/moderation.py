"""Shared pieces of the moderation and privacy tests: an app with an administrator and a
private privacy directory, a second consultation, chats, and small readers of the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from bot.app import App
from bot.consultation_file import ConsultationDocument, load_consultation_file
from bot.i18n import gettext, use_locale
from tests.conftest import SEED, make_app
from tests.support.harness import Chat, FakeClock

ADMIN = "admin"  # console:admin is the administrator in these tests
DOC = load_consultation_file(SEED)
SECOND_SLUG = "deuxieme-consultation"


def build(url: str, clock: FakeClock, tmp_path: Path, **settings: Any) -> App:
    settings.setdefault("admins", [f"console:{ADMIN}"])
    settings.setdefault("privacy_dir", str(tmp_path / "privacy"))
    return make_app(url, clock, **settings)


@pytest.fixture
def mapp(db_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[App]:
    """The app on SQLite and PostgreSQL, with an administrator."""
    app = build(db_url, clock, tmp_path)
    yield app
    app.close()


@pytest.fixture
def sapp(sqlite_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[App]:
    """The app on SQLite only, with an administrator."""
    app = build(sqlite_url, clock, tmp_path)
    yield app
    app.close()


def chats(app: App) -> Callable[..., Chat]:
    def factory(user: str = "alice", **kw: Any) -> Chat:
        kw.setdefault("language", "en")
        return Chat(app.engine, user=user, **kw)

    return factory


def tr(locale: str, msgid: str, **params: object) -> str:
    with use_locale(locale):
        return gettext(msgid).format(**params)


def count(app: App, model: Any, *where: Any) -> int:
    with app.db.session() as s:
        stmt = select(func.count()).select_from(model)
        for w in where:
            stmt = stmt.where(w)
        return s.exec(stmt).one()


def rows(app: App, model: Any, *where: Any) -> list[Any]:
    with app.db.session() as s:
        stmt = select(model)
        for w in where:
            stmt = stmt.where(w)
        return list(s.exec(stmt.order_by(model.id)).all())


def contribute(chat: Chat, *answers: str | None) -> None:
    """Answer the questions in turn (skipping where the answer is None)."""
    chat.send("/participate")
    for answer in answers:
        if answer is None:
            chat.press("skip")
            continue
        chat.send(answer)
        chat.press("ok")


def _tick(app: App) -> None:
    # Documents are cached by (id, updated_at): let the clock move so an import is seen.
    advance = getattr(app.clock, "advance", None)
    if advance is not None:
        advance(seconds=1)


def second_consultation(app: App, **settings: Any) -> str:
    _tick(app)
    data = DOC.to_json()
    data["slug"] = SECOND_SLUG
    data["title"] = "Deuxième consultation"
    data["settings"].update(settings)
    app.import_consultation(ConsultationDocument.from_json(data))
    return SECOND_SLUG


def set_settings(app: App, **settings: Any) -> None:
    _tick(app)
    data = DOC.to_json()
    data["settings"].update(settings)
    app.import_consultation(ConsultationDocument.from_json(data))
