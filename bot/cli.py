"""The ``parlons`` command (typer)."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_base import DEBUG_KEY, CliError, ParlonsGroup, open_app
from bot.cli_moderation import export as export_command
from bot.cli_moderation import privacy_app
from bot.cli_scheduler import broadcast_app, schedule_app
from bot.cli_telegram import app as telegram_app
from bot.consultation_file import (
    ConsultationDocument,
    ConsultationFileError,
    load_consultation_file,
)
from bot.errors import DomainError
from bot.logs import configure_logging
from bot.services import Services
from bot.settings import Settings
from storage.db import Database
from storage.repositories import Repos

app = typer.Typer(
    cls=ParlonsGroup,
    help="Parlons: civic consultations in the messengers citizens already use.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
# Without --now, the demo starts now if the consultation is open, else this long before it
# closes (at 10:00 local time), or halfway through a shorter consultation.
DEMO_BEFORE_CLOSING = timedelta(days=12)


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error.")
    ] = False,
) -> None:
    """Parlons: civic consultations in the messengers citizens already use."""
    ctx.meta[DEBUG_KEY] = debug


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[
        str, typer.Argument(help="The revision to go to (default: the latest).")
    ] = "head",
) -> None:
    """Create or migrate the configured database (PARLONS_DATABASE_URL). The only command that
    creates a SQLite database (and its directory) that does not exist yet."""
    settings = Settings()
    configure_logging(settings)
    db = Database(settings.database_url, synchronous=settings.sqlite_synchronous)
    try:
        db.upgrade(revision)
    finally:
        db.dispose()
    typer.echo("database is up to date" if revision == "head" else f"database at {revision}")


@consultation_app.command("import")
def consultation_import(
    file: Path,
    archive_missing: Annotated[
        bool,
        typer.Option(
            help="Archive the questions the file leaves out (their contributions stay "
            "visible, marked as archived) instead of refusing the file."
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(help="Let the file replace a different consultation that has the same slug."),
    ] = False,
) -> None:
    """Validate a consultation file and create or update the consultation. A file that leaves
    out questions, or that is a different consultation with an existing slug, is refused."""
    try:
        doc = load_consultation_file(file)
    except ConsultationFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    application = open_app("write")
    try:
        with application.db.session() as session:
            services = Services(Repos(application.db, session), application.clock())
            result = services.consultations.import_document(
                doc, archive_missing=archive_missing, replace=replace
            )
    except DomainError as exc:  # a refused import: the reason, translated
        raise CliError(str(exc)) from None
    finally:
        application.close()
    typer.echo(f"{result.outcome} consultation {result.slug}")
    for question in result.archived:
        n = question.contributions
        if n:
            plural = "s" if n != 1 else ""
            typer.echo(f"archived question {question.key} ({n} contribution{plural} kept)")
        else:
            typer.echo(f"removed question {question.key} (it had no contributions)")


@consultation_app.command("list")
def consultation_list() -> None:
    """List the consultations with their phase."""
    application = open_app("read")
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
    application = open_app("read")
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
    for archived in info.archived:
        typer.echo(f"archived [{archived.key}] {archived.text(doc.language)}")
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

    settings = Settings()
    if settings.telegram_token is None and not settings.matrix_homeserver:
        raise CliError(
            "no channel configured: set PARLONS_TELEGRAM_TOKEN (Telegram) or "
            "PARLONS_MATRIX_HOMESERVER and its PARLONS_MATRIX_* settings (Matrix)"
        )
    derived: list[str] = []
    if settings.telegram_token is not None and settings.telegram_webhook_secret is None:
        from adapters.telegram import webhook_secret_for  # the secret derived from the token

        derived.append(webhook_secret_for(settings.telegram_token.get_secret_value()))
    application = open_app("write", settings=settings, extra_secrets=derived)
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
    now: Annotated[
        str | None,
        typer.Option(
            help="The demo's starting instant (ISO 8601; default: a moment when the "
            "consultation is open)."
        ),
    ] = None,
    consultation: Annotated[Path, typer.Option(help="Consultation file.")] = SEED,
) -> None:
    """Run the seed consultation in a console chat, on SQLite."""
    from adapters.console.channel import ConsoleChannel

    try:
        doc = load_consultation_file(consultation)
    except ConsultationFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    start = demo_start(doc, now, datetime.now(UTC))
    typer.echo(
        f"The demo's clock starts at {start.isoformat(timespec='minutes')}: “{doc.slug}” "
        f"is open from {doc.opens_at_utc.astimezone(start.tzinfo):%Y-%m-%d %H:%M} "
        f"to {doc.closes_at_utc.astimezone(start.tzinfo):%Y-%m-%d %H:%M} ({doc.timezone}).",
        err=True,
    )
    tmp = None
    if database is None:
        if script is not None:
            tmp = tempfile.TemporaryDirectory(prefix="parlons-demo-")
            database = Path(tmp.name) / "demo.sqlite3"
        else:
            database = ROOT / "var" / "demo.sqlite3"
    if reset and database.exists():
        database.unlink()
    origin = time.monotonic()

    def clock() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    settings = Settings(database_url=f"sqlite:///{database}", log_level="WARNING")
    application = open_app("create", settings=settings, clock=clock)
    try:
        with application.db.session() as session:
            Services(Repos(application.db, session), clock()).consultations.import_document(
                doc,
                archive_missing=True,
                replace=True,  # the demo's database is a sandbox
            )
    except BaseException:
        application.close()
        raise
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


def demo_start(doc: ConsultationDocument, given: str | None, now: datetime) -> datetime:
    """The demo's first instant: ``given`` (ISO 8601), else ``now`` if the consultation is open
    then, else 12 days before it closes at 10:00 local time (or halfway through a shorter
    consultation), in the consultation's time zone."""
    zone = doc.zone
    if given is not None:
        try:
            start = datetime.fromisoformat(given)
        except ValueError:
            raise CliError(f"--now {given!r}: not an ISO 8601 date-time") from None
        return start if start.tzinfo else start.replace(tzinfo=zone)
    opens, closes = doc.opens_at_utc, doc.closes_at_utc
    if opens <= now < closes:
        return now.astimezone(zone)
    local = (closes - DEMO_BEFORE_CLOSING).astimezone(zone)
    candidate = local.replace(hour=10, minute=0, second=0, microsecond=0)
    if not opens <= candidate < closes:
        candidate = (opens + (closes - opens) / 2).astimezone(zone)
    return candidate


if __name__ == "__main__":  # pragma: no cover
    app()
