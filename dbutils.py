"""Inspect and maintain an experiment's queue: ``python dbutils.py --exp NAME [--check | --requeue |
--show-failed | --clean]``. See ``python dbutils.py --help`` and ``ovis/queue``.
"""
import sys

from ovis.queue.dbutils_cli import dbutils_main

if __name__ == "__main__":
    sys.exit(dbutils_main())
