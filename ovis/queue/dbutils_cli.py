"""Command line of ``dbutils.py`` (a thin script at the repository root): inspect and maintain an
experiment's queue."""
import argparse
import os
import shutil
import sys
from typing import List, Optional, Sequence

from ovis.cli import ArgumentParser
from ovis.exit_codes import FAILED as EXIT_ERROR
from ovis.queue import slurm
from ovis.queue.cli import LEVELS_HELP, requeue_level, tell_waiting
from ovis.queue.database import RUNNING, DatabaseError, RunDatabase, UnreadableDatabase
from ovis.queue.requeue import REQUEUE_LEVELS, requeue_candidates
from ovis.queue.view import read_runs
from ovis.queue.display import format_counts, status_counts
from ovis.queue.failures import FAILURE_KINDS, parse_kinds
from ovis.queue.repair import describe_problems, find_problems, repair
from ovis.queue.spec import SpecError, load_spec
from ovis.queue.summary import check_report, failed_report, runs_report
from ovis.records import clear_outcome


def _kinds(text: str) -> List[str]:
    try:
        return parse_kinds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def dbutils_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="dbutils.py", description="Inspect and maintain the queue of an experiment (<root>/<exp>/.db.json). "
        "Without an action, --check.")
    parser.add_argument("--exp", required=True, help="experiment name")
    parser.add_argument("--root", default="runs/", help="experiments root")
    parser.add_argument("--filter", default="", help="only runs whose id contains this text")
    actions = parser.add_argument_group("actions")
    actions.add_argument("--check", action="store_true", help="runs per status (per grid key too with --verbose), "
                         "and damaged records or run folders without record")
    actions.add_argument("--verbose", "-v", action="store_true", help="with --check: one table per grid key")
    actions.add_argument("--repair", action="store_true", help="fix what --check found (records without run_id or "
                         "status, run folders without record), after confirmation")
    actions.add_argument("--list", action="store_true", help="one line per run")
    actions.add_argument("--show_failed", action="store_true",
                         help="the error output of every failed run")
    actions.add_argument("--requeue", action="store_true", help="queue runs again (see --requeue_level)")
    actions.add_argument("--requeue_level", type=requeue_level, default=1, help=LEVELS_HELP)
    actions.add_argument("--kinds", type=_kinds, default=None,
                         help=f"with --requeue: only failed or aborted runs of these failure kinds (comma-separated: "
                         f"{', '.join(FAILURE_KINDS)}), e.g. preempted,out_of_memory")
    actions.add_argument("--fresh", action="store_true",
                         help="with --requeue: delete the requeued runs' folders so they restart from scratch")
    actions.add_argument("--clean", action="store_true", help="delete the database and the run folders")
    actions.add_argument("--compact", action="store_true", help="fold the journal of a large queue "
                         "(.db.journal.json) into .db.json, so that TinyDB(path) alone sees every change")
    actions.add_argument("--purge_lock", action="store_true",
                         help="remove the database lock file; refused while a process holds the lock (it names "
                         "the holder)")
    parser.add_argument("--lock_timeout", type=float, default=120.0,
                        help="seconds to wait for the database lock (a message says who holds it after 2 s)")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    return parser


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} -> refused: not a terminal; pass --yes to confirm", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def _remove_run_folder(run_dir: str) -> None:
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)


def _requeue(args, database: RunDatabase) -> int:
    if args.requeue_level == 0:
        print("--requeue_level 0 requeues nothing")
        return 0
    level = args.requeue_level if args.kinds is None else max(args.requeue_level, 2)  # failed runs have kinds
    run_ids = [r["run_id"] for r in read_runs(database.exp_dir) if args.filter in r["run_id"]]
    candidates = requeue_candidates(database.records(), level, run_ids)
    if args.kinds is not None:
        candidates = [r for r in candidates if r.get("failure") in args.kinds]
    if args.fresh and candidates and not _confirm(
            f"delete the folders (checkpoints, metrics) of {len(candidates)} run(s) of {args.exp} and requeue them?",
            args.yes):
        return EXIT_ERROR
    requeued = database.requeue(level, [r["run_id"] for r in candidates],
                                prepare=_remove_run_folder if args.fresh else clear_outcome)
    total = sum(len(ids) for ids in requeued.values())
    detail = ", ".join(f"{len(ids)} {status}" for status, ids in requeued.items()) or "none"
    print(f"requeued {total} run(s) ({detail}); level {level}: {REQUEUE_LEVELS[level]}"
          + (f"; kinds {', '.join(args.kinds)}" if args.kinds is not None else "")
          + ("; folders deleted" if args.fresh and total else ""))
    return 0


