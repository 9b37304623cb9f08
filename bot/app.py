"""The composition root: settings → database → dispatcher → engine. Adapters and the scheduler
are built on top of the ``App`` by the command that runs them. No module-level singletons."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.consultation_file import ConsultationDocument, load_consultation_file
from bot.engine import Clock, Engine
from bot.handlers import build_dispatcher
from bot.router import Dispatcher
from bot.services import Services
from bot.settings import Settings
from storage.db import Database, utcnow
from storage.repositories import Repos


@dataclass
class App:
    settings: Settings
    db: Database
    dispatcher: Dispatcher
    engine: Engine
    clock: Clock

    def import_consultation(self, source: Path | ConsultationDocument) -> tuple[str, bool]:
        doc = load_consultation_file(source) if isinstance(source, Path) else source
        with self.db.session() as session:
            result = Services(
                Repos(self.db, session), self.clock()
            ).consultations.import_document(doc)
            return result.slug, result.created

    def close(self) -> None:
        self.db.dispose()


def build_app(
    settings: Settings | None = None,
    *,
    clock: Clock = utcnow,
    migrate: bool = True,
    read_only: bool = False,
) -> App:
    settings = settings or Settings()
    db = Database(
        settings.database_url, synchronous=settings.sqlite_synchronous, read_only=read_only
    )
    if migrate and not read_only:
        db.upgrade()
    dispatcher = build_dispatcher(admins=settings.admins, settings=settings)
    engine = Engine(db, dispatcher, clock=clock)
    return App(settings, db, dispatcher, engine, clock)
