#!/usr/bin/env python3
"""Bootstrap and task runner: the only entry point a fresh machine needs (Python 3.11+).

    python3 dev.py demo [ARGS...]   run the seed consultation in a console chat (SQLite)
    python3 dev.py test [ARGS...]   run the whole test suite (starts what the tests need)
    python3 dev.py check            ruff + mypy
    python3 dev.py i18n             extract messages and update the .po catalogs
    python3 dev.py sync             only install the locked environment into .venv
    python3 dev.py parlons ARGS...  run the `parlons` command inside the environment

It creates `.venv`, installs uv into it, and installs the locked dependencies (uv.lock) with
`uv sync --frozen`. The Matrix test homeserver lives in its own environment, `.venv-synapse`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
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


def sync_synapse() -> None:
    """The test homeserver (AGPL, many dependencies) stays out of the project's environment."""
    py = SYNAPSE_VENV / "bin" / "python"
    marker = SYNAPSE_VENV / f".synapse-{SYNAPSE_VERSION}"
    if marker.exists():
        return
    if not py.exists():
        venv.EnvBuilder(with_pip=True).create(SYNAPSE_VENV)
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
        sync_synapse()
        env = dict(os.environ, PARLONS_SYNAPSE_PYTHON=str(SYNAPSE_VENV / "bin" / "python"))
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
