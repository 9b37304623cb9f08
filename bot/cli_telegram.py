"""``parlons telegram``: deep links and QR codes for the Telegram channel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_base import CliError, open_app
from bot.logs import redact, secrets_of
from bot.settings import Settings
from storage.repositories import Repos

app = typer.Typer(help="Telegram channel: deep links and QR codes.", no_args_is_help=True)


@app.command("link")
def link(
    slug: Annotated[str, typer.Argument(help="The consultation's slug.")],
    source: Annotated[
        str | None,
        typer.Option(help="Where the link is shown (poster, newsletter...): counted with visits."),
    ] = None,
    qr: Annotated[
        Path | None, typer.Option(help="Also write a QR code of the link to this PNG file.")
    ] = None,
    bot_username: Annotated[
        str | None,
        typer.Option(help="The bot's username (default: asked to Telegram with the token)."),
    ] = None,
) -> None:
    """Print the link that opens a consultation in Telegram (https://t.me/BOT?start=SLUG)."""
    from adapters.telegram.links import LinkError, deep_link, fetch_username

    settings = Settings()
    application = open_app("read", settings=settings)
    try:
        with application.db.session() as session:
            known = Repos(application.db, session).consultations.by_slug(slug) is not None
    finally:
        application.close()
    if not known:
        typer.echo(f"no consultation {slug!r}: see `parlons consultation list`", err=True)
        raise typer.Exit(1)
    username = bot_username
    if username is None:
        if settings.telegram_token is None:
            typer.echo("set PARLONS_TELEGRAM_TOKEN or pass --bot-username", err=True)
            raise typer.Exit(1)
        try:
            username = asyncio.run(
                fetch_username(
                    settings.telegram_token.get_secret_value(), settings.telegram_api_url
                )
            )
        except Exception as exc:
            # The client's message may quote the request URL, which holds the token.
            detail = redact(" ".join(str(exc).split()), secrets_of(settings)) or type(exc).__name__
            raise CliError(f"could not ask Telegram for the bot's username: {detail}") from None
    try:
        url = deep_link(username, slug, source)
    except LinkError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(url)
    if qr is not None:
        import segno

        segno.make(url, error="m").save(str(qr), kind="png", scale=10, border=4)
        typer.echo(f"QR code written to {qr}")
