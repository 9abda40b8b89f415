"""``python -m ovis.apps.check``: every estimator's bias and variance against the exact gradient of
L_K, as tables (computed by ``ovis.testing.check``, whose docstring says how).

    python -m ovis.apps.check [--iw 2 4] [--samples 50000] [--seed 0] [--estimators id,...]

Every registered estimator family's example ids are checked (``--estimators``: these ids only);
estimators of plugins (``ovis.register_estimator``) too.
"""
import argparse
import time
from typing import Dict, List, Optional, Sequence

import torch

from ovis.estimators.config import parse_estimator_id
from ovis.testing.check import SLEEP_SAMPLES, check_enumerable, check_linear_gaussian, check_noise_controlled


def table_row(cells: Sequence, widths: Sequence[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def print_table(title: str, records: List[Dict], columns: Sequence[str]) -> None:
    print(f"\n{title}")
    widths = [max([24] + [len(r["estimator"]) for r in records]), 4, 13] + [max(13, len(c)) for c in columns[3:]]
    print(table_row(columns, widths))
    for record in records:
        if "error" in record:
            print(table_row([record["estimator"], record["iw"], f"n/a: {record['error'][:70]}"], widths[:3]))
            continue
        cells = [record[c] if isinstance(record[c], (str, int)) else f"{record[c]:.2e}" for c in columns]
        print(table_row(cells, widths))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iw", type=int, nargs="+", default=[2, 4], help="numbers of importance samples K")
    parser.add_argument("--samples", type=int, default=50000, help="Monte-Carlo samples (linear Gaussian part)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimators", default=None, help="comma-separated estimator ids (default: every "
                        "registered example id)")
    args = parser.parse_args(argv)
    if min(args.iw) < 1 or args.samples < 2:
        parser.error("--iw values must be >= 1 and --samples >= 2")
    ids = None if args.estimators is None else [e.strip() for e in args.estimators.split(",") if e.strip()]
    try:
        for estimator_id in ids or ():
            parse_estimator_id(estimator_id)
    except ValueError as error:
        parser.error(f"--estimators: {error}")
    torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation
    start = time.time()
    print_table("1. Enumerable binary model: exact expectation by enumerating every particle tuple "
           "(relative bias against grad L_K; machine precision = unbiased)",
           check_enumerable(args.iw, args.seed, ids),
           ("estimator", "iw", "unbiased for", "bias theta", "bias phi", "cos phi", "phi vs target", "std phi"))
    print_table(f"2. Linear Gaussian model: Monte Carlo with {args.samples} samples against the gradient of L_K by "
           f"Gauss-Hermite quadrature (z = max over coordinates of |difference| / (standard error + quadrature "
           f"error))", check_linear_gaussian(args.iw, args.samples, args.seed, ids),
           ("estimator", "iw", "unbiased for", "bias theta", "z theta", "bias phi", "z phi", "std phi",
            "quadrature error"))
    print_table("3. Noise-controlled estimators on the enumerable model, integrated over their noise (exact for "
           "ARM/DisARM, Gauss-Legendre ~1e-6 for REBAR/RELAX; relaxed estimators at temperature tau)",
           check_noise_controlled(args.iw, args.seed, ids),
           ("estimator", "iw", "unbiased for", "bias theta", "bias phi", "cos phi"))
    print(f"\n'phi vs target': relative bias against the gradient of the objective the phi gradient is unbiased "
          f"for (L_{{K-S}}: OVIS-MC without -exclusive, ELBO: TVO with one partition, sleep: E_p(x,z)[log q(z|x)], "
          f"whose phi mean is a Monte-Carlo average over {SLEEP_SAMPLES} sleep phases).\n({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
