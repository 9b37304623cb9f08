"""Secrets never reach a log line or an error message (issue 11.6): one filter, installed by the
command's logging setup on every handler and fed with every configured secret."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import sys
from pathlib import Path

from pydantic import SecretStr

from bot.logs import MASK, RedactSecrets, configure_logging, install, redact, secrets_of
from bot.settings import Settings
from tests.support.bot_api_server import BotApiServer
from tests.support.telegram import running_bot

PARLONS = Path(sys.executable).parent / "parlons"
WEBHOOK_SECRET = "w3bhook-Secret_Value_42"


class _Raw(logging.Handler):
    """What the libraries log before any root handler sees it (logger-level handlers run
    first): proves the secrets were there to redact."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_debug_logs_never_show_the_token_or_the_webhook_secret(app, caplog):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    raw = _Raw()
    watched = [logging.getLogger(name) for name in ("telegram", "httpx", "aiohttp")]
    for logger in watched:
        logger.addHandler(raw)
    caplog.set_level(logging.DEBUG)
    try:
        async with BotApiServer(bot_username="parlons_test_bot") as server:
            settings = app.settings.model_copy(
                update={
                    "log_level": "DEBUG",
                    "telegram_token": SecretStr(server.token),
                    "telegram_webhook_secret": SecretStr(WEBHOOK_SECRET),
                }
            )
            configure_logging(settings)
            async with running_bot(
                app,
                server,
                mode="webhook",
                webhook_url=url,
                webhook_secret=WEBHOOK_SECRET,
                webhook_listen=f"127.0.0.1:{port}",
            ):
                await server.wait_until(lambda: server.calls("setWebhook"), 5)
                server.inject_message(2701, "/start", language_code="en")
                await server.wait_for_messages(2701, 1, timeout=10)
            token = server.token
    finally:
        for logger in watched:
            logger.removeHandler(raw)
    assert any(WEBHOOK_SECRET in line for line in raw.lines), "python-telegram-bot logs it"
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "setWebhook" in logged and MASK in logged
    assert WEBHOOK_SECRET not in logged
    assert token not in logged


def test_the_filter_covers_arguments_tracebacks_and_url_encoding():
    settings = Settings(
        database_url="postgresql://parlons:db-pass-123@127.0.0.1/parlons",
        telegram_token=SecretStr("123456:AAH-secret/token"),
        matrix_password=SecretStr("matrix-password-1"),
        matrix_access_token=SecretStr("syt_access_token_2"),
        matrix_store_key=SecretStr("store-key-3"),
        privacy_secret=SecretStr("privacy-secret-4"),
    )
    secrets = secrets_of(settings)
    assert set(secrets) >= {"db-pass-123", "123456:AAH-secret/token", "syt_access_token_2"}
    stream = io.StringIO()
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install(RedactSecrets(secrets), logger)
        logger.warning("GET /sync?access_token=%s", "syt_access_token_2")
        logger.warning("POST https://api.telegram.org/bot123456%3AAAH-secret%2Ftoken/getMe")
        try:
            raise RuntimeError("login with matrix-password-1 failed; key store-key-3")
        except RuntimeError:
            logger.exception("privacy-secret-4 and db-pass-123")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = stream.getvalue()
    for secret in secrets:
        assert secret not in text
    assert "123456%3AAAH" not in text and text.count(MASK) >= 6
    assert redact("nothing secret here", secrets) == "nothing secret here"


async def test_telegram_link_with_a_refused_token_prints_no_token(sqlite_url, app):
    token = "999999:REFUSED-token-value"
    async with BotApiServer(bot_username="parlons_test_bot") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLONS_")} | {
            "PARLONS_DATABASE_URL": sqlite_url,
            "PARLONS_TELEGRAM_TOKEN": token,
            "PARLONS_TELEGRAM_API_URL": server.base_url,
            "PARLONS_LOG_LEVEL": "DEBUG",
        }
        process = await asyncio.create_subprocess_exec(
            str(PARLONS),
            "telegram",
            "link",
            "ville-intelligente",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 2, stderr
    assert "could not ask Telegram for the bot's username" in stderr
    assert "getMe" in stderr  # the DEBUG logs were written, redacted
    assert token not in stdout + stderr and "REFUSED-token" not in stdout + stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and MASK in errors[0]


async def test_matrix_debug_logs_never_show_the_access_token(
    app, matrix_account, matrix_clients, tmp_path, caplog
):
    """A guard with the real Matrix service against Synapse: matrix-nio sends the token in a
    header today, so nothing should show it, whatever the adapter logs at DEBUG later."""
    from tests.support.matrix_bot import Citizen, RunningBot, bot_settings, wait_joined
    from tests.support.matrix_fixtures import create_dm

    account = await matrix_account.create("parlons")
    settings = bot_settings(app, account, tmp_path / "bot-store", log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    configure_logging(settings)
    async with RunningBot(app, settings) as bot:
        citizen_account = await matrix_account.create("citizen")
        client = await matrix_clients(citizen_account)
        room_id = await create_dm(client, bot.user_id)
        await wait_joined(client, room_id, bot.user_id, timeout=20)
        citizen = Citizen(app, citizen_account, client, room_id, bot.user_id)
        replies = await citizen.say("/start")
        assert replies
    bot_records = [r for r in caplog.records if r.name.startswith(("nio", "adapters.matrix"))]
    assert bot_records, "the Matrix service logged at DEBUG"
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert account.access_token not in logged
