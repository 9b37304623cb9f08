"""The `parlons` command's database and consultation sub-commands."""

from __future__ import annotations

from typer.testing import CliRunner

from bot.cli import app as cli
from tests.conftest import SEED


def test_import_list_show_and_an_unknown_slug(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(cli, ["consultation", "import", str(SEED)])
    assert result.exit_code == 0 and "created consultation ville-intelligente" in result.output
    result = runner.invoke(cli, ["consultation", "import", str(SEED)])
    assert "updated consultation ville-intelligente" in result.output
    result = runner.invoke(cli, ["consultation", "list"])
    assert "ville-intelligente\tclosed\t2018-02-23" in result.output
    result = runner.invoke(cli, ["consultation", "show", "ville-intelligente"])
    assert result.exit_code == 0
    assert "Q2 [reussites]" in result.output and "days 553" in result.output
    result = runner.invoke(cli, ["consultation", "show", "nope"])
    assert result.exit_code == 1 and "nope" in result.output


def test_an_invalid_file_is_refused_and_nothing_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PARLONS_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: x\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["consultation", "import", str(bad)])
    assert result.exit_code == 1 and "bad.yaml:" in result.output
    assert runner.invoke(cli, ["consultation", "list"]).output.strip() == ""
