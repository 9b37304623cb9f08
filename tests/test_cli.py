"""The `parlons` command: database and consultation sub-commands, and its errors (one line on
stderr, exit code 2, no traceback unless --debug; read-only commands never migrate)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app as cli
from tests.conftest import SEED

PARLONS = Path(sys.executable).parent / "parlons"


def _runner() -> CliRunner:
    return CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):  # type: ignore[no-untyped-def]
    if cwd is not None:
        old = Path.cwd()
        os.chdir(cwd)
    try:
        return _runner().invoke(cli, list(args), env=env)
    finally:
        if cwd is not None:
            os.chdir(old)


def one_error_line(result, *needles: str) -> str:  # type: ignore[no-untyped-def]
    """Exit code 2, a single line on stderr starting with 'error:', no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    for key in list(os.environ):
        if key.startswith("PARLONS_") and key != "PARLONS_SYNAPSE_PYTHON":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no parlons.toml of the repository's working directory
    monkeypatch.setenv("PARLONS_LOG_LEVEL", "WARNING")


def test_import_list_show_and_an_unknown_slug(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke("consultation", "import", str(SEED))
    assert result.exit_code == 0 and "created consultation ville-intelligente" in result.output
    result = invoke("consultation", "import", str(SEED))
    assert result.exit_code == 0 and "unchanged consultation ville-intelligente" in result.output
    result = invoke("consultation", "list")
    assert "ville-intelligente\tclosed\t2018-02-23" in result.output
    result = invoke("consultation", "show", "ville-intelligente")
    assert result.exit_code == 0
    assert "Q2 [reussites]" in result.output and "days 553" in result.output
    result = invoke("consultation", "show", "nope")
    assert result.exit_code == 1 and "nope" in result.output


def test_an_invalid_file_is_refused_and_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert invoke("db", "upgrade").exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: x\n", encoding="utf-8")
    result = invoke("consultation", "import", str(bad))
    assert result.exit_code == 1 and "bad.yaml:" in result.output
    assert invoke("consultation", "list").output.strip() == ""


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"PARLONS_DATABASE_URL": "notaurl"}, ["PARLONS_DATABASE_URL", "not a database URL"]),
        (
            {"PARLONS_DATABASE_URL": "mysql://u@localhost/db"},
            ["PARLONS_DATABASE_URL", "unsupported database 'mysql'"],
        ),
        ({"PARLONS_SQLITE_SYNCHRONOUS": "SOMETIMES"}, ["PARLONS_SQLITE_SYNCHRONOUS"]),
        ({"PARLONS_MATRIX_PACE_PER_SECOND": "-1"}, ["PARLONS_MATRIX_PACE_PER_SECOND"]),
        ({"PARLONS_LOG_LEVEL": "LOUD"}, ["PARLONS_LOG_LEVEL"]),
        ({"PARLONS_ADMINS": "telegram:1"}, ["PARLONS_ADMINS", "JSON"]),
    ],
    ids=["notaurl", "mysql", "pattern", "range", "log-level", "json-list"],
)
def test_bad_settings_are_one_line(monkeypatch, env, needles):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for command in (["consultation", "list"], ["db", "upgrade"]):
        one_error_line(invoke(*command), "invalid setting", *needles)


def test_a_malformed_or_unknown_key_in_parlons_toml(tmp_path):
    (tmp_path / "parlons.toml").write_text('database_url = "sqlite:///x.db\n', encoding="utf-8")
    one_error_line(invoke("consultation", "list"), "parlons.toml: not valid TOML")
    (tmp_path / "parlons.toml").write_text('telegram_tokn = "123:abc"\n', encoding="utf-8")
    line = one_error_line(invoke("consultation", "list"), "unknown setting 'telegram_tokn'")
    assert "did you mean 'telegram_token'" in line and "123:abc" not in line


def test_a_missing_config_file_named_in_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PARLONS_CONFIG_FILE", str(tmp_path / "nope.toml"))
    one_error_line(invoke("consultation", "list"), "nope.toml: no such file")


# --------------------------------------------------------------------------- databases


def test_a_sqlite_path_in_a_missing_directory_is_an_error(tmp_path, monkeypatch):
    target = tmp_path / "typo" / "parlons.sqlite3"
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{target}")
    for command in (
        ["consultation", "list"],
        ["consultation", "import", str(SEED)],
        ["export", "ville-intelligente", "--out", str(tmp_path / "out")],
    ):
        one_error_line(invoke(*command), "the directory", "does not exist")
    assert not target.parent.exists()
    # db upgrade creates it on purpose
    assert invoke("db", "upgrade").exit_code == 0 and target.exists()


def test_a_missing_sqlite_file_is_not_created_by_other_commands(tmp_path, monkeypatch):
    target = tmp_path / "parlons.sqlite3"
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{target}")
    one_error_line(invoke("consultation", "list"), "no database at", "parlons db upgrade")
    one_error_line(invoke("broadcast", "status"), "no database at")
    assert not target.exists()


