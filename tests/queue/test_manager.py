"""manager.py and dbutils.py end to end, with a fake script that behaves like run.py."""
import os
import re
import signal
import stat

from ovis import records
from ovis.queue.database import ABORTED, FAILED, QUEUED, RUNNING, SUCCESS
from ovis.queue.view import read_runs

from .helpers import (ledger_lines, pid_gone, run_dbutils, run_manager, start_manager, wait_for, write_spec,
                      environment)


def fake_spec(tmp_path, name="small", steps=2, sleep=0.05, args=("--value a", "--value b"), seeds=(1, 2), **extra):
    ledger = str(tmp_path / "ledger.txt")
    path = write_spec(tmp_path, name, args=list(args), parameters={"seed": list(seeds)},
                      **{"global": f"--steps {steps} --sleep {sleep} --ledger {ledger}"}, **extra)
    return path, ledger


def statuses(exp_dir) -> list:
    return [r["status"] for r in read_runs(str(exp_dir))]


def test_two_managers_started_together_execute_every_run_exactly_once(tmp_path, stop_processes):
    spec, ledger = fake_spec(tmp_path, args=[f"--value {v}" for v in "abcde"], seeds=(1, 2))
    root = tmp_path / "runs"
    managers = [start_manager(spec, root, "--processes", "2", log_path=tmp_path / f"m{i}.log") for i in range(2)]
    stop_processes.extend(managers)
    assert [m.wait(timeout=180) for m in managers] == [0, 0]
    started = [line[0] for line in ledger_lines(ledger)]
    runs = read_runs(str(root / "small"))
    assert len(runs) == 10 and sorted(started) == sorted(r["run_id"] for r in runs)  # each run once
    assert {r["status"] for r in runs} == {SUCCESS} and {r["attempts"] for r in runs} == {1}
    for run in runs:
        with open(os.path.join(run["run_dir"], "steps.log")) as f:
            assert f.read().split() == ["1", "2"]
        assert records.read_outcome(run["run_dir"]) == records.SUCCESS
    logs = [open(tmp_path / f"m{i}.log").read() for i in range(2)]
    assert sum(len(re.findall(r"\] success \S+ after", log)) for log in logs) == 10


def test_sigkilled_manager_leaves_no_orphan_and_its_run_resumes_on_restart(tmp_path, stop_processes):
    spec, ledger = fake_spec(tmp_path, name="long", steps=40, sleep=0.1, args=["--value a"], seeds=[1])
    root, exp_dir = tmp_path / "runs", tmp_path / "runs" / "long"
    manager = start_manager(spec, root, log_path=tmp_path / "m1.log")
    stop_processes.append(manager)
    steps_log = lambda: [r for r in read_runs(str(exp_dir))][0]["run_dir"] + "/steps.log"  # noqa: E731
    wait_for(lambda: os.path.exists(exp_dir / ".db.json") and os.path.exists(steps_log())
             and len(open(steps_log()).read().split()) >= 3, message="the run to make progress")
    child_pid = read_runs(str(exp_dir))[0]["pid"]
    manager.send_signal(signal.SIGKILL)
    manager.wait()
    # The child gets SIGTERM from the kernel (PR_SET_PDEATHSIG), checkpoints and exits.
    wait_for(lambda: pid_gone(child_pid), timeout=60, message="the orphaned run to exit")
    (run,) = read_runs(str(exp_dir))
    assert run["status"] == RUNNING and not run["alive"]
    assert records.read_outcome(run["run_dir"]) == records.ABORTED
    check = run_dbutils("long", root, "--check")
    assert "1 running run(s) have no live process" in check.stdout

    restart = run_manager(spec, root)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert f"aborted {run['run_id']}: the run's process (" in restart.stdout
    assert "requeued 1 aborted run(s)" in restart.stdout
    (run,) = read_runs(str(exp_dir))
    assert run["status"] == SUCCESS and run["attempts"] == 2
    assert [h[1] for h in run["history"]] == [QUEUED, RUNNING, ABORTED, QUEUED, RUNNING, SUCCESS]
    starts = [int(line[2].split("=")[1]) for line in ledger_lines(ledger)]
    assert starts[0] == 0 and starts[1] >= 3  # resumed from its checkpoint
    with open(run["run_dir"] + "/steps.log") as f:
        assert f.read().split() == [str(i) for i in range(1, 41)]  # every step exactly once


