"""Time per training step of run.py, its hardware floor and peak memory per estimator and K, on
the paper's SBN (3 x 200, linear) and Gaussian VAE (see ``ovis/training/efficiency.py``; options
in ``ovis/apps/efficiency.py``). Runs on CPU and CUDA.

    python measure_efficiency.py --models sbm,gaussian-vae --iw 5,10,50 \\
        --estimators reinforce,vimco-arithmetic,ovis-gamma1,ovis-S10-exclusive,tvo-part2-config1,pathwise-iwae

writes ``reports/efficiency/efficiency.csv``, ``efficiency.md`` and ``efficiency.png|pdf``;
``--load reports/efficiency/efficiency.csv`` only redraws them.
"""
import sys

from ovis.apps.efficiency import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
