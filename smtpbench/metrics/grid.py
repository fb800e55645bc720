"""Interval histograms of several recorders merged on one time grid (used by ``smtpbench merge`` and ``--workers``).

Grid cell ``k`` is ``[base + k*step, base + (k+1)*step)``; every piece (an interval histogram, a timeline line)
goes to the cell of its midpoint, so each is counted exactly once, and HdrHistogram addition keeps the merged
cells exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from hdrh.histogram import HdrHistogram

from smtpbench.metrics.hlog import LogInterval
from smtpbench.metrics.recorder import Interval, new_histogram


class TimedHistogram(Protocol):
    """An interval histogram with absolute times: a recorder's :class:`Interval`, or one read from a log."""

    @property
    def tag(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def histogram(self) -> HdrHistogram: ...


@dataclass
class LoggedInterval:
    """A :class:`LogInterval` on the epoch clock (its payload decoded only when merged)."""

    line: LogInterval
    base: float

    @property
    def tag(self) -> str:
        return self.line.tag

    @property
    def start(self) -> float:
        return self.base + self.line.start

    @property
    def end(self) -> float:
        return self.base + self.line.start + self.line.length

    @property
    def histogram(self) -> HdrHistogram:
        return self.line.histogram


class TimedPiece(Protocol):
    """Anything with a span on the epoch clock."""

    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...


P = TypeVar("P", bound=TimedPiece)


def grid_cells(pieces: Iterable[P], base: float, step: float) -> list[tuple[int, list[P]]]:
    """Pieces grouped by grid cell, cells in time order.

    Grid cell ``k`` is ``[base + k*step, base + (k+1)*step)``; a piece goes to
    the cell of its midpoint, so every piece is counted exactly once.
    """
    cells: dict[int, list[P]] = defaultdict(list)
    for piece in pieces:
        cells[int(((piece.start + piece.end) / 2 - base) // step)].append(piece)
    return sorted(cells.items())


def cell_span(group: Sequence[TimedPiece], base: float, step: float, k: int) -> tuple[float, float]:
    """The span of cell ``k``'s merged piece: its pieces' times clipped to the cell."""
    lo, hi = min(p.start for p in group), max(p.end for p in group)
    start, end = max(lo, base + k * step), min(hi, base + (k + 1) * step)
    if end <= start:  # pieces longer than a cell: keep their own span
        return lo, hi
    return start, end


def merge_intervals(pieces: Iterable[TimedHistogram], base: float, step: float) -> Iterator[list[Interval]]:
    """Merged intervals, in time order: one list (one Interval per tag) per grid cell that has any.

    Cells as :func:`grid_cells`; a merged interval spans :func:`cell_span`.
    Pieces are decoded one cell at a time, so memory stays bounded by one cell.
    """
    for k, pieces_k in grid_cells(pieces, base, step):
        by_tag: dict[str, list[TimedHistogram]] = defaultdict(list)
        for piece in pieces_k:
            by_tag[piece.tag].append(piece)
        out = []
        for tag in sorted(by_tag):
            group = by_tag[tag]
            start, end = cell_span(group, base, step, k)
            h = new_histogram()
            for p in group:
                h.add(p.histogram)
            out.append(Interval(tag, start, end, h))
        yield out
