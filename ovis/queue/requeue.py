"""Which runs a requeue queues again: the levels of ``dbutils.py --requeue_level`` and
``manager.py --requeue_level``, and the records each level selects (``RunDatabase.requeue``)."""
import time
from typing import Iterable, List, Optional, Sequence

from ovis.queue.process import run_is_alive
from ovis.queue.transaction import ABORTED, FAILED, RUNNING, SUCCESS

REQUEUE_LEVELS = {
    1: "aborted runs",
    2: "aborted and failed runs",
    3: "aborted, failed and running runs whose process is gone",
    4: "every run that is not running (success included)",
}


def requeue_candidates(records: Iterable[dict], level: int, run_ids: Optional[Sequence[str]] = None) -> List[dict]:
    """The records ``RunDatabase.requeue(level)`` would queue again. Live running runs never are."""
    if level not in REQUEUE_LEVELS:
        raise ValueError(f"requeue level {level} is not one of "
                         + "; ".join(f"{k}: {v}" for k, v in REQUEUE_LEVELS.items()))
    eligible = {ABORTED} | ({FAILED} if level >= 2 else set()) | ({SUCCESS} if level >= 4 else set())
    selected = None if run_ids is None else set(run_ids)
    now = time.time()
    chosen = []
    for record in records:
        if not isinstance(record.get("run_id"), str) or (selected is not None and record["run_id"] not in selected):
            continue
        status = record.get("status")
        if status in eligible or (status == RUNNING and level >= 3 and not run_is_alive(record, now)):
            chosen.append(record)
    return chosen