def _clean(args, database: RunDatabase) -> int:
    records = read_runs(database.exp_dir)
    alive = [r["run_id"] for r in records if r.get("status") == RUNNING and r.get("alive")]
    if alive:
        print(f"error: {len(alive)} run(s) are running ({', '.join(alive[:5])}...): stop their manager first",
              file=sys.stderr)
        return EXIT_ERROR
    folders = [r["run_dir"] for r in records if os.path.isdir(r["run_dir"])]
    if not _confirm(f"delete the queue of {args.exp} ({len(records)} runs) and {len(folders)} run folder(s) "
                    f"in {database.exp_dir}?", args.yes):
        return EXIT_ERROR
    database.delete()  # first: a failure here leaves everything as it was
    for folder in folders:
        shutil.rmtree(folder)
    shutil.rmtree(os.path.join(database.exp_dir, slurm.SUBMITIT_FOLDER), ignore_errors=True)
    left = os.listdir(database.exp_dir)
    if not left:
        os.rmdir(database.exp_dir)
    print(f"deleted the queue and {len(folders)} run folder(s)"
          + (f"; {database.exp_dir} still holds: {', '.join(sorted(left))}" if left else ""))
    return 0


def _salvage(args, database: RunDatabase) -> bool:
    """Rebuild an unreadable database from its intact entries (after confirmation); False if refused."""
    try:
        database.tables()
        return True
    except UnreadableDatabase as error:
        print(str(error).split(". Run dbutils.py")[0])
    if not _confirm(f"rebuild the queue of {args.exp} from its intact entries (the damaged files are kept as "
                    f"copies)?", args.yes):
        return False
    print("\n".join(database.salvage()))
    return True


def _repair(args, database: RunDatabase) -> int:
    if not _salvage(args, database):
        return EXIT_ERROR
    problems = find_problems(database)
    lines = describe_problems(problems)
    if not lines:
        print("nothing to repair")
        return 0
    print("\n".join(lines[:-1]))
    if not _confirm(f"repair the queue of {args.exp}?", args.yes):
        return EXIT_ERROR
    points = None
    spec_path = database.meta().get("spec")
    if problems["orphan_folders"] and spec_path:
        try:
            points = load_spec(spec_path, os.path.dirname(spec_path)).grid()
        except SpecError as error:
            print(f"the spec {spec_path} could not be loaded ({error}): folders without record are not re-added",
                  file=sys.stderr)
    print("\n".join(repair(database, points)))
    return 0


def _check(args, database: RunDatabase, records: List[dict]) -> None:
    print(check_report(records, verbose=args.verbose))
    problems = describe_problems(find_problems(database))
    if problems:
        print("\nproblems:\n" + "\n".join("  " + line for line in problems))


def dbutils_main(argv: Optional[Sequence[str]] = None) -> int:
    args = dbutils_parser().parse_args(argv)
    database = RunDatabase(os.path.join(args.root, args.exp), lock_timeout=args.lock_timeout, on_wait=tell_waiting)
    try:
        if args.purge_lock:
            print("lock removed (no process held it)" if database.purge_lock()
                  else f"no lock file at {database.lock_path}")
            return 0
        if args.compact:
            print(f"folded the journal into {database.path}" if database.compact()
                  else f"no journal to fold in: {database.path} holds every change")
            return 0
        if args.repair:
            return _repair(args, database)
        records = [r for r in read_runs(database.exp_dir) if args.filter in r["run_id"]]
        if args.requeue:
            return _requeue(args, database)
        if args.clean:
            return _clean(args, database)
        if args.show_failed:
            print(failed_report(records, database.exp_dir))
        if args.list:
            print(runs_report(records))
        if args.check or not (args.show_failed or args.list):
            _check(args, database, records)  # its table holds the counts
        else:
            print(f"\n{len(records)} runs: {format_counts(status_counts(records))}")
        return 0
    except (FileNotFoundError, DatabaseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_ERROR)