def test_ctrl_c_marks_runs_aborted_and_ends_children(tmp_path, stop_processes):
    spec, ledger = fake_spec(tmp_path, name="stop", steps=400, sleep=0.1, args=["--value a", "--value b"], seeds=[1])
    root, exp_dir = tmp_path / "runs", tmp_path / "runs" / "stop"
    manager = start_manager(spec, root, "--processes", "2", log_path=tmp_path / "m.log")
    stop_processes.append(manager)
    wait_for(lambda: len(ledger_lines(ledger)) == 2, message="both runs to start")
    pids = [int(line[1]) for line in ledger_lines(ledger)]
    manager.send_signal(signal.SIGINT)
    assert manager.wait(timeout=120) == 130
    assert all(pid_gone(pid) for pid in pids)
    runs = read_runs(str(exp_dir))
    assert [r["status"] for r in runs] == [ABORTED, ABORTED]
    assert all(records.read_outcome(r["run_dir"]) == records.ABORTED for r in runs)
    assert "SIGINT: stopping" in open(tmp_path / "m.log").read()


def test_failed_run_keeps_its_error_and_is_requeued_at_level_2(tmp_path):
    spec, ledger = fake_spec(tmp_path, name="fail", args=["--value ok", "--value bad --fail_at 1"], seeds=[1])
    root = tmp_path / "runs"
    result = run_manager(spec, root)
    assert result.returncode == 1  # some runs failed
    ok, bad = read_runs(str(root / "fail"))
    assert ok["status"] == SUCCESS and bad["status"] == FAILED and bad["returncode"] == 1
    assert bad["message"] == "Failed. planned failure at step 1"
    assert "Traceback" in bad["error"] and "RuntimeError: planned failure at step 1" in bad["error"]
    shown = run_dbutils("fail", root, "--show-failed")
    assert bad["run_id"] in shown.stdout and "RuntimeError: planned failure" in shown.stdout
    assert "1 failed run(s)" in shown.stdout
    assert "requeued 0 run(s)" in run_dbutils("fail", root, "--requeue", "--requeue_level", "1").stdout
    assert "requeued 1 run(s) (1 failed)" in run_dbutils("fail", root, "--requeue", "--requeue_level", "2").stdout
    assert statuses(root / "fail") == [SUCCESS, QUEUED]
    assert records.read_outcome(bad["run_dir"]) is None  # marker cleared for the next attempt


def test_bad_specs_are_refused_before_anything_is_queued(tmp_path):
    root = tmp_path / "runs"
    unknown, _ = fake_spec(tmp_path, name="unknown", args=["--bogus 1"])
    result = run_manager(unknown, root)
    assert result.returncode == 2
    assert "unknown option --bogus" in result.stderr and "fake_script.py" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"args": ["--value a"],\n "parameters": {"seed": [1, 2}\n}')
    result = run_manager(str(broken), root)
    assert result.returncode == 2 and "invalid JSON at line 2, column 30" in result.stderr
    empty, _ = fake_spec(tmp_path, name="empty", args=[])
    result = run_manager(empty, root)
    assert result.returncode == 2 and "the grid is empty" in result.stderr
    managed, _ = fake_spec(tmp_path, name="managed", args=["--value a --run_id x"])
    result = run_manager(managed, root)
    assert result.returncode == 2 and "args[0] sets --run_id" in result.stderr
    assert not os.path.exists(root)  # nothing was created


