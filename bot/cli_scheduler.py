"""``parlons schedule …`` and ``parlons broadcast …``: the schedule and the broadcasts from the
command line (the same services as the moderators' chat commands)."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.app import App
from bot.broadcasts import broadcast_progress, progress_bar
from bot.cli_base import Mode, open_app
from bot.schedule import Lifecycle, SchedulerConfig, ScheduleRunner
from storage.repositories import Repos

broadcast_app = typer.Typer(
    help="Broadcasts: announcements, reminders, results.", no_args_is_help=True
)
schedule_app = typer.Typer(help="The consultations' schedule.", no_args_is_help=True)


def _app(mode: Mode = "write") -> App:
    return open_app(mode)


@broadcast_app.command("status")
def broadcast_status(
    limit: Annotated[int, typer.Option(help="How many recent broadcasts.")] = 10,
    slug: Annotated[str | None, typer.Option(help="Only this consultation.")] = None,
) -> None:
    """Progress of the latest broadcasts, with a progress bar each."""
    application = _app("read")
    try:
        with application.db.session() as session:
            repos = Repos(application.db, session)
            consultation_id = None
            if slug is not None:
                row = repos.consultations.by_slug(slug)
                if row is None:
                    typer.echo(f"no consultation {slug!r}", err=True)
                    raise typer.Exit(1)
                consultation_id = row.id
            rows = broadcast_progress(repos, limit, consultation_id)
    finally:
        application.close()
    if not rows:
        typer.echo("no broadcast yet")
    for p in rows:
        c = p.counts
        typer.echo(
            f"#{p.id:<5} {p.kind:<12} {p.consultation or '-':<24} "
            f"{p.created_at:%Y-%m-%d %H:%M}Z  {progress_bar(p.ratio)} {p.ratio:4.0%}  "
            f"{c.sent}/{c.total} sent  {c.failed} failed  {c.pending} pending  [{p.status}]"
        )


@schedule_app.command("show")
def schedule_show(slug: str) -> None:
    """What will happen when (UTC and the consultation's local time)."""
    from zoneinfo import ZoneInfo

    application = _app()
    try:
        with application.db.session() as session:
            repos = Repos(application.db, session)
            row = repos.consultations.by_slug(slug)
            if row is None:
                typer.echo(f"no consultation {slug!r}", err=True)
                raise typer.Exit(1)
            lifecycle = Lifecycle(repos, application.clock())
            info = lifecycle.info(row.id)  # type: ignore[arg-type]
            lifecycle.sync(info)
            actions = lifecycle.upcoming(info)
    finally:
        application.close()
    zone = ZoneInfo(info.timezone)
    typer.echo(f"{info.slug}: {info.status}, phase {info.phase(application.clock())}")
    for a in actions:
        local = a.due_at.astimezone(zone)
        typer.echo(f"{a.due_at:%Y-%m-%d %H:%M}Z  {local:%Y-%m-%d %H:%M %Z}  {a.kind:<9} {a.key}")


@schedule_app.command("tick")
def schedule_tick() -> None:
    """Run whatever is due now, once (the broadcasts are sent by `parlons run`)."""
    application = _app()
    try:
        settings = application.settings
        from datetime import timedelta

        runner = ScheduleRunner(
            application.db,
            application.clock,
            SchedulerConfig(
                reminder_grace=timedelta(seconds=settings.scheduler_reminder_grace),
                worker="cli",
                admins=frozenset(settings.admins),
            ),
        )
        for outcome in runner.tick():
            typer.echo(f"{outcome.action}\t{outcome.outcome}\t{outcome.note or ''}")
    finally:
        application.close()


@schedule_app.command("set-status")
def schedule_set_status(slug: str, status: str) -> None:
    """Move a consultation to draft or scheduled (before it opens) or archived (once
    closed)."""
    application = _app()
    try:
        with application.db.session() as session:
            repos = Repos(application.db, session)
            row = repos.consultations.by_slug(slug)
            if row is None:
                typer.echo(f"no consultation {slug!r}", err=True)
                raise typer.Exit(1)
            lifecycle = Lifecycle(repos, application.clock())
            try:
                info = lifecycle.set_status(lifecycle.info(row.id), status)  # type: ignore[arg-type]
            except Exception:
                typer.echo(
                    f"cannot move {slug} from {row.status} to {status} now "
                    "(draft ⇄ scheduled before opening, archived once closed)",
                    err=True,
                )
                raise typer.Exit(1) from None
    finally:
        application.close()
    typer.echo(f"{slug} is now {info.status}")
