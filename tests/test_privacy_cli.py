"""``parlons privacy expire`` runs the scheduler's batched expiry: each batch of
``privacy_expiry_batch`` citizens is committed on its own (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from bot.cli import app as cli
from bot.privacy import PrivacyService
from storage.models import Citizen
from tests.support.moderation import build, chats, count


def _silent_citizens(app, clock, names):
    # The CLI reads the real time: the citizens were last seen 400 days before it.
    clock.now = datetime.now(UTC) - timedelta(days=400)
    chat = chats(app)
    for name in names:
        chat(name).send("/start")
    clock.now = datetime.now(UTC)
    chat("recent").send("/start")


def _env(url, tmp_path):
    return {
        "PARLONS_DATABASE_URL": url,
        "PARLONS_PRIVACY_DIR": str(tmp_path / "privacy"),
        "PARLONS_PRIVACY_EXPIRY_BATCH": "2",
        "PARLONS_LOG_LEVEL": "WARNING",
    }


def test_expire_erases_every_silent_citizen_in_batches(db_url, clock, tmp_path):
    app = build(db_url, clock, tmp_path)
    names = [f"old{i}" for i in range(5)]
    _silent_citizens(app, clock, names)
    result = CliRunner().invoke(cli, ["privacy", "expire"], env=_env(db_url, tmp_path))
    assert result.exit_code == 0, result.output
    assert "5 citizens inactive for 12 months erased" in result.output
    for name in names:
        assert count(app, Citizen, Citizen.platform_user_id == name) == 0
    assert count(app, Citizen, Citizen.platform_user_id == "recent") == 1
    log = (tmp_path / "privacy" / "erasures.log").read_text().splitlines()
    assert len(log) == 5
    app.close()


def test_expire_keeps_the_batches_committed_before_a_failure(db_url, clock, tmp_path, monkeypatch):
    app = build(db_url, clock, tmp_path)
    names = [f"old{i}" for i in range(5)]
    _silent_citizens(app, clock, names)
    erase = PrivacyService.erase
    calls = []

    def failing_erase(self, citizen, **kw):
        calls.append(citizen.platform_user_id)
        if len(calls) == 5:
            raise RuntimeError("stopped on the fifth citizen")
        return erase(self, citizen, **kw)

    monkeypatch.setattr(PrivacyService, "erase", failing_erase)
    result = CliRunner().invoke(cli, ["privacy", "expire"], env=_env(db_url, tmp_path))
    assert result.exit_code != 0
    # Two batches of two were committed before the failure (one transaction would have
    # rolled all four back); the fifth citizen is still there, for the next run.
    left = [n for n in names if count(app, Citizen, Citizen.platform_user_id == n) == 1]
    assert left == [calls[-1]]
    monkeypatch.setattr(PrivacyService, "erase", erase)
    result = CliRunner().invoke(cli, ["privacy", "expire"], env=_env(db_url, tmp_path))
    assert result.exit_code == 0, result.output
    assert "1 citizens inactive for 12 months erased" in result.output
    assert count(app, Citizen, Citizen.platform_user_id == "recent") == 1
    app.close()


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch):
    monkeypatch.delenv("PARLONS_PRIVACY_SECRET", raising=False)
