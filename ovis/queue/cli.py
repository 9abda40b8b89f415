"""Command line of ``manager.py`` (a thin script at the repository root), and the option types it
shares with ``dbutils.py``'s (``ovis.queue.dbutils_cli``)."""
import argparse
import os
import sys
from typing import List, Optional, Sequence

from ovis.cli import ArgumentParser
from ovis.exit_codes import ABORTED as EXIT_INTERRUPTED
from ovis.exit_codes import BAD_ARGUMENTS as EXIT_USAGE
from ovis.exit_codes import FAILED as EXIT_ERROR
from ovis.queue import devices, options, slurm
from ovis.queue.database import FAILED, DatabaseError, RunDatabase
from ovis.queue.requeue import REQUEUE_LEVELS
from ovis.queue.display import Console, format_counts, format_table, status_counts
from ovis.queue.executor import LaunchSettings
from ovis.queue.local import LocalManager
from ovis.queue.lock import check_exclusive_locks
from ovis.queue.process import ProcessIdentity
from ovis.queue.spec import SpecError, load_spec
from ovis.records import clear_outcome

DEFAULT_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tell_waiting(message: str) -> None:
    """Say who holds the database lock (``RunDatabase(on_wait=...)``)."""
    print(message, file=sys.stderr, flush=True)


def requeue_level(text: str) -> int:
    """``--requeue_level``: 0 to 4 (``REQUEUE_LEVELS``)."""
    value = int(text)
    if value not in range(0, 5):
        raise argparse.ArgumentTypeError(f"expected 0 to 4, got {text}")
    return value


def _key_value(text: str) -> tuple:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


LEVELS_HELP = "; ".join(f"{k}: {v}" for k, v in REQUEUE_LEVELS.items())


# ---------------------------------------------------------------------------------------------
# manager.py
# ---------------------------------------------------------------------------------------------

def manager_parser(project_root: str = DEFAULT_PROJECT_ROOT) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="manager.py", description="Queue the grid of an experiment spec (experiments/NAME.json) in "
        "<root>/<exp>/.db.json and execute it: locally with worker processes on GPUs or CPUs, or on "
        "Slurm through submitit. Several managers (also on several machines sharing the folder) can "
        "work on one queue; each run is executed once.")
    parser.add_argument("--exp", required=True, help="experiment name (experiments/<exp>.json) or path to a spec file")
    parser.add_argument("--experiments", default=os.path.join(project_root, "experiments"),
                        help="folder of the experiment specs")
    parser.add_argument("--root", default="runs/", help="experiments root; runs go to <root>/<exp>/<run_id>")
    parser.add_argument("--data_root", default=None, help="data folder passed to the runs (default: $OVIS_DATA, "
                        "then <project>/data)")
    for flag, meaning in (("--dry_run", "print the grid and exit (nothing is written)"),
                          ("--queue_only", "add the grid to the queue without running it"),
                          ("--skip_missing_data", "queue only the runs whose data set is found (default: refuse "
                           "the grid when one is missing, unless the spec says \"skip_missing_data\": true)")):
        parser.add_argument(flag, action="store_true", help=meaning)
    parser.add_argument("--requeue_level", type=requeue_level, default=1,
                        help=f"requeue at start (0: nothing; {LEVELS_HELP})")
    parser.add_argument("--backend", choices=("local", "slurm"), default="local")

    local = parser.add_argument_group("local backend")
    local.add_argument("--processes", type=int, default=1, help="workers per GPU, or CPU workers without GPU")
    local.add_argument("--max_gpus", type=int, default=None, help="use at most this many GPUs (0: CPU only; "
                       "default: every GPU found)")
    local.add_argument("--max_load", type=float, default=1.0, help="skip GPUs whose utilisation exceeds this (0-1)")
    local.add_argument("--max_memory", type=float, default=1.0,
                       help="skip GPUs whose used memory fraction exceeds this (0-1)")

    runs = parser.add_argument_group("runs")
    runs.add_argument("--heartbeat", type=float, default=30.0, help="seconds between heartbeats of a running run")
    runs.add_argument("--stale_after", type=float, default=600.0,
                      help="managers on other hosts consider a run dead after this many seconds without heartbeat")
    runs.add_argument("--grace", type=float, default=300.0,
                      help="seconds a stopped run gets to checkpoint before it is killed")
    runs.add_argument("--lock_timeout", type=float, default=120.0, help="seconds to wait for the database lock")
    runs.add_argument("--fail_fast", action="store_true", help="local backend: start no new run once a run fails "
                      "with an error (an exception, not out of memory, a time-out or divergence); runs in flight "
                      "finish")

    cluster = parser.add_argument_group("slurm backend (submitit)")
    cluster.add_argument("--cluster", default="slurm", choices=("slurm", "local", "debug"),
                         help="submitit executor: slurm, or local/debug to run the tasks on this machine")
    cluster.add_argument("--slurm_partition", default=None)
    cluster.add_argument("--slurm_time", type=int, default=24 * 60, help="minutes per task (time-out requeues it)")
    cluster.add_argument("--slurm_gpus", type=int, default=None, help="GPUs per task (none given: 1 on slurm, "
                         "else 1 if this machine has one)")
    cluster.add_argument("--slurm_cpus", type=int, default=4, help="CPUs per task")
    cluster.add_argument("--slurm_mem", type=float, default=16.0, help="memory per task in GB")
    cluster.add_argument("--slurm_parallelism", type=int, default=64, help="tasks running at the same time")
    cluster.add_argument("--slurm_setup", action="append", default=[], help="shell line run before each task "
                         "(repeat), e.g. 'module load cuda'")
    cluster.add_argument("--slurm_additional", action="append", type=_key_value, default=[],
                         help="extra sbatch option KEY=VALUE (repeat)")
    cluster.add_argument("--wait", action="store_true", help="wait for the jobs and show the queue's status")
    cluster.add_argument("--resubmit", action="store_true", help="also submit queued runs that already have a job")
    return parser


