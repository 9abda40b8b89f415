"""The queue at scale: claim, finish and heartbeat costs at 20,000 records, and how busy the
database lock is with 50 concurrent runs.

    python benchmarks/queue_scale.py [--records 20000] [--runs 50] [--processes 10]
                                     [--run_seconds 120] [--window 120] [--heartbeat 30]

Records are grid points of ``experiments/sigmoid-belief-network.json`` with more seeds (about
1.4 KB each, the paper's largest spec). Costs are medians of wall-clock time in one process:

* ``same process``: the transactions of one manager (its workers are threads sharing one cache);
* ``after another process wrote``: each transaction first sees a file changed by someone else
  (several managers, Slurm tasks), so the changed lines are read again;
* ``heartbeat``: a running run's liveness file (no lock, no database write);
* ``compaction``: folding the journal into ``.db.json`` (``ovis.queue.journal``: one
  transaction in about ``sqrt(2 n)`` does it, 200 at 20,000 records; the others write only
  the journal).

The lock measurement runs ``--runs`` simulated runs as threads of ``--processes`` processes, each
run claiming, heart-beating every ``--heartbeat`` seconds for ``--run_seconds`` seconds and
finishing, over a ``--window``; the busy fraction is the time the lock was held, summed over all
processes, divided by the window.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.queue.database import SUCCESS, RunDatabase  # noqa: E402
from ovis.queue.process import ProcessIdentity  # noqa: E402
from ovis.queue.spec import parse_spec  # noqa: E402

SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                    "sigmoid-belief-network.json")


class TimedDatabase(RunDatabase):
    """Records how long each transaction held the lock."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.held = []

    def _acquire(self):
        lock = super()._acquire()
        acquired, release, held = time.perf_counter(), lock.release, self.held

        def timed_release(*args, **kwargs):
            if lock.is_locked:  # not the no-op release of the lock object's __del__
                held.append(time.perf_counter() - acquired)
            return release(*args, **kwargs)

        lock.release = timed_release
        return lock


def make_queue(exp_dir: str, records: int) -> None:
    with open(SPEC) as f:
        data = json.load(f)
    per_seed = len(parse_spec(dict(data, parameters=dict(data["parameters"], seed=[1])), "sbm", SPEC).grid())
    data["parameters"]["seed"] = list(range(1, records // per_seed + 2))
    points = parse_spec(data, "sbm", SPEC).grid()[:records]
    RunDatabase(exp_dir).add_runs(points)


def median_ms(values) -> float:
    return 1000.0 * statistics.median(values)


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def single_costs(exp_dir: str, repeats: int) -> dict:
    database, other = RunDatabase(exp_dir), RunDatabase(exp_dir)
    owner = ProcessIdentity.current()
    database.records()
    other.records()  # both caches warm, as in a running manager
    costs = {key: [] for key in ("claim", "finish", "heartbeat", "claim_foreign", "finish_foreign", "compaction")}
    for _ in range(repeats):  # one manager alone
        seconds, record = timed(database.claim, owner, "cpu", 600.0)
        costs["claim"].append(seconds)
        costs["heartbeat"].append(timed(database.heartbeat, record, owner)[0])
        costs["finish"].append(timed(database.finish, record["run_id"], owner, SUCCESS)[0])
    for _ in range(repeats):  # two managers taking turns
        seconds, record = timed(other.claim, owner, "cpu", 600.0)  # `database` wrote last
        costs["claim_foreign"].append(seconds)
        database.claim(owner, "cpu", 600.0)  # a write by the other instance before the finish
        costs["finish_foreign"].append(timed(other.finish, record["run_id"], owner, SUCCESS)[0])
    for _ in range(3):
        database.claim(owner, "cpu", 600.0)  # a journal to fold in
        costs["compaction"].append(timed(database.compact)[0])
    return {key: median_ms(values) for key, values in costs.items()}


def _simulated_runs(exp_dir: str, threads: int, run_seconds: float, heartbeat: float, window: float,
                    start_at: float, results) -> None:
    database = TimedDatabase(exp_dir, lock_timeout=600.0)
    database.records()  # warm the cache before the window, like a manager that has started
    owner = ProcessIdentity.current()

    def run_loop():
        while time.time() < start_at + window:
            record = database.claim(owner, "cpu", 600.0)
            if record is None:
                return
            end = time.time() + run_seconds
            while time.time() < end:
                time.sleep(min(heartbeat, max(0.0, end - time.time())))
                database.heartbeat(record, owner)
            database.finish(record["run_id"], owner, SUCCESS)

    time.sleep(max(0.0, start_at - time.time()))
    workers = [threading.Thread(target=run_loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((sum(database.held), len(database.held)))


def lock_busy(exp_dir: str, runs: int, processes: int, run_seconds: float, heartbeat: float, window: float) -> dict:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 30.0 + 3.0 * processes  # every process has read the database by then
    per_process = [runs // processes + (1 if i < runs % processes else 0) for i in range(processes)]
    workers = [context.Process(target=_simulated_runs, args=(exp_dir, n, run_seconds, heartbeat, window, start_at,
                                                             results)) for n in per_process]
    for worker in workers:
        worker.start()
    totals = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.time() - start_at
    held, transactions = sum(t[0] for t in totals), sum(t[1] for t in totals)
    return dict(busy=held / elapsed, transactions=transactions, elapsed=elapsed,
                mean_hold_ms=1000.0 * held / max(1, transactions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--run_seconds", type=float, default=120.0)
    parser.add_argument("--heartbeat", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=120.0)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="ovis-queue-scale-")
    try:
        exp_dir = os.path.join(folder, "sbm")
        seconds, _ = timed(make_queue, exp_dir, args.records)
        size = os.path.getsize(os.path.join(exp_dir, ".db.json"))
        print(f"{args.records} records, {size / 1e6:.1f} MB ({size / args.records:.0f} B each), created in "
              f"{seconds:.1f} s")
        costs = single_costs(exp_dir, args.repeats)
        print(f"median ms at {args.records} records: claim {costs['claim']:.1f}, finish {costs['finish']:.1f}, "
              f"heartbeat {costs['heartbeat']:.2f} (same process); claim {costs['claim_foreign']:.1f}, finish "
              f"{costs['finish_foreign']:.1f} (after another process wrote); compaction {costs['compaction']:.0f}")
        busy = lock_busy(exp_dir, args.runs, args.processes, args.run_seconds, args.heartbeat, args.window)
        print(f"{args.runs} concurrent runs ({args.processes} processes, runs of {args.run_seconds:.0f} s, heartbeat "
              f"every {args.heartbeat:.0f} s): lock busy {100 * busy['busy']:.1f}% of {busy['elapsed']:.0f} s, "
              f"{busy['transactions']} transactions, {busy['mean_hold_ms']:.0f} ms held each on average")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
