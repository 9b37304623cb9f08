"""Who runs the schedule when several workers share a database: the mechanism lives in
``storage.leader`` (shared with the pollers' leadership per bot account)."""

from storage.leader import (
    LOCK_KEY,
    AlwaysLeader,
    FileLeader,
    Leadership,
    PostgresLeader,
    leadership_for,
    lock_key,
)

__all__ = [
    "LOCK_KEY",
    "AlwaysLeader",
    "FileLeader",
    "Leadership",
    "PostgresLeader",
    "leadership_for",
    "lock_key",
]
