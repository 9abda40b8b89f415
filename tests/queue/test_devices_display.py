"""GPU selection, worker slots, exit classification and console output."""
import io
import os
import signal

import pytest

from ovis.queue.database import ABORTED, FAILED, SUCCESS
from ovis.queue.devices import GPU, select_gpus, worker_slots
from ovis.queue.display import Console, GridProgress, format_table
from ovis.queue.executor import classify_exit

GPUS = [GPU("0", "A", 30000, 40000, 0.1), GPU("1", "B", 100, 40000, 0.9), GPU("2", "C", 2000, 40000, 0.0),
        GPU("3", "D")]


def test_select_gpus_filters_load_and_memory_and_prefers_free_memory():
    chosen, skipped = select_gpus(GPUS, max_gpus=8, max_load=0.5, max_memory=0.5)
    assert [g.visible_id for g in chosen] == ["3", "2"]  # unknown usage counts as free
    assert skipped == ["GPU 0 (A): memory 75% used > --max_memory 50%", "GPU 1 (B): load 90% > --max_load 50%"]
    chosen, skipped = select_gpus(GPUS, max_gpus=1, max_load=1.0, max_memory=1.0)
    assert [g.visible_id for g in chosen] == ["3"] and len(skipped) == 3


def test_worker_slots_per_gpu_or_cpu():
    slots = worker_slots([GPUS[2], GPUS[3]], processes=2)
    assert [(s.device, s.cuda_visible_devices, s.cpu_threads) for s in slots] == [
        ("cuda:2", "2", None), ("cuda:2", "2", None), ("cuda:3", "3", None), ("cuda:3", "3", None)]
    slots = worker_slots([], processes=3, cpu_count=8)
    assert [(s.device, s.cuda_visible_devices, s.cpu_threads) for s in slots] == [("cpu", "", 2)] * 3
    with pytest.raises(ValueError, match="--processes must be >= 1"):
        worker_slots([], processes=0)


@pytest.mark.parametrize("returncode, marker, stopped, status", [
    (0, None, False, SUCCESS), (0, "success", False, SUCCESS),
    (0, "aborted", False, ABORTED),      # the original's SIGTERM handler exits with 0
    (130, "aborted", True, ABORTED), (143, None, False, ABORTED),
    (1, "failed", False, FAILED), (2, None, False, FAILED),
    (1, "failed", True, ABORTED),        # died of the stop signal before it could checkpoint
    (-signal.SIGKILL, None, False, FAILED), (-signal.SIGKILL, None, True, ABORTED),
])
def test_exit_codes_map_to_statuses(returncode, marker, stopped, status):
    assert classify_exit(returncode, marker, stopped)[0] == status


def test_oom_kill_is_named():
    assert classify_exit(-signal.SIGKILL, None, False) == (FAILED, "killed by SIGKILL (out of memory?)")
    assert classify_exit(2, None, False) == (FAILED, "exit code 2 (bad arguments)")


def test_format_table_aligns_columns():
    assert format_table(["name", "n"], [["a", 1], ["bbb", 22]]).splitlines() == [
        "name   n", "----  --", "a      1", "bbb   22"]


def test_console_keeps_the_status_line_below_log_lines_on_a_terminal():
    stream = io.StringIO()
    console = Console(stream, interactive=True)
    console.status("3 queued")
    console.log("started x")
    console.close()
    text = stream.getvalue()
    assert text.startswith("3 queued\r\033[K[")  # status drawn, then cleared for the log line
    assert text.endswith("started x\n3 queued\n")  # and redrawn below it
    plain = io.StringIO()
    Console(plain, interactive=False).status("3 queued")
    assert plain.getvalue().endswith("] 3 queued\n") and "\r" not in plain.getvalue()


def test_cpu_workers_pass_their_share_of_the_cores_to_scripts_that_accept_threads():
    from ovis.queue.executor import LaunchSettings, run_command, run_environment
    from ovis.queue.options import accepts_option

    from .helpers import FAKE_SCRIPT, ROOT
    assert accepts_option(os.path.join(ROOT, "run.py"), ROOT, "threads")
    assert not accepts_option(FAKE_SCRIPT, ROOT, "threads")
    settings = LaunchSettings(script="/p/run.py", exp="e", root="/r", data_root="/d", project_root="/p",
                              threads_option=True)
    assert run_command(settings, ["--iw", "5", "--threads", "2"], "x", cpu_threads=1)[1:6] == [
        "/p/run.py", "--threads", "1", "--iw", "5"]  # the grid point's own --threads comes later and wins
    assert "--threads" not in run_command(settings, ["--iw", "5"], "x", cpu_threads=None)
    env = run_environment(settings, "", 1)
    assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"


def test_runs_get_the_heap_thresholds_unless_the_user_set_them(monkeypatch):
    from ovis.queue.executor import LaunchSettings, run_environment
    from ovis.launch import HEAP_ENVIRONMENT
    settings = LaunchSettings(script="/p/run.py", exp="e", root="/r", data_root="/d", project_root="/p")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "12345")
    env = run_environment(settings, None, None)
    assert env["MALLOC_TRIM_THRESHOLD_"] == HEAP_ENVIRONMENT["MALLOC_TRIM_THRESHOLD_"]
    assert env["MALLOC_MMAP_THRESHOLD_"] == "12345"


def test_grid_progress_is_a_tqdm_bar_on_a_terminal_and_plain_lines_otherwise():
    counts = {"queued": 6, "running": 2, "success": 3, "failed": 1, "aborted": 0}
    plain = io.StringIO()
    progress = GridProgress(Console(plain, interactive=False), "exp", interval=60.0)
    progress.update(counts)
    progress.update(dict(counts, queued=5, success=4))  # within the interval: no second line
    line = plain.getvalue().strip()
    assert line.count("\n") == 0 and "[exp] 4/12 done | 6 queued | 2 running | 3 success | 1 failed" in line
    assert "ETA unknown (no run finished yet)" in line
    progress._start -= 60.0  # one more run finished in a minute: 7 left -> 7 minutes
    assert "ETA 0:07:00" in progress.line(dict(counts, queued=5, success=4))
    terminal = io.StringIO()
    console = Console(terminal, interactive=True)
    progress = GridProgress(console, "exp")
    progress.update(counts)
    console.log("start x")
    progress.close()
    text = terminal.getvalue()
    assert "exp:  33%" in text and "4/12" in text and "6 queued | 2 running | 3 success | 1 failed" in text
    assert "] start x\n" in text and "aborted" not in text.split("start x")[0].split("\r")[-1]
