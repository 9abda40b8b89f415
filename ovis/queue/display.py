"""Console output of the queue tools: log lines, the live status line and text tables."""
import shutil
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence

from ovis.queue.database import STATUSES


def status_counts(records: Iterable[dict]) -> Dict[str, int]:
    counts = {status: 0 for status in STATUSES}
    for record in records:
        counts[record.get("status", "unknown")] = counts.get(record.get("status", "unknown"), 0) + 1
    return counts


def format_counts(counts: Dict[str, int]) -> str:
    return " | ".join(f"{n} {status}" for status, n in counts.items())


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

    def _clear(self) -> None:
        if self.interactive and self._status:
            self.stream.write("\r\033[K")

    def log(self, message: str) -> None:
        with self._lock:
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
