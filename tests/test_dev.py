"""dev.py, the bootstrap script: `dev.py test` does not install the Matrix homeserver; the
first Matrix test does, once, under a file lock (issue 13.9)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import synapse as synapse_support


@pytest.fixture
def dev() -> Any:
    return synapse_support._load_dev()


def test_the_test_task_does_not_install_synapse(dev, monkeypatch):
    """`dev.py test -k ...` used to spend ~90 s installing Synapse before any test ran."""
    ran: list[list[str]] = []

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("dev.py test installed Synapse up front")

    monkeypatch.setattr(dev, "sync", lambda: None)
    monkeypatch.setattr(dev, "sync_synapse", refuse)
    monkeypatch.setattr(dev.venv.EnvBuilder, "create", refuse)
    monkeypatch.setattr(dev.subprocess, "call", lambda cmd, **kw: ran.append(cmd) or 0)
    assert dev.main(["test", "-k", "nothing_matrix"]) == 0
    assert len(ran) == 1 and ran[0][-4:] == ["-m", "pytest", "-k", "nothing_matrix"]


def test_parallel_runs_install_synapse_once(dev, monkeypatch, tmp_path):
    installs: list[float] = []

    def fake_create(self: object, env_dir: Path) -> None:
        (Path(env_dir) / "bin").mkdir(parents=True, exist_ok=True)
        (Path(env_dir) / "bin" / "python").write_text("")

    def fake_pip(cmd: list[object], **_kw: object) -> None:
        assert "matrix-synapse==" + dev.SYNAPSE_VERSION in [str(c) for c in cmd]
        installs.append(time.monotonic())
        time.sleep(0.3)  # a slow install: the other runs must wait, not install too

    monkeypatch.setattr(dev.venv.EnvBuilder, "create", fake_create)
    monkeypatch.setattr(dev, "_run", fake_pip)
    target = tmp_path / "synapse-venv"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(dev.sync_synapse(target))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(installs) == 1
    assert results == [target / "bin" / "python"] * 4
    assert (target / f".synapse-{dev.SYNAPSE_VERSION}").exists()
    dev.sync_synapse(target)
    assert len(installs) == 1


def test_a_matrix_test_installs_synapse_on_first_use(monkeypatch, tmp_path):
    calls: list[Path] = []

    class FakeDev:
        @staticmethod
        def sync_synapse(venv_dir: Path) -> Path:
            calls.append(venv_dir)
            return venv_dir / "bin" / "python"

    python = tmp_path / "fresh-clone" / ".venv-synapse" / "bin" / "python"
    monkeypatch.setenv(synapse_support.ENV_VAR, str(python))
    monkeypatch.setattr(synapse_support, "_load_dev", lambda: FakeDev)
    assert synapse_support.ensure_synapse() == python
    assert calls == [tmp_path / "fresh-clone" / ".venv-synapse"]
    # Already installed: nothing to do.
    calls.clear()
    monkeypatch.setattr(synapse_support, "synapse_missing_reason", lambda python=None: None)
    assert synapse_support.ensure_synapse() == python
    assert calls == []
