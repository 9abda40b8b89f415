"""A real single-node Slurm on localhost for the tests (Debian's ``slurm-wlm`` and ``munge``).

``start_cluster(folder)`` starts ``munged`` (unless munge already works), ``slurmctld`` and
``slurmd`` with a ``slurm.conf`` in ``folder`` (``ProctrackType=proctrack/linuxproc``,
``TaskPlugin=task/none``, ``SelectType=select/cons_tres``, one node: this host with its CPUs and
half its memory, one default partition) and returns the environment (``SLURM_CONF``) to submit
with, or raises ``ClusterUnavailable`` saying why. ``stop_cluster`` ends only the daemons it
started.
"""
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Dict, List

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo")
MUNGE_KEY = "/etc/munge/munge.key"


class ClusterUnavailable(RuntimeError):
    pass


def _config(folder: str) -> str:
    host = socket.gethostname()
    with open("/proc/meminfo") as f:
        memory_mb = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) // 2048
    return "\n".join([
        "ClusterName=ovis-test", f"SlurmctldHost={host}", "SlurmUser=root", "AuthType=auth/munge",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "MpiDefault=none", "ReturnToService=2",
        "JobRequeue=1", "KillWait=5", "SchedulerParameters=sched_interval=1", "MinJobAge=300",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


def _munge_works() -> bool:
    try:
        encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return encoded.returncode == 0 and subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True,
                                                          timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_munge(started: List[int]) -> None:
    if _munge_works():
        return
    if not os.path.exists(MUNGE_KEY):
        os.makedirs(os.path.dirname(MUNGE_KEY), exist_ok=True)
        with open(MUNGE_KEY, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(MUNGE_KEY, 0o400)
        shutil.chown(MUNGE_KEY, "munge", "munge")
    os.makedirs("/run/munge", exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["munged", "--force"], capture_output=True, timeout=30)
    if not _munge_works():
        raise ClusterUnavailable("munged did not start (munge -n | unmunge fails)")
    with open("/run/munge/munged.pid") as f:
        started.append(int(f.read().strip()))


def _wait_for_pid(path: str, folder: str, daemon: str) -> int:
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.2)
    log = os.path.join(folder, f"{daemon}.log")
    tail = open(log).read().strip().splitlines()[-3:] if os.path.exists(log) else []
    raise ClusterUnavailable(f"{daemon} wrote no pid file within 30 s: {' / '.join(tail)}")


def start_cluster(folder: str) -> Dict[str, object]:
    """Start the cluster; returns ``{"env": ..., "started": [pids]}``."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        raise ClusterUnavailable(f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting slurmctld and slurmd needs root")
    for sub in ("state", "spool"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    with open(os.path.join(folder, "slurm.conf"), "w") as f:
        f.write(_config(folder))
    with open(os.path.join(folder, "cgroup.conf"), "w") as f:
        f.write("CgroupPlugin=cgroup/v1\n")
    env = dict(os.environ, SLURM_CONF=os.path.join(folder, "slurm.conf"))
    started: List[int] = []
    cluster = {"env": env, "started": started, "folder": folder}
    try:
        _start_munge(started)
        for daemon in ("slurmctld", "slurmd"):
            result = subprocess.run([daemon], env=env, capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise ClusterUnavailable(f"{daemon} did not start: {result.stderr.strip()[-300:]}")
            started.append(_wait_for_pid(os.path.join(folder, f"{daemon}.pid"), folder, daemon))
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=30)
            if state.stdout.strip() in ("idle", "mix", "alloc"):
                return cluster
            time.sleep(1)
        raise ClusterUnavailable(f"the node did not become idle within 60 s (sinfo: {state.stdout.strip()!r})")
    except (ClusterUnavailable, OSError, subprocess.TimeoutExpired) as error:
        stop_cluster(cluster)
        raise error if isinstance(error, ClusterUnavailable) else ClusterUnavailable(str(error))


def stop_cluster(cluster: Dict[str, object]) -> None:
    """Cancel this cluster's jobs, wait for their steps to end, then stop the daemons it started."""
    env = cluster["env"]
    try:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True,
                                                        timeout=30).stdout.strip():
            time.sleep(0.5)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for pid in reversed(cluster["started"]):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in cluster["started"]:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
