"""Queue and execute an experiment's grid: ``python manager.py --exp NAME [--processes P --max_gpus G]``.

See ``python manager.py --help`` and ``ovis/queue``.
"""
import os
import sys

from ovis.queue.cli import manager_main

if __name__ == "__main__":
    sys.exit(manager_main(project_root=os.path.dirname(os.path.abspath(__file__))))
