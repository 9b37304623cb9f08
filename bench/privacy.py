"""Privacy housekeeping: how long the expiry of silent citizens holds the database, and how long
another citizen's message waits meanwhile, with one transaction for all of them (the previous
way, ``PrivacyService.expire`` without a limit) against the batched housekeeping (``Housekeeping``,
``privacy_expiry_batch`` citizens per transaction), measured in the same run on two copies of the
same SQLite database.

    .venv/bin/python bench/privacy.py [--stale 1000] [--batch 25]

The last line prints the longest transaction and the longest wait of another citizen's event,
for both, and their ratios (batched ÷ one transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app import build_app  # noqa: E402
from bot.messages import CommandMessage, EventContext, InboundEvent  # noqa: E402
from bot.privacy import NOTICE_VERSION, Housekeeping, PrivacyService  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.settings import Settings  # noqa: E402
from storage.db import Database  # noqa: E402
from storage.models import Citizen  # noqa: E402
from storage.models_moderation import PrivacyConsent  # noqa: E402
from storage.repositories import Repos  # noqa: E402

SEED = ROOT / "consultations" / "ville-intelligente.yaml"
NOW = datetime.fromisoformat("2019-08-19T10:00:00+00:00")


def prepare(path: Path, stale: int) -> None:
    db = Database(f"sqlite:///{path}")
    db.upgrade()
    db.dispose()
    app = build_app(Settings(database_url=f"sqlite:///{path}"), clock=lambda: NOW)
    app.import_consultation(SEED)
    old = NOW - timedelta(days=800)
    with app.db.session() as s:
        citizens = [
            Citizen(
                platform="telegram",
                platform_user_id=str(100_000 + i),
                display_name=f"Stale {i}",
                pseudonym=secrets.token_hex(8),
                created_at=old,
                last_seen_at=old,
            )
            for i in range(stale)
        ]
        s.add_all(citizens)
        s.flush()
        for c in citizens:
            assert c.id is not None
            s.add(PrivacyConsent(citizen_id=c.id, version=NOTICE_VERSION, accepted_at=old))
    app.close()


async def run(path: Path, tmp: Path, batched: bool, batch: int) -> tuple[float, float]:
    """(longest housekeeping transaction, longest wait of another citizen's event), seconds.
    As in ``parlons run``: both go through the runtime (on SQLite, its one database thread)."""
    settings = Settings(
        database_url=f"sqlite:///{path}",
        privacy_dir=str(tmp / f"privacy-{batched}"),
        privacy_expiry_batch=batch,
    )
    app = build_app(settings, clock=lambda: NOW)
    runtime = Runtime(app)
    done = asyncio.Event()
    waits: list[float] = []
    longest = 0.0

    async def other_citizen() -> None:
        n = 0
        while not done.is_set():
            n += 1
            ctx = EventContext("console", "active", "active", f"active-{n}")
            start = time.perf_counter()
            await runtime.call(app.engine.handle, InboundEvent(ctx, CommandMessage("help")))
            waits.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)

    async def timed(step: Callable[[], int]) -> int:
        nonlocal longest

        def call() -> int:
            nonlocal longest
            start = time.perf_counter()
            result = step()
            longest = max(longest, time.perf_counter() - start)
            return result

        return await runtime.call(call)

    def all_at_once() -> int:
        with app.db.session() as session:
            return PrivacyService(Repos(app.db, session), NOW, settings).expire(12)

    worker = asyncio.create_task(other_citizen())
    await asyncio.sleep(0.1)
    try:
        if batched:
            housekeeping = Housekeeping(app.db, app.clock, settings)
            while await timed(housekeeping.expire_step) >= batch:
                pass
        else:
            await timed(all_at_once)
    finally:
        done.set()
        await worker
        runtime.close()
        app.close()
    return longest, max(waits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stale", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        base = tmp / "base.sqlite3"
        prepare(base, args.stale)
        results = {}
        for batched in (False, True):
            copy = tmp / f"copy-{batched}.sqlite3"
            shutil.copyfile(base, copy)
            results[batched] = asyncio.run(run(copy, tmp, batched, args.batch))
    (old_tx, old_wait), (new_tx, new_wait) = results[False], results[True]
    print(
        f"{args.stale} stale citizens: longest transaction {old_tx:.2f} s in one -> "
        f"{new_tx:.2f} s batched by {args.batch} (ratio {new_tx / old_tx:.3f}); another "
        f"citizen's longest wait {old_wait:.2f} s -> {new_wait:.2f} s "
        f"(ratio {new_wait / old_wait:.3f})"
    )


if __name__ == "__main__":
    main()
