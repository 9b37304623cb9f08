"""The delivery runtime: every message leaves through it, whatever the messenger.

- ``claims``: outbox rows are claimed with a lease before they are sent (no row sent by two
  workers, a chat's order kept across workers).
- ``lanes``: one lane per chat (ordered, one in flight), many chats at once, transient
  failures retried on their lane only, permanent ones dead-lettered.
- ``pacing``: one pace per bot account shared by replies and broadcasts (and by workers,
  through the database), replies first.
- ``replies``: ``OutboxSender``, the reply sender of one channel built on the above.
- ``hub``: ``DeliveryHub`` (``Runtime.delivery``), the per-process registry of pacers and gates.

See docs/runtime.md.
"""

from bot.delivery.claims import Claim, OutboxClaims, worker_name
from bot.delivery.lanes import Backoff, Job, Lanes, Outcome
from bot.delivery.pacing import (
    BROADCAST,
    REPLY,
    AccountPacer,
    DatabaseSlots,
    MemorySlots,
    PriorityGate,
    TokenBucket,
    pace_extra_part,
)
from bot.delivery.replies import OutboxSender

__all__ = [
    "BROADCAST",
    "REPLY",
    "AccountPacer",
    "Backoff",
    "Claim",
    "DatabaseSlots",
    "Job",
    "Lanes",
    "MemorySlots",
    "OutboxClaims",
    "OutboxSender",
    "Outcome",
    "PriorityGate",
    "TokenBucket",
    "pace_extra_part",
    "worker_name",
]
