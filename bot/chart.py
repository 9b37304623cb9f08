"""A PNG bar chart of the most supported contributions. Pure: values in, PNG bytes out.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global state, no display), so it
is safe in any thread; matplotlib is imported on first use. Labels are user text: math rendering
is turned off for every text so a ``$`` is shown as written.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_BARS = 10
LABEL_CHARS = 48
# Characters of a title line at 12 pt across the 9-inch figure.
TITLE_CHARS = 90


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def title_lines(title: str, width: int = TITLE_CHARS, most: int = 3) -> list[str]:
    """The title wrapped on words into at most ``most`` lines of ``width`` characters."""
    lines = textwrap.wrap(re.sub(r"[ \t\r\n]+", " ", title).strip(), width) or [""]
    if len(lines) > most:
        lines = [*lines[: most - 1], shorten(" ".join(lines[most - 1 :]), width)]
    return lines


def bar_chart(title: str, bars: Sequence[Bar], *, xlabel: str, empty: str) -> bytes:
    """Horizontal bars, the largest on top. ``empty`` is shown when there is nothing to plot."""
    fig = bar_figure(title, bars, xlabel=xlabel, empty=empty)
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def bar_figure(title: str, bars: Sequence[Bar], *, xlabel: str, empty: str) -> Figure:
    """The chart's figure (laid out, not yet rendered)."""
    # Imported here: matplotlib takes a second to import, and only the closing needs it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    bars = list(bars)[:MAX_BARS]
    lines = title_lines(title)
    height = 1.6 + 0.45 * max(len(bars), 2) + 0.25 * (len(lines) - 1)
    fig = Figure(figsize=(9, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # The figure's title, left-aligned on the figure (not over the axes, which start after the
    # bar labels and clipped a long title), wrapped on whole words.
    title_text = fig.suptitle("\n".join(lines), fontsize=12, x=0.01, ha="left")
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
    return fig
