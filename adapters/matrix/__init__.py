"""The Matrix channel (matrix-nio): citizens and moderators use Parlons from Element and other
Matrix clients, encrypted DMs included. See the README, "Run on Matrix".

``parlons run`` starts it when ``PARLONS_MATRIX_HOMESERVER`` is set; ``python -m adapters.matrix``
runs it alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.matrix.service import MatrixService
    from bot.app import App
    from bot.runtime import Runtime

__all__ = ["build_service"]


def build_service(app: App, runtime: Runtime) -> MatrixService:
    """The Matrix service for ``parlons run``: ``name``, ``channel`` and ``async run(stop)``."""
    from adapters.matrix.service import MatrixService

    return MatrixService(app, runtime)
