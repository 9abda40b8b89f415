"""glibc heap thresholds for training processes, set the standard way: in the environment.

By default glibc returns the free memory at the top of its heap to the system once it exceeds a
dynamically adjusted threshold, so a training step that frees its activations pages them in
again at the next step. Fixed thresholds keep up to 64 MiB of freed memory for the next step;
blocks of 32 MiB or more are still mapped and returned one by one (glibc's own ceiling of the
dynamic mmap threshold on 64-bit systems).

``benchmarks/malloc.py`` measures the training step and the run's memory with and without them
(fresh processes, alternating; ``benchmarks/results.md``). The project keeps such a setting for a
gain above 10% on a stated target (benchmarks/targets.md, target 1).

glibc reads the variables when a process starts, so they are set by whoever starts it: the
queue sets ``RUN_ENVIRONMENT`` (below) for the runs it launches; by hand::

    MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_MMAP_THRESHOLD_=33554432 python run.py ...

Setting either threshold turns off the dynamic adjustment of both, hence both are set. Other C
libraries (macOS, musl) ignore the variables.
"""

HEAP_ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(64 * 2 ** 20), "MALLOC_MMAP_THRESHOLD_": str(32 * 2 ** 20)}

# The environment of a run.py process started by the queue or a benchmark: the heap thresholds
# (read when the process starts) and OpenMP threads that sleep while they wait (run.py's default).
# Values already in the environment win.
RUN_ENVIRONMENT = {**HEAP_ENVIRONMENT, "OMP_WAIT_POLICY": "PASSIVE"}
