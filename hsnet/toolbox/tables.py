"""Plain-text and Markdown tables and short counts (``1.23 M``): the one table formatter of every command."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_count", "format_table", "markdown_table"]


def format_count(n: float | None, digits: int = 2) -> str:
    """``1234567 -> '1.23 M'``; '-' for None."""
    if n is None:
        return "-"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.{digits}f} {unit}"
    return f"{n:.0f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """Monospace table; ``align`` has one 'l' or 'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """The same table in Markdown (``|`` in cells escaped); ``align`` as in :func:`format_table`."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c).replace("|", "\\|") for c in r] for r in [headers, *rows]]
    rule = ["---" if a == "l" else "---:" for a in align]
    return "\n".join("| " + " | ".join(r) + " |" for r in [cells[0], rule, *cells[1:]])