def test_rerunning_adds_only_new_grid_points_and_fresh_requeue_restarts(tmp_path):
    root = tmp_path / "runs"
    spec, ledger = fake_spec(tmp_path, name="grow", args=["--value a"], seeds=[1])
    assert run_manager(spec, root).returncode == 0
    spec, ledger = fake_spec(tmp_path, name="grow", args=["--value a"], seeds=[1, 2, 3])
    result = run_manager(spec, root)
    assert result.returncode == 0 and "2 new run(s) added, 1 already known" in result.stdout
    assert len(ledger_lines(ledger)) == 3  # the first run was not executed again
    assert statuses(root / "grow") == [SUCCESS] * 3
    first = read_runs(str(root / "grow"))[0]
    result = run_dbutils("grow", root, "--requeue", "--requeue_level", "4", "--fresh", "--yes",
                         "--filter", first["run_id"])
    assert "requeued 1 run(s) (1 success)" in result.stdout and not os.path.exists(first["run_dir"])
    assert statuses(root / "grow") == [QUEUED, SUCCESS, SUCCESS]
    assert run_manager(spec, root).returncode == 0
    assert [line[0] for line in ledger_lines(ledger)].count(first["run_id"]) == 2
    assert ledger_lines(ledger)[-1][2] == "start_step=0"  # from scratch, not from a checkpoint


def test_dry_run_prints_the_grid_and_writes_nothing(tmp_path):
    spec, _ = fake_spec(tmp_path, name="dry")
    result = run_manager(spec, tmp_path / "runs", "--dry-run")
    assert result.returncode == 0
    assert "4 runs in the grid of dry, 4 not yet in" in result.stdout
    assert result.stdout.count("--value") == 4 and "--seed 2" in result.stdout
    assert not os.path.exists(tmp_path / "runs")


def test_dbutils_check_and_clean(tmp_path):
    spec, _ = fake_spec(tmp_path, name="tidy", args=["--value a", "--value b --fail_at 0"], seeds=[1, 2])
    root = tmp_path / "runs"
    run_manager(spec, root)
    check = run_dbutils("tidy", root, "--check")
    assert check.returncode == 0
    lines = check.stdout.splitlines()
    assert lines[2].split() == ["all", "runs", "0", "0", "2", "2", "0", "4"]
    assert "--seed (2 values)" in check.stdout and "--value (2 values)" in check.stdout
    assert "; --verbose shows the runs per status for each value" in check.stdout
    assert len(lines) <= 8 and "--value  " not in check.stdout  # compact by default (a line of failure kinds)
    assert "failures by kind: error 2 (" in check.stdout
    check = run_dbutils("tidy", root, "--check", "--verbose")
    lines = check.stdout.splitlines()
    value_table = lines[lines.index(next(line for line in lines if line.startswith("--value"))):][2:4]
    assert [line.split() for line in value_table] == [["a", "0", "0", "2", "0", "0", "2"],
                                                      ["b", "0", "0", "0", "2", "0", "2"]]
    refused = run_dbutils("tidy", root, "--clean")  # not a terminal, no --yes
    assert refused.returncode == 1 and "pass --yes" in refused.stderr and os.path.exists(root / "tidy" / ".db.json")
    cleaned = run_dbutils("tidy", root, "--clean", "--yes")
    assert cleaned.returncode == 0 and "deleted the queue and 4 run folder(s)" in cleaned.stdout
    assert not os.path.exists(root / "tidy")
    assert "no queue database" in run_dbutils("tidy", root).stderr


FAKE_NVIDIA_SMI = """#!/bin/sh
echo "0, GPU-aaa, Fake A100, 500, 40000, 3"
echo "1, GPU-bbb, Fake A100, 39000, 40000, 97"
echo "2, GPU-ccc, Fake A100, 100, 40000, 0"
"""


