"""``parlons export SLUG`` (open data) and ``parlons privacy …`` (erasures after a restore,
expiry of old personal data, purge of what erasures left behind)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.app import App
from bot.cli_base import Mode, open_app
from bot.exports import build_export
from bot.privacy import Housekeeping, PrivacyService, erasure_log_path, read_erasure_log
from bot.services import Services
from storage.repositories import Repos

privacy_app = typer.Typer(help="Citizens' rights: erasures and retention.", no_args_is_help=True)


def _app(mode: Mode = "write") -> App:
    return open_app(mode)


def export(
    slug: Annotated[str, typer.Argument(help="The consultation's slug.")],
    out: Annotated[
        Path, typer.Option(help="Directory to write the files to (created if needed).")
    ] = Path("."),
) -> None:
    """Write SLUG-contributions.csv, SLUG-comments.csv, SLUG-statistics.csv and SLUG.json
    (format: docs/open-data-format.md). Who supported what is never exported."""
    application = _app("read")
    try:
        with application.db.session() as session:
            services = Services(Repos(application.db, session), application.clock())
            try:
                info = services.consultations.by_slug(slug)
            except Exception as exc:  # a DomainError: unknown slug
                typer.echo(str(exc), err=True)
                raise typer.Exit(1) from None
            data = build_export(services, info)
    finally:
        application.close()
    out.mkdir(parents=True, exist_ok=True)
    for name, _mime, content in data.files():
        (out / name).write_bytes(content)
        typer.echo(str(out / name))


@privacy_app.command("reapply")
def reapply(
    log: Annotated[
        Path | None,
        typer.Option(help="The erasure log (default: PARLONS_PRIVACY_DIR/erasures.log)."),
    ] = None,
) -> None:
    """After restoring a backup: erase again everyone who had asked to be forgotten."""
    application = _app()
    path = log or erasure_log_path(application.settings)
    keys = read_erasure_log(path)
    try:
        with application.db.session() as session:
            service = PrivacyService(
                Repos(application.db, session), application.clock(), application.settings
            )
            erased = service.reapply(keys)
    finally:
        application.close()
    typer.echo(f"{len(keys)} erasures in {path}; {erased} citizens erased again")


@privacy_app.command("expire")
def expire(
    months: Annotated[
        int | None,
        typer.Option(help="Inactivity in months (default: PARLONS_PRIVACY_RETENTION_MONTHS)."),
    ] = None,
) -> None:
    """Erase the personal data of citizens who have not written for the retention period."""
    application = _app()
    limit = months or application.settings.privacy_retention_months
    try:
        # The scheduler's batched expiry: one committed transaction per batch, so other
        # citizens' events are processed in between and a stop keeps what was done.
        housekeeping = Housekeeping(application.db, application.clock, application.settings)
        erased = housekeeping.expire_all(limit)
    finally:
        application.close()
    typer.echo(f"{erased} citizens inactive for {limit} months erased")


@privacy_app.command("sweep")
def sweep() -> None:
    """Purge the farewell messages of erasures once delivered (also done on every event)."""
    application = _app()
    try:
        with application.db.session() as session:
            service = PrivacyService(
                Repos(application.db, session), application.clock(), application.settings
            )
            waiting = service.sweep()
    finally:
        application.close()
    typer.echo(f"done; {waiting} erasures still wait for their farewell to be delivered")