def test_read_commands_do_not_migrate(tmp_path, monkeypatch):
    target = tmp_path / "old.sqlite3"
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{target}")
    assert invoke("db", "upgrade", "0001").exit_code == 0
    one_error_line(invoke("consultation", "list"), "out of date", "parlons db upgrade")
    with sqlite3.connect(target) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [("0001",)]
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{empty}")
    one_error_line(invoke("consultation", "list"), "not initialised", "parlons db upgrade")


def test_unknown_revisions(tmp_path, monkeypatch):
    target = tmp_path / "p.sqlite3"
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{target}")
    one_error_line(invoke("db", "upgrade", "nosuchrev"), "unknown revision 'nosuchrev'")
    assert invoke("db", "upgrade").exit_code == 0
    with sqlite3.connect(target) as conn:
        conn.execute("update alembic_version set version_num = 'from_the_future'")
    one_error_line(invoke("consultation", "list"), "from_the_future", "unknown to this version")
    one_error_line(
        invoke("consultation", "import", str(SEED)), "from_the_future", "unknown to this version"
    )


def test_a_file_that_is_not_a_database(tmp_path, monkeypatch):
    target = tmp_path / "notes.txt"
    target.write_text("not a database, just some notes\n" * 100, encoding="utf-8")
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{target}")
    for command in (["consultation", "list"], ["db", "upgrade"]):
        one_error_line(invoke(*command), "not a SQLite database")
    assert target.read_text(encoding="utf-8").startswith("not a database")


def test_postgresql_missing_database_and_connection_refused(monkeypatch):
    monkeypatch.setenv(
        "PARLONS_DATABASE_URL", "postgresql://postgres:hunter22@127.0.0.1:5432/no_such_db_parlons"
    )
    for command in (["consultation", "list"], ["db", "upgrade"]):
        line = one_error_line(invoke(*command), "no_such_db_parlons", "does not exist")
        assert "hunter22" not in line
    monkeypatch.setenv("PARLONS_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/parlons")
    one_error_line(invoke("consultation", "list"), "127.0.0.1", "refused")


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{tmp_path / 'nope' / 'p.sqlite3'}")
    result = invoke("--debug", "consultation", "list")
    assert result.exit_code != 2 and result.exception is not None
    assert type(result.exception).__name__ == "CliError"


def test_run_without_a_channel_stops_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{tmp_path / 'p.sqlite3'}")
    one_error_line(invoke("run"), "no channel configured", "PARLONS_TELEGRAM_TOKEN")


def test_the_real_command_prints_one_line_for_a_missing_pg_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLONS_")} | {
        "PARLONS_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/no_such_db_parlons"
    }
    done = subprocess.run(
        [str(PARLONS), "consultation", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert 'database "no_such_db_parlons" does not exist' in done.stderr


def test_a_read_only_database_can_be_listed_but_not_written(tmp_path):
    """As an unprivileged user who may read the file but not write it."""
    if os.geteuid() != 0:
        pytest.fail("this test switches to the 'nobody' user: run it as root (CI does)")
    import pwd

    nobody = pwd.getpwnam("nobody")
    home = Path(tempfile.mkdtemp(prefix="parlons-ro-"))  # pytest's tmp_path is root-only
    target = home / "p.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLONS_")} | {
        "PARLONS_DATABASE_URL": f"sqlite:///{target}",
        "PARLONS_LOG_LEVEL": "WARNING",
    }
    for command in (["db", "upgrade"], ["consultation", "import", str(SEED)]):
        assert (
            subprocess.run([str(PARLONS), *command], env=env, cwd=home, check=False).returncode
            == 0
        )
    os.chmod(target, 0o644)  # owned by root: nobody reads it
    os.chown(home, nobody.pw_uid, nobody.pw_gid)  # SQLite may put its -shm/-wal files next to it

    def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PARLONS), *command],
            env=env | {"HOME": str(home)},
            cwd=home,
            user=nobody.pw_uid,
            group=nobody.pw_gid,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        _check_read_only(as_nobody)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _check_read_only(as_nobody) -> None:  # type: ignore[no-untyped-def]
    listed = as_nobody("consultation", "list")
    assert listed.returncode == 0, listed.stderr
    assert "ville-intelligente" in listed.stdout
    shown = as_nobody("consultation", "show", "ville-intelligente")
    assert shown.returncode == 0 and "Q1 [" in shown.stdout
    refused = as_nobody("consultation", "import", str(SEED.parent / "example-minimal.yaml"))
    assert refused.returncode == 2 and "read-only" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stderr.count("\n") == 1


def test_demo_with_a_bad_starting_instant(tmp_path):
    script = tmp_path / "s.txt"
    script.write_text("/start\n", encoding="utf-8")
    result = invoke("demo", "--script", str(script), "--now", "yesterday-ish")
    one_error_line(result, "--now 'yesterday-ish': not an ISO 8601 date-time")
