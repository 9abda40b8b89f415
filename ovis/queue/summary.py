"""Text summaries of a queue: runs per status and per grid key, failures."""
import os
from typing import Dict, List, Sequence

from ovis.exit_codes import describe
from ovis.queue.database import FAILED, RUNNING, STATUSES
from ovis.queue.failures import count_kinds
from ovis.queue.display import format_duration, format_table, format_time
from ovis.queue.process import run_is_alive


def grid_keys(records: Sequence[dict]) -> List[str]:
    """Options whose value differs between runs (the axes of the grid), in order of appearance."""
    keys: Dict[str, None] = {}
    for record in records:
        for key in record.get("params", {}):
            keys.setdefault(key, None)
    return [key for key in keys if len({str(r.get("params", {}).get(key)) for r in records}) > 1]


def _status_row(label: str, records: Sequence[dict]) -> list:
    counts = [sum(1 for r in records if r.get("status") == status) for status in STATUSES]
    return [label] + counts + [len(records)]


def check_report(records: Sequence[dict], verbose: bool = False) -> str:
    """Runs per status: one table overall (and one per grid key and value with ``verbose``)."""
    if not records:
        return "the queue is empty"
    headers = ["", *STATUSES, "total"]
    sections = [format_table(headers, [_status_row("all runs", records)])]
    keys = grid_keys(records)
    if keys and not verbose:
        counts = {key: len({str(r.get("params", {}).get(key)) for r in records}) for key in keys}
        sections.append("grid: " + ", ".join(f"--{key} ({n} values)" for key, n in counts.items())
                        + "; --verbose shows the runs per status for each value")
    for key in keys if verbose else []:
        values: Dict[str, List[dict]] = {}
        for record in records:
            values.setdefault(str(record.get("params", {}).get(key, "(not set)")), []).append(record)
        rows = [_status_row(value, group) for value, group in values.items()]
        sections.append(format_table([f"--{key}", *STATUSES, "total"], rows))
    kinds = count_kinds(records)
    if kinds:  # one line under the counts
        sections[0] += "\nfailures by kind: " + "; ".join(
            f"{kind} {len(ids)} ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})" for kind, ids in kinds.items()
        ) + " ('--requeue --kinds KIND,...' requeues them)"
    dead = [r for r in records if r.get("status") == RUNNING and not run_is_alive(r)]
    if dead:
        sections.append(f"{len(dead)} running run(s) have no live process (killed manager or machine); "
                        f"'--requeue --requeue_level 3' queues them again: " + ", ".join(r["run_id"] for r in dead))
    return "\n\n".join(sections)


def runs_report(records: Sequence[dict]) -> str:
    """One line per run."""
    rows = []
    for r in records:
        duration = (r.get("finished") or r.get("heartbeat") or 0) - r["started"] if r.get("started") else None
        rows.append([r["run_id"], r.get("status", "unknown"), r.get("attempts", 0), r.get("device") or "-", r.get("host") or "-",
                     format_time(r.get("started")), format_duration(duration)])
    return format_table(["run", "status", "attempts", "device", "host", "started", "duration"], rows)


def failed_report(records: Sequence[dict], exp_dir: str) -> str:
    failed = [r for r in records if r.get("status") == FAILED]
    if not failed:
        return "no failed run"
    blocks = []
    for r in failed:
        log = os.path.join(exp_dir, r["run_id"], "process.log")
        error = (r.get("error") or "(no error output recorded)").rstrip()
        blocks.append(f"=== {r['run_id']} (attempt {r.get('attempts', 0)}, "
                      f"{'no exit code' if r.get('returncode') is None else describe(r['returncode'])}, "
                      f"{r.get('host') or '-'}, {format_time(r.get('finished'))})\n"
                      f"kind: {r.get('failure') or 'not recorded'}: {r.get('failure_detail') or '-'}\n"
                      f"args: {r.get('args', '')}\nlog:  {log}\n"
                      + "\n".join("    " + line for line in error.splitlines()))
    return "\n\n".join(blocks) + f"\n\n{len(failed)} failed run(s)"
