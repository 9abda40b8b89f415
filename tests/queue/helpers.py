"""Helpers of the queue tests: spec files, manager / dbutils processes, polling."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

from ovis.queue.dbutils_cli import dbutils_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_script.py")
TIMEOUT = 120  # seconds; the test machine is shared and slow


def write_spec(folder, name: str, **spec) -> str:
    spec.setdefault("description", f"test spec {name}")
    spec.setdefault("script", FAKE_SCRIPT)
    path = os.path.join(str(folder), f"{name}.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def environment() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def manager_command(spec_path: str, root, *extra: str) -> list:
    return [sys.executable, os.path.join(ROOT, "manager.py"), "--exp", spec_path, "--root", str(root), *extra]


def run_manager(spec_path: str, root, *extra: str, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(manager_command(spec_path, root, *extra), capture_output=True, text=True, cwd=ROOT,
                          env=env or environment(), timeout=timeout)


def start_manager(spec_path: str, root, *extra: str, log_path=None, env=None) -> subprocess.Popen:
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(manager_command(spec_path, root, *extra), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                            env=env or environment())


def run_dbutils(exp: str, root, *extra: str) -> subprocess.CompletedProcess:
    """``dbutils.py`` in this process (a process start costs seconds on a loaded machine)."""
    argv = ["--exp", exp, "--root", str(root), *extra]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        returncode = dbutils_main(argv)
    return subprocess.CompletedProcess(["dbutils.py", *argv], returncode, out.getvalue(), err.getvalue())


def wait_for(predicate, timeout: float = TIMEOUT, interval: float = 0.1, message: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def ledger_lines(path) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def kill_writers(exp_dir: str, writer_script: str, delays, after_each=None) -> None:
    """For each delay: start ``python -c writer_script exp_dir``, wait for its first line (it is
    writing), let it write for ``delay`` seconds, SIGKILL it, then call ``after_each()``."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    for delay in delays:
        writer = subprocess.Popen([sys.executable, "-c", writer_script, exp_dir], stdout=subprocess.PIPE, env=env)
        writer.stdout.readline()
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if after_each is not None:
            after_each()