def _print_grid(points, database: RunDatabase, spec, command_head: str) -> None:
    known = {r.get("run_id"): r.get("status", "unknown") for r in database.records()} if database.exists else {}
    rows = [[p.index, p.run_id, known.get(p.run_id, "new"), p.args] for p in points]
    print(format_table(["#", "run id", "status", "arguments"], rows, align_left=4))
    new = sum(1 for p in points if p.run_id not in known)
    print(f"\n{len(points)} runs in the grid of {spec.name}, {new} not yet in {database.path}")
    print(f"each run: {command_head} --run_id <run id> --resume")


def _drop_missing_data(spec, points, data_root: str, skip: bool, console: Console):
    """Refuse a grid whose data sets are missing, or drop those runs when ``skip``."""
    missing = options.missing_data(spec, points, data_root)
    if not missing:
        return points
    kept = [p for p in points if p.params.get("dataset") not in missing]
    counts = {name: sum(1 for p in points if p.params.get("dataset") == name) for name in missing}
    details = "\n".join(f"  --dataset {name} ({counts[name]} runs): {why}" for name, why in missing.items())
    if not skip:
        raise SpecError(f"{spec.path}: data not found under --data_root {data_root}:\n{details}\n"
                        f"Provide the files (or --data_root / $OVIS_DATA), or pass --skip_missing_data to "
                        f"queue the other runs only")
    if not kept:
        raise SpecError(f"{spec.path}: every run needs data that is missing under {data_root}:\n{details}")
    for name in missing:
        console.log(f"skipping {counts[name]} run(s) of --dataset {name}: its files are not under {data_root}")
    return kept


def _settings(args, spec, project_root: str) -> LaunchSettings:
    data_root = args.data_root or os.environ.get("OVIS_DATA") or os.path.join(project_root, "data")
    return LaunchSettings(script=spec.script_path(project_root), exp=spec.name, root=os.path.abspath(args.root),
                          data_root=os.path.abspath(data_root), project_root=project_root,
                          heartbeat_interval=args.heartbeat, stale_after=args.stale_after, grace=args.grace,
                          threads_option=options.accepts_option(spec.script_path(project_root), project_root,
                                                                "threads"))


def _prepare_queue(args, database: RunDatabase, spec, points, console: Console) -> None:
    added = database.add_runs(points, meta=dict(exp=spec.name, spec=spec.path, script=spec.script,
                                                 description=spec.description))
    console.log(f"queue {database.path}: {len(added)} new run(s) added, {len(points) - len(added)} already known")
    readded = [run_id for run_id in added if os.path.isdir(database.run_dir(run_id))]
    if readded:
        found = {r["run_id"]: r.get("status") for r in database.records()}
        console.log(f"warning: {len(readded)} run(s) were not in the queue but have a folder (records removed by "
                    f"hand or lost?): re-added with the status their folder shows ("
                    f"{format_counts(status_counts([{'status': found.get(i)} for i in readded]), skip_zero=True)}; queued ones "
                    f"resume from their checkpoints), their earlier history is lost: {', '.join(readded[:5])}")
    owner = ProcessIdentity.current()
    recovered = database.recover(by=f"manager {owner}")
    for record in recovered:
        console.log(f"aborted {record['run_id']}: {record['error']}")
    if args.requeue_level > 0:
        requeued = database.requeue(args.requeue_level, note=f"requeued by manager {owner} (level {args.requeue_level})",
                                    prepare=clear_outcome)
        if requeued:
            console.log("requeued " + ", ".join(f"{len(ids)} {status}" for status, ids in requeued.items())
                        + f" run(s) (level {args.requeue_level}: {REQUEUE_LEVELS[args.requeue_level]})")
    console.log(f"queue: {format_counts(status_counts(database.records()))}")


