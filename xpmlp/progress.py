"""A one-line progress display for the ``xpmlp`` command, redrawn in place on a terminal.

Before training it says what is happening (``loading numpy and xpmlp ...``,
``reading data.csv ...``), so that something shows as soon as the command starts;
then it becomes a bar of epochs with the running loss, the validation score (early
stopping) or held-out score, the elapsed time and an estimate of the time left::

    epoch  42/200 [######........................] loss 0.1234  val 0.9512  1.2s  eta 4.5s

It is hand-written rather than taken from tqdm or rich: it needs no dependency, costs
nothing to import (tqdm takes about 0.09 s, rich.progress 0.1 s and three packages), and
shows exactly the fields above. :func:`wanted` keeps it off when the stream is not a
terminal (a pipe, a file, a CI log).
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, TextIO

__all__ = ["ProgressBar", "wanted", "format_seconds"]


def wanted(stream: TextIO, force: bool | None = None) -> bool:
    """Whether to draw on ``stream``: ``force`` if given, else only on a terminal (not ``TERM=dumb``)."""
    if force is not None:
        return bool(force)
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return tty and os.environ.get("TERM") != "dumb"


def format_seconds(seconds: float) -> str:
    """``4.5s``, ``1m05s``, ``2h03m``: short and of a fixed meaning."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressBar:
    """A status line, then a bar of epochs, drawn in place (``\\r``, then erase to the end of line).

    Parameters
    ----------
    stream : file object
        Where to draw (the ``xpmlp`` command uses stderr).
    width : int
        Characters of the bar itself.
    interval : float
        Seconds between redraws of the bar (the last epoch is always drawn).
    clock : callable
        Returns seconds (``time.perf_counter``); tests pass a fake one.

    Use :meth:`say` for what happens before training, :meth:`start` when the epochs
    begin, :meth:`update` after each epoch, and :meth:`close` at the end: it leaves
    the last bar on the screen with an optional remark (why training stopped), or
    erases a status line that no bar replaced.
    """

    def __init__(self, stream: TextIO, *, width: int = 30, interval: float = 0.1,
                 clock: Callable[[], float] = time.perf_counter):
        self.stream = stream
        self.width = width
        self.interval = interval
        self.clock = clock
        self.total = 0
        self.start_time = clock()
        self.score_name = "val"
        self._last_draw = -math.inf
        self._latest: tuple[int, float, float | None] | None = None
        self._shown = ""  # what the line holds now: "", "status" or "bar"

    # ----------------------------------------------------------------- status
    def say(self, text: str) -> None:
        """Show ``text ...`` now, replacing whatever the line held."""
        self._write(f"{text} ...")
        self._shown = "status"

    # -------------------------------------------------------------------- bar
    def start(self, total: int, *, score_name: str = "val") -> None:
        """The epochs begin: at most ``total`` of them; time (and the ETA) counts from now."""
        self.total = max(int(total), 1)
        self.score_name = score_name
        self.start_time = self.clock()
        self._last_draw = -math.inf

    def render(self, epoch: int, loss: float, score: float | None = None, *, final: bool = False) -> str:
        """The bar after ``epoch`` (1-based) epochs, with the latest ``loss`` and optional ``score``."""
        done = min(epoch, self.total)
        filled = int(self.width * done / self.total)
        digits = len(str(self.total))
        line = (f"epoch {done:>{digits}}/{self.total} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"loss {loss:.4g}")
        if score is not None:
            line += f"  {self.score_name} {score:.4f}"
        elapsed = self.clock() - self.start_time
        line += f"  {format_seconds(elapsed)}"
        if not final and 0 < done < self.total:
            line += f"  eta {format_seconds(elapsed / done * (self.total - done))}"
        return line

    def update(self, epoch: int, loss: float, score: float | None = None) -> None:
        """Record the end of ``epoch``; redraw at most every ``interval`` seconds (and at the last epoch)."""
        self._latest = (epoch, loss, score)
        now = self.clock()
        if now - self._last_draw < self.interval and epoch < self.total:
            return
        self._last_draw = now
        self._write(self.render(epoch, loss, score))
        self._shown = "bar"

    def close(self, remark: str = "") -> None:
        """Draw the last epoch (with ``remark``, e.g. why training stopped) and end the line.

        A status line that no epoch replaced is erased instead.
        """
        if self._latest is not None:
            line = self.render(*self._latest, final=True)
            self._write(f"{line}  {remark}" if remark else line)
            self.stream.write("\n")
            self.stream.flush()
        elif self._shown == "status":
            self._write("")
        self._latest = None
        self._shown = ""

    def _write(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
