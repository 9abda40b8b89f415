"""What the queue and the scripts it launches agree on: the one definition, below both.

The queue (``ovis.queue``) launches a script (``run.py``, ``asymptotic_variance.py`` or any script
a spec names) as ``python <script> <grid options> --exp E --root R --data_root D --run_id I
--resume`` and knows it only through this protocol, never by importing its code:

* options: the run-folder options ``--root``, ``--exp``, ``--run_id``, ``--data_root``,
  ``--resume`` and ``--rf`` (``ovis.cli.add_run_folder_options``);
* run folder ``<root>/<exp>/<run_id>/``: ``config.json``, ``run.log`` (``RUN_LOG``) and the
  outcome marker (names and format in ``ovis.records``); the script never deletes
  ``QUEUE_FILES`` (the queue's copy of its output);
* exit codes: ``ovis.exit_codes``;
* a run that diverged raises ``DivergenceError`` (or ``NonFiniteLossError``): its name in the
  outcome marker or the output is what the queue classifies as ``diverged``;
* options checked before anything is queued: a script of the project root that defines
  ``build_parser()`` (and optionally ``validate_args(namespace)``, raising ``ValueError``) at
  module level, its work under ``if __name__ == "__main__"``, is loaded and every grid point is
  parsed with them (``OPTION_FUNCTIONS``); any other script is asked for ``--help``;
* environment: ``RUN_ENVIRONMENT`` (values already set win), below.

glibc heap thresholds: by default glibc returns the free memory at the top of its heap to the
system once it exceeds a dynamically adjusted threshold, so a training step that frees its
activations pages them in again at the next step. Fixed thresholds keep up to 64 MiB of freed
memory for the next step; blocks of 32 MiB or more are still mapped and returned one by one
(glibc's own ceiling of the dynamic mmap threshold on 64-bit systems). ``benchmarks/malloc.py``
measures the training step and the run's memory with and without them (fresh processes,
alternating; ``benchmarks/results.md``); the project keeps such a setting for a gain above 10% on
a stated target (benchmarks/targets.md, target 1). glibc reads the variables when a process
starts, so whoever starts it sets them; by hand::

    MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_MMAP_THRESHOLD_=33554432 python run.py ...

Setting either threshold turns off the dynamic adjustment of both, hence both are set. Other C
libraries (macOS, musl) ignore the variables.
"""
RUN_LOG = "run.log"          # the script's own log, in its run folder
PROCESS_LOG = "process.log"  # the script's stdout and stderr, appended by the queue
QUEUE_FILES = (PROCESS_LOG,)
OPTION_FUNCTIONS = ("build_parser", "validate_args")

HEAP_ENVIRONMENT = {"MALLOC_TRIM_THRESHOLD_": str(64 * 2 ** 20), "MALLOC_MMAP_THRESHOLD_": str(32 * 2 ** 20)}
# The environment of a launched script: the heap thresholds and OpenMP threads that sleep while
# they wait (run.py's default).
RUN_ENVIRONMENT = {**HEAP_ENVIRONMENT, "OMP_WAIT_POLICY": "PASSIVE"}


class DivergenceError(RuntimeError):
    """The run diverged: a non-finite metric or an impossible value (``ovis.training.divergence``)."""


class NonFiniteLossError(DivergenceError):
    """A training loss or diagnostic became NaN or infinite."""
