"""The bot as a real process (`parlons run`), for crash and restart tests: started, killed
with SIGKILL, stopped with SIGTERM, its log kept per start."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.conftest import ROOT, SEED


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: the child gets SIGKILL if the test process dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def open_consultation(tmp_path: Path) -> Path:
    """The seed consultation, open from yesterday for a month (the bot runs on real time)."""
    now = datetime.now(ZoneInfo("Europe/Paris"))
    text = SEED.read_text(encoding="utf-8")
    opens, closes = now - timedelta(days=1), now + timedelta(days=30)
    text = text.replace("opens_at: 2018-02-23T10:00:00", f"opens_at: {opens:%Y-%m-%dT%H:%M:%S}")
    text = text.replace("closes_at: 2019-08-31T00:00:00", f"closes_at: {closes:%Y-%m-%dT%H:%M:%S}")
    path = tmp_path / "open.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class BotProcess:
    """``python -m bot.cli run --no-scheduler`` with the given environment."""

    def __init__(self, env: dict[str, str], logs: Path, *, stop_timeout: float = 20) -> None:
        self.env, self.logs, self.stop_timeout = env, logs, stop_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.logs / f"bot-{self.starts}.log"

    async def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "wb")  # noqa: SIM115 (the child owns it)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            "--no-scheduler",
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        log.close()

    async def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), self.stop_timeout)
        except TimeoutError:
            await self.kill()
            raise

    async def wait_logged(self, marker: bytes, timeout: float = 60) -> None:
        """Until this start's log shows ``marker`` (start-up takes seconds on a busy machine:
        kills should hit the bot's work, not only its imports)."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_bytes():
            assert self.proc is not None and self.proc.returncode is None, self.tail()
            assert time.monotonic() < deadline, f"no {marker!r} in the log:\n" + self.tail()
            await asyncio.sleep(0.05)

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
