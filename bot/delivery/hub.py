"""The delivery runtime of one process: one pacer and one gate per bot account, shared by
the reply sender of the account's channel and by the broadcast sender.

``Runtime.delivery`` holds it (one per process). With PostgreSQL the account's pace is taken
from the ``send_pace`` table (``DatabaseSlots``), so every worker shares it; on SQLite (one
process) it stays in memory (``MemorySlots``, the same arithmetic).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.delivery.claims import worker_name
from bot.delivery.pacing import AccountPacer, DatabaseSlots, MemorySlots, PriorityGate

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

# Sends in flight at once per account, and the places broadcasts leave to replies.
CONCURRENCY = 16
REPLY_RESERVE = 4


class DeliveryHub:
    def __init__(
        self, runtime: Runtime, *, shared: bool | None = None, worker: str | None = None
    ) -> None:
        self.runtime = runtime
        self.worker = worker or worker_name()
        self.shared = (not runtime.app.db.is_sqlite) if shared is None else shared
        self._pacers: dict[str, AccountPacer] = {}
        self._gates: dict[str, PriorityGate] = {}

    def pacer(self, account: str, rate: float) -> AccountPacer:
        """The account's pacer; the first caller's ``rate`` sets it (the channel's pace)."""
        pacer = self._pacers.get(account)
        if pacer is None:
            if self.shared:
                slots = DatabaseSlots(self.runtime.app.db, account, self.runtime.call)
                # A fifth of a second of slots per round trip.
                pacer = AccountPacer(rate, slots, batch=max(1, int(rate * 0.2)))
            else:
                pacer = AccountPacer(rate, MemorySlots())
            self._pacers[account] = pacer
        elif rate < pacer.rate:
            log.debug("%s keeps its pace of %.1f/s (asked %.1f/s)", account, pacer.rate, rate)
        return pacer

    def gate(self, account: str, concurrency: int = CONCURRENCY) -> PriorityGate:
        gate = self._gates.get(account)
        if gate is None:
            gate = self._gates[account] = PriorityGate(
                concurrency, reserve=min(REPLY_RESERVE, concurrency // 4)
            )
        return gate
