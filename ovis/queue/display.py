"""Console output of the queue tools: log lines, the live view of the grid and text tables."""
import shutil
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence

from tqdm import tqdm

from ovis.queue.database import FAILED, QUEUED, RUNNING, STATUSES, SUCCESS


def status_counts(records: Iterable[dict]) -> Dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    for record in records:
        counts[record.get("status", "unknown")] = counts.get(record.get("status", "unknown"), 0) + 1
    return counts


def format_counts(counts: Dict[str, int], skip_zero: bool = False) -> str:
    return " | ".join(f"{n} {status}" for status, n in counts.items() if n or not skip_zero)


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def format_time(timestamp: Optional[float]) -> str:
    return "-" if not timestamp else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align_left: int = 1) -> str:
    """Aligned text table; the first ``align_left`` columns are left-aligned, the rest right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: List[str]) -> str:
        return "  ".join(c.ljust(w) if i < align_left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


class Console:
    """Thread-safe printing. On a terminal a status line stays at the bottom and is redrawn
    in place; otherwise status updates are printed as ordinary log lines."""

    def __init__(self, stream=None, interactive: Optional[bool] = None):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._lock = threading.Lock()
        self._status = ""
        self.bar: Optional[tqdm] = None   # set by GridProgress on a terminal; log lines go above it

    def _clear(self) -> None:
        if self.interactive and self._status:
            self.stream.write("\r\033[K")

    def log(self, message: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.write(f"[{time.strftime('%H:%M:%S')}] {message}", file=self.stream)
                return
            self._clear()
            self.stream.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
            if self.interactive and self._status:
                self.stream.write(self._status)
            self.stream.flush()

    def status(self, text: str) -> None:
        with self._lock:
            if self.interactive:
                self._clear()
                self._status = text[:shutil.get_terminal_size().columns - 1]  # a wrapped line cannot be redrawn
                text = self._status
                self.stream.write(text)
                self.stream.flush()
        if not self.interactive:
            self.log(text)

    def close(self) -> None:
        with self._lock:
            if self.interactive and self._status:
                self.stream.write("\n")
                self.stream.flush()
            self._status = ""


class GridProgress:
    """The manager's live view of the grid: on a terminal a tqdm bar of finished runs (success
    and failed) with the counts per status and tqdm's ETA; otherwise a plain line every
    ``interval`` seconds with the counts and an ETA from this session's finishing rate."""

    def __init__(self, console: Console, name: str, interval: float = 60.0):
        self.console, self.name, self.interval = console, name, interval
        self._start = time.time()
        self._done_at_start: Optional[int] = None
        self._next_line = 0.0

    @staticmethod
    def done(counts: Dict[str, int]) -> int:
        return counts.get(SUCCESS, 0) + counts.get(FAILED, 0)

    def eta(self, counts: Dict[str, int]) -> Optional[float]:
        finished = self.done(counts) - (self._done_at_start or 0)
        left = counts.get(QUEUED, 0) + counts.get(RUNNING, 0)
        elapsed = time.time() - self._start
        return left * elapsed / finished if finished > 0 and elapsed > 0 else None

    def line(self, counts: Dict[str, int]) -> str:
        eta = self.eta(counts)
        return (f"[{self.name}] {self.done(counts)}/{sum(counts.values())} done | {format_counts(counts)}"
                f" | {format_duration(time.time() - self._start)} elapsed | ETA "
                + (format_duration(eta) if eta is not None else "unknown (no run finished yet)"))

    def update(self, counts: Dict[str, int]) -> None:
        if self._done_at_start is None:
            self._done_at_start = self.done(counts)
        if not self.console.interactive:
            if time.time() >= self._next_line:
                self.console.log(self.line(counts))
                self._next_line = time.time() + self.interval
            return
        if self.console.bar is None:
            self.console.bar = tqdm(total=sum(counts.values()), initial=self._done_at_start, desc=self.name,
                                    unit="run", file=self.console.stream, dynamic_ncols=True, leave=True)
        bar = self.console.bar
        bar.total = sum(counts.values())
        bar.update(self.done(counts) - bar.n)
        bar.set_postfix_str(format_counts(counts, skip_zero=True))

    def close(self, counts: Optional[Dict[str, int]] = None) -> None:
        if self.console.bar is not None:
            bar, self.console.bar = self.console.bar, None
            bar.close()
        if counts is not None:
            self.console.log(self.line(counts))
