"""A PNG bar chart of the most supported contributions. Pure: values in, PNG bytes out.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global state, no display), so it
is safe in any thread; matplotlib is imported on first use. Labels are user text: math rendering
is turned off for every text so a ``$`` is shown as written.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

MAX_BARS = 10
LABEL_CHARS = 48


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def bar_chart(title: str, bars: Sequence[Bar], *, xlabel: str, empty: str) -> bytes:
    """Horizontal bars, the largest on top. ``empty`` is shown when there is nothing to plot."""
    # Imported here: matplotlib takes a second to import, and only the closing needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    bars = list(bars)[:MAX_BARS]
    height = 1.6 + 0.45 * max(len(bars), 2)
    fig = Figure(figsize=(9, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    title_text = ax.set_title(shorten(title, 80), fontsize=12, loc="left")
    title_text.set_parse_math(False)
    if not bars:
        ax.set_axis_off()
        note = ax.text(0.5, 0.5, empty, ha="center", va="center", fontsize=11)
        note.set_parse_math(False)
    else:
        positions = list(range(len(bars)))[::-1]
        values = [b.value for b in bars]
        ax.barh(positions, values, color="#3b6fb6")
        # Tick labels are rebuilt at drawing time: escape "$" rather than set parse_math.
        ax.set_yticks(positions, [shorten(b.label).replace("$", r"\$") for b in bars])
        for pos, value in zip(positions, values, strict=True):
            ax.text(value, pos, f" {value}", va="center", fontsize=9).set_parse_math(False)
        ax.set_xlabel(xlabel).set_parse_math(False)
        ax.set_xlim(0, max(values) * 1.15 + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