def test_workers_are_pinned_to_the_selected_gpus(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_NVIDIA_SMI)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = environment()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    spec, _ = fake_spec(tmp_path, name="gpus", args=[f"--value {v}" for v in "abcd"], seeds=[1])
    result = run_manager(spec, tmp_path / "runs", "--max_memory", "0.5", "--processes", "1", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipping GPU 1 (Fake A100): memory 98% used > --max_memory 50%" in result.stdout
    assert "2 worker(s): 1 per device on cuda:2 (Fake A100), cuda:0 (Fake A100)" in result.stdout
    runs = read_runs(str(tmp_path / "runs" / "gpus"))
    assert {r["device"] for r in runs} <= {"cuda:0", "cuda:2"}
    for run in runs:
        with open(os.path.join(run["run_dir"], "process.log")) as f:
            assert f"CUDA_VISIBLE_DEVICES='{run['device'][-1]}'" in f.read()
    busy = run_manager(spec, tmp_path / "runs3", "--max_memory", "0.001", env=env)
    assert busy.returncode == 1 and "none of the 3 GPU(s) is eligible" in busy.stderr
    env["CUDA_VISIBLE_DEVICES"] = "GPU-aaa"  # the manager's own restriction is kept
    result = run_manager(spec, tmp_path / "runs2", env=env)
    assert "1 worker(s): 1 per device on cuda:GPU-aaa (Fake A100)" in result.stdout
    assert {r["device"] for r in read_runs(str(tmp_path / "runs2" / "gpus"))} == {"cuda:GPU-aaa"}


def test_cpu_workers_share_the_cores(tmp_path):
    spec, _ = fake_spec(tmp_path, name="cpu", args=["--value a"], seeds=[1])
    env = dict(environment(), OMP_NUM_THREADS="2")  # meant for one process: two workers must not both use it
    result = run_manager(spec, tmp_path / "runs", "--max_gpus", "0", "--processes", "2",
                         "--data_root", str(tmp_path / "data"), env=env)
    assert "2 worker(s): 2 per device on CPU (--max_gpus 0;" in result.stdout
    (run,) = read_runs(str(tmp_path / "runs" / "cpu"))
    assert run["device"] == "cpu"
    with open(os.path.join(run["run_dir"], "process.log")) as f:
        log = f.read()
    assert "CUDA_VISIBLE_DEVICES=''" in log
    assert f"OMP_NUM_THREADS={max(1, os.cpu_count() // 2)}" in log  # its share, whatever the manager's is
    # bookkeeping options last, so that they win over the grid's
    assert log.splitlines()[2].endswith(f"--value a --exp cpu --root {tmp_path / 'runs'} --data_root "
                                        f"{tmp_path / 'data'} --run_id {run['run_id']} --resume")
    assert run["params"] == {"seed": "1", "steps": "2", "sleep": "0.05", "ledger": str(tmp_path / "ledger.txt"),
                             "value": "a"}


def test_max_gpus_on_a_machine_without_gpu_says_what_was_found(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 9\n")  # installed but no GPU
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    env = dict(environment(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", CUDA_VISIBLE_DEVICES="")
    spec, _ = fake_spec(tmp_path, name="nogpu", args=["--value a"], seeds=[1])
    result = run_manager(spec, tmp_path / "runs", "--max_gpus", "2", "--queue_only", env=env)
    assert result.returncode == 0, result.stderr
    result = run_manager(spec, tmp_path / "runs", "--max_gpus", "2", env=env)
    assert "CPU (no GPU found (nvidia-smi and torch.cuda see none); --max_gpus 2 cannot be met;" in result.stdout
    assert "--max_gpus 0" not in result.stdout


def test_every_bad_grid_point_is_named_and_nothing_is_queued(tmp_path):
    spec = write_spec(tmp_path, "badrun", script="run.py", args=["--iw abc", "--iw 5", "--lr -1x"],
                      parameters={"seed": [1]}, **{"global": "--dataset gaussian-toy"})
    result = run_manager(spec, tmp_path / "runs", "--dry-run")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("  grid point")]
    assert "run.py refuses 2 of the 3 grid points; nothing was queued" in result.stderr
    assert [line.split()[2] for line in lines] == ["0", "2"] and "--iw abc" in lines[0] and "--lr -1x" in lines[1]
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "runs")
