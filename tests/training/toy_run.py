"""``run.py`` with the toys of ``toys.py`` in place of the registries, for tests that need a
separate process (kill and resume). Usage: ``python toy_run.py [run.py options]``."""
import sys

from toys import build_toy_components

from ovis.apps.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], build=build_toy_components))
