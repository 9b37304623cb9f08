#!/usr/bin/env python3
"""Bootstrap and task runner: the only entry point a fresh machine needs (Python 3.11+).

    python3 dev.py demo [ARGS...]   run the seed consultation in a console chat (SQLite)
    python3 dev.py test [ARGS...]   run the whole test suite (starts what the tests need)
    python3 dev.py check            ruff + mypy
    python3 dev.py i18n             extract messages and update the .po catalogs
    python3 dev.py sync             only install the locked environment into .venv
    python3 dev.py parlons ARGS...  run the `parlons` command inside the environment

It creates `.venv`, installs uv into it, and installs the locked dependencies (uv.lock) with
`uv sync --frozen`. The Matrix test homeserver lives in its own environment, `.venv-synapse`,
installed on first use by the Matrix tests themselves (tests/support/synapse.py calls
`sync_synapse`), so `dev.py test -k ...` without a Matrix test never waits for it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
SYNAPSE_VENV = ROOT / ".venv-synapse"
SYNAPSE_VERSION = "1.163.2"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _run(cmd: list[str | Path], **kw: object) -> None:
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def sync() -> None:
    if sys.version_info < (3, 11):
        sys.exit("Parlons needs Python 3.11 or newer.")
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not (BIN / "uv").exists():
        pip = [BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "uv"])
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(VENV))
    _run([BIN / "uv", "sync", "--frozen", "--inexact", "--quiet"], env=env)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed) between processes: parallel test runs
    that all need Synapse install it once (no lock where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sync_synapse(venv_dir: Path = SYNAPSE_VENV) -> Path:
    """The test homeserver (AGPL, many dependencies) stays out of the project's environment.
    Installs it into ``venv_dir`` unless already there; returns its interpreter."""
    py = venv_dir / "bin" / "python"
    marker = venv_dir / f".synapse-{SYNAPSE_VERSION}"
    if marker.exists():
        return py
    with _locked(venv_dir.parent / f".{venv_dir.name}.lock"):
        if marker.exists():  # installed by another run while we waited
            return py
        print(f"installing Synapse {SYNAPSE_VERSION} into {venv_dir} (once)...", file=sys.stderr)
        if not py.exists():
            venv.EnvBuilder(with_pip=True).create(venv_dir)
        _run(
            [
                py,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"matrix-synapse=={SYNAPSE_VERSION}",
            ]
        )
        marker.touch()
    return py


def main(argv: list[str]) -> int:
    task, args = (argv[0], argv[1:]) if argv else ("help", [])
    if task in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    sync()
    if task == "sync":
        return 0
    if task == "demo":
        return subprocess.call([BIN / "parlons", "demo", *args], cwd=ROOT)
    if task == "parlons":
        return subprocess.call([BIN / "parlons", *args], cwd=ROOT)
    if task == "test":
        # Synapse is installed by the first Matrix test that needs it, not here.
        env = dict(os.environ)
        env.setdefault("PARLONS_SYNAPSE_PYTHON", str(SYNAPSE_VENV / "bin" / "python"))
        return subprocess.call([BIN / "python", "-m", "pytest", *args], cwd=ROOT, env=env)
    if task == "i18n":
        pybabel = BIN / "pybabel"
        pot = ROOT / "bot" / "locales" / "parlons.pot"
        pot.parent.mkdir(exist_ok=True)
        _run(
            [
                pybabel,
                "-q",
                "extract",
                "--no-location",
                "--sort-output",
                "-k",
                "N_",
                "-k",
                "_",
                "-k",
                "gettext",
                "-k",
                "ngettext:1,2",
                "-o",
                pot,
                "bot",
                "adapters",
                "scheduler",
            ]
        )
        for lang in ("fr", "en"):
            po = ROOT / "bot" / "locales" / lang / "LC_MESSAGES" / "parlons.po"
            verb = "update" if po.exists() else "init"
            extra = ["--no-fuzzy-matching", "--ignore-obsolete"] if verb == "update" else []
            _run(
                [
                    pybabel,
                    "-q",
                    verb,
                    "-i",
                    pot,
                    "-d",
                    ROOT / "bot" / "locales",
                    "-D",
                    "parlons",
                    "-l",
                    lang,
                    *extra,
                ]
            )
        return 0
    if task == "check":
        rc = subprocess.call([BIN / "ruff", "check", "."], cwd=ROOT)
        return rc or subprocess.call([BIN / "mypy"], cwd=ROOT)
    print(f"unknown task {task!r}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
