"""The lines a run writes to its log (``run.log`` and, unless ``--silent``, the terminal)."""
import math
import sys
from typing import Dict


def start_lines(run_dir: str, trainer) -> list:
    """What the run is: folder, command line, model, estimator, device and length."""
    args, state = trainer.args, trainer.state
    parameters = sum(p.numel() for p in trainer.model.parameters())
    verb = f"resuming at step {state.step} (epoch {state.epoch})" if state.step > 0 else "starting"
    return [f"{verb} {run_dir}: {' '.join(sys.argv[1:]) if sys.argv else ''}",
            f"model {type(trainer.model).__name__} ({parameters} parameters), estimator {trainer.estimator_id}, "
            f"mc={args.mc}, iw={args.iw}, device {trainer.device}; {trainer.epochs} epochs x "
            f"{len(trainer.batches)} steps = {trainer.total_steps} steps; {trainer.alpha_schedule}",
            evaluation_plan_line(args, trainer.subsets) + f"; {state.chunk_rows} rows per forward pass "
            f"({trainer.chunk_choice})"]


def evaluation_plan_line(args, subsets: Dict) -> str:
    """What each periodic evaluation computes (the first one runs before any training step)."""
    line = (f"evaluation every {args.eval_freq} epochs: L_K with K={args.iw_test} on {len(subsets['train'])} "
            f"train and {len(subsets['test'])} test points")
    if args.grad_samples > 0:
        line += f", gradient statistics from {args.grad_samples} samples on {len(subsets['gradients'])} points"
    if args.mc_au_analysis > 0:
        line += f", active units on {len(subsets['active-units'])} points"
    return line + f"; at the end L_K with K={args.iw_valid} on {len(subsets['valid'])} validation points"


def evaluation_line(state, total_steps: int, train: Dict[str, float], test: Dict[str, float], speed: float) -> str:
    """One evaluation: bounds, best test bound so far, gradient statistics, active units, speed and
    the estimator's model evaluations per data point and step."""
    line = (f"step {state.step}/{total_steps} epoch {state.epoch} | train L_k {train['loss/L_k']:.3f} "
            f"kl_q_p {train.get('loss/kl_q_p', math.nan):.3f} ess {train.get('loss/ess', math.nan):.2f} | "
            f"test L_k {test['loss/L_k']:.3f} (best {state.best_value:.3f} at step {state.best_step})")
    if "grads/snr" in train:
        line += (f" | grads snr {train['grads/snr']:.3g} var {train['grads/variance']:.3g} "
                 f"magnitude {train['grads/magnitude']:.3g} dsnr {train['grads/dsnr']:.3g}")
    if "active_units/au" in train:
        line += f" | active units {train['active_units/au']:.0f}/{train['active_units/n']:.0f}"
    evaluations = train.get("info/model-evaluations")
    cost = "" if evaluations is None else f", {evaluations:.0f} model evaluations per data point and step"
    return f"{line} | {speed:.1f} steps/s{cost}"