def _local_slots(args, console: Console) -> List[devices.WorkerSlot]:
    gpus = [] if args.max_gpus == 0 else devices.list_gpus()
    max_gpus = len(gpus) if args.max_gpus is None else args.max_gpus
    chosen, skipped = devices.select_gpus(gpus, max_gpus, args.max_load, args.max_memory)
    for reason in skipped:
        console.log(f"skipping {reason}")
    if gpus and not chosen:
        raise SpecError(f"none of the {len(gpus)} GPU(s) is eligible (see above): free one, relax --max_load / "
                        f"--max_memory, or pass --max_gpus 0 to run on the CPU")
    slots = devices.worker_slots(chosen, args.processes)
    if chosen:
        where = ", ".join(f"cuda:{g.visible_id} ({g.name})" for g in chosen)
    else:
        found = ("--max_gpus 0" if args.max_gpus == 0 else
                 "no GPU found (nvidia-smi and torch.cuda see none)"
                 + (f"; --max_gpus {args.max_gpus} cannot be met" if args.max_gpus else ""))
        where = f"CPU ({found}; {slots[0].cpu_threads} thread(s) each)"
    console.log(f"{len(slots)} worker(s): {args.processes} per device on {where}")
    return slots


def _slurm_options(args) -> slurm.SlurmOptions:
    gpus = args.slurm_gpus
    if gpus is None:
        gpus = 1 if args.cluster == "slurm" else min(1, len(devices.list_gpus()))
    return slurm.SlurmOptions(cluster=args.cluster, partition=args.slurm_partition, time_min=args.slurm_time,
                              gpus=gpus, cpus=args.slurm_cpus, mem_gb=args.slurm_mem,
                              parallelism=args.slurm_parallelism, setup=list(args.slurm_setup),
                              additional=dict(args.slurm_additional))


def manager_main(argv: Optional[Sequence[str]] = None, project_root: str = DEFAULT_PROJECT_ROOT) -> int:
    args = manager_parser(project_root).parse_args(argv)
    if args.processes < 1:
        print(f"error: --processes must be >= 1, got {args.processes}", file=sys.stderr)
        return EXIT_USAGE
    console = Console()
    try:
        spec = load_spec(args.exp, args.experiments)
        points = spec.grid()
        if spec.duplicates:
            console.log(f"warning: {spec.duplicates} of the {spec.size} grid points repeat another one (an option "
                        f"set both in 'parameters' and in 'global' or an args line?): each run is queued once")
        settings = _settings(args, spec, project_root)
        for warning in options.check_grid(spec, points, settings.script, project_root):
            console.log(f"warning: {warning}")
        if options.uses_datasets(settings.script, project_root):
            points = _drop_missing_data(spec, points, settings.data_root,
                                        spec.skip_missing_data or args.skip_missing_data, console)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    database = RunDatabase(settings.exp_dir, lock_timeout=args.lock_timeout, on_wait=tell_waiting)
    head = " ".join([os.path.basename(settings.python), os.path.relpath(settings.script, project_root), "<arguments>",
                     f"--exp {settings.exp} --root {settings.root} --data_root {settings.data_root}"])
    try:
        if args.dry_run:
            _print_grid(points, database, spec, head)
            return 0
        console.log(f"experiment {spec.name}: {spec.description or '(no description)'}")
        check_exclusive_locks(settings.exp_dir)
        _prepare_queue(args, database, spec, points, console)
        if args.queue_only:
            return 0
        if args.backend == "slurm":
            jobs = slurm.submit(database, settings, _slurm_options(args), resubmit=args.resubmit, console=console)
            if not (args.wait and jobs):
                return 0
            errors = slurm.wait(database, jobs, console)
            failed = [r.get("run_id") for r in database.records() if r.get("status") == FAILED]
            return EXIT_ERROR if errors or failed else 0
        returncode = LocalManager(database, settings, _local_slots(args, console), console,
                                  requeue_dead=args.requeue_level > 0, fail_fast=args.fail_fast).run()
        database.compact()  # .db.json alone holds every change again (what TinyDB(path) reads)
        return returncode
    except (DatabaseError, SpecError, slurm.SubmissionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return getattr(error, "exit_code", EXIT_ERROR)
    except KeyboardInterrupt:  # before the workers started: nothing runs yet
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
