"""The ``parlons`` command (typer)."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from bot.app import App, build_app
from bot.cli_moderation import export as export_command
from bot.cli_moderation import privacy_app
from bot.cli_scheduler import broadcast_app, schedule_app
from bot.cli_telegram import app as telegram_app
from bot.consultation_file import ConsultationFileError
from bot.errors import DomainError
from bot.services import Services
from bot.settings import Settings
from storage.repositories import Repos

app = typer.Typer(
    help="Parlons: civic consultations in the messengers citizens already use.",
    no_args_is_help=True,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
consultation_app = typer.Typer(help="Consultations (YAML files).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(consultation_app, name="consultation")
app.add_typer(telegram_app, name="telegram")
app.add_typer(schedule_app, name="schedule")  # issue 5: scheduler
app.add_typer(broadcast_app, name="broadcast")
app.command("export")(export_command)  # issue 6: open data
app.add_typer(privacy_app, name="privacy")

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "consultations" / "ville-intelligente.yaml"
# The demo runs inside the seed consultation's period: 12 days before it closed.
DEMO_NOW = "2019-08-19T10:00:00+02:00"


def _app(settings: Settings | None = None, **kw: object) -> App:
    settings = settings or Settings()
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return build_app(settings, **kw)  # type: ignore[arg-type]


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to the configured database (PARLONS_DATABASE_URL)."""
    _app().close()
    typer.echo("database is up to date")


@consultation_app.command("import")
def consultation_import(file: Path) -> None:
    """Validate a consultation file and create or update the consultation."""
    application = _app()
    try:
        slug, created = application.import_consultation(file)
    except ConsultationFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        application.close()
    typer.echo(f"{'created' if created else 'updated'} consultation {slug}")


@consultation_app.command("list")
def consultation_list() -> None:
    """List the consultations with their phase."""
    application = _app()
    now = application.clock()
    with application.db.session() as session:
        repos = Repos(application.db, session)
        services = Services(repos, now)
        for row in repos.consultations.all():
            info = services.consultations.info(row)
            typer.echo(
                f"{info.slug}\t{info.phase(now)}\t{info.opens_at:%Y-%m-%d} → "
                f"{info.closes_at:%Y-%m-%d}\t{info.document.title}"
            )
    application.close()


@consultation_app.command("show")
def consultation_show(slug: str) -> None:
    """Show a consultation: schedule, questions and statistics."""
    application = _app()
    now = application.clock()
    try:
        with application.db.session() as session:
            services = Services(Repos(application.db, session), now)
            info = services.consultations.by_slug(slug)
            stats = services.consultations.statistics(info)
    except DomainError as exc:  # an unknown slug
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        application.close()
    doc = info.document
    typer.echo(f"{doc.title}\n{info.slug} · {info.phase(now)} · {info.timezone}")
    typer.echo(f"opens  {info.opens_at.isoformat()}\ncloses {info.closes_at.isoformat()}")
    for n, q in enumerate(doc.questions, 1):
        typer.echo(f"Q{n} [{q.key}] {q.text}")
    typer.echo(
        f"about pages: {len(doc.about)} · testimonials: {len(doc.testimonials)} · "
        f"languages: {', '.join(doc.languages)}"
    )
    typer.echo(
        f"days {stats.days} · participants {stats.participants} · contributions "
        f"{stats.contributions} · supports {stats.supports} · visitors {stats.visitors}"
    )


@app.command()
def run(
    no_scheduler: Annotated[bool, typer.Option(help="Do not run the scheduler here.")] = False,
) -> None:
    """Run every configured channel (Telegram, Matrix) and the scheduler."""
    import asyncio

    from bot.serve import serve

    application = _app()
    try:
        asyncio.run(serve(application, with_scheduler=not no_scheduler))
    finally:
        application.close()


@app.command()
def demo(
    script: Annotated[
        Path | None,
        typer.Option(help="Read the citizen's lines from FILE, print the transcript and exit."),
    ] = None,
    database: Annotated[
        Path | None,
        typer.Option(
            help="SQLite file (default: var/demo.sqlite3; a temporary one with --script)"
        ),
    ] = None,
    reset: Annotated[bool, typer.Option(help="Start from an empty database.")] = False,
    user: Annotated[str, typer.Option("--as", help="The first citizen's name.")] = "alice",
    lang: Annotated[str, typer.Option(help="The first citizen's language (fr|en).")] = "fr",
    now: Annotated[str, typer.Option(help="The demo's starting instant (ISO 8601).")] = DEMO_NOW,
    consultation: Annotated[Path, typer.Option(help="Consultation file.")] = SEED,
) -> None:
    """Run the seed consultation in a console chat, on SQLite."""
    from adapters.console.channel import ConsoleChannel

    tmp = None
    if database is None:
        if script is not None:
            tmp = tempfile.TemporaryDirectory(prefix="parlons-demo-")
            database = Path(tmp.name) / "demo.sqlite3"
        else:
            database = ROOT / "var" / "demo.sqlite3"
    if reset and database.exists():
        database.unlink()
    start = datetime.fromisoformat(now)
    origin = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    settings = Settings(database_url=f"sqlite:///{database}", log_level="WARNING")
    application = _app(settings, clock=clock)
    try:
        application.import_consultation(consultation)
    except ConsultationFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    channel = ConsoleChannel(application.engine, sys.stdout, user=user, language=lang)
    try:
        if script is not None:
            channel.run_script(script.read_text(encoding="utf-8").splitlines())
        else:
            channel.interactive()
    finally:
        application.close()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":  # pragma: no cover
    app()
