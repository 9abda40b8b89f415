"""Figure 1 of the paper: variance and SNR of gradient estimators against K on the Gaussian
toy model near its optimum (see ``ovis/analysis/asymptotic.py``; options in ``ovis/apps/asymptotic.py``).

    python asymptotic_variance.py --estimators ovis-gamma1,ovis-gamma0,pathwise-iwae \\
        --iw_min 3 --iw_max 1000 --iw_steps 5 --mc_samples 1000 --epsilon 0.01

prints the log-log slopes of SNR, variance and magnitude against K and writes the tables and
figures to ``runs/asymptotic-variance/<run_id>/``. Exit codes: 0 success, 1 failed, 2 bad
options, 130 aborted (``--resume`` continues).
"""
import sys

from ovis.apps.asymptotic import build_parser, main, validate_args

# What the queue reads to check a spec's options before queueing (the launch protocol, ovis/launch.py).
__all__ = ["build_parser", "validate_args", "main"]

if __name__ == "__main__":
    sys.exit(main())
