"""The training loop of ``run.py``: train, evaluate, analyse, log, checkpoint, resume.

One ``Trainer`` runs one run folder (DESIGN 4). The loop, per epoch ``e``:

1. at the start of epochs ``e % eval_freq == 0`` and after the last epoch: evaluate (active
   units, gradient statistics, L_K on fixed train / test subsets, images), keep the best model
   by test L_K, save a checkpoint;
2. set the learning rate of the epoch, then one optimiser step per batch, alpha following its
   warm-up schedule. Training losses and diagnostics stay on the device and are read every
   ``SYNC_EVERY`` steps (progress bar, NaN check); their averages since the previous
   evaluation are logged under the ``online`` split (``online:loss/L_k``, ``online:control_variate/mse``).

Training stops after the last epoch or, with ``--time_budget``, once the training steps have
taken that many seconds (``_budget_spent``); every evaluation logs the time spent in training
steps (``info/training-time``, wall-clock, and ``info/training-cpu-time``, process CPU time).
After training the best model is evaluated on the whole validation split (``valid:loss/L_k``).

Randomness: model initialisation and particles draw from the global torch RNG, whose state is
checkpointed. Data order and dynamic binarisation use generators derived from (seed,
position) (``ovis.training.data``), evaluations run on a forked RNG seeded by (seed, step), so
switching analyses on or off never changes the training trajectory, and a resumed run
repeats an unbroken one exactly (bit-for-bit with ``--deterministic`` on GPUs).
"""
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ovis.run_folder import StopRequests, run_work
from ovis.training import checkpoint as checkpoints
from ovis.training.analyses import AnalysisContext, moving_variance_tracker, run_analyses
from ovis.training.compilation import (compile_options, compiled_gradient_pass, compiled_optimizer_step,
                                       compiled_training_step, compiles, evaluation_compiler)
from ovis.training.divergence import check_evaluation, check_parameters, likelihood_is_probability_mass
from ovis.training.data import FixedSubset, TrainingBatches, derive_seed, epoch_count, steps_per_epoch
from ovis.training.evaluation import chunk_rows, evaluate_bound
from ovis.training.images import RECONSTRUCTIONS, model_image_grids, save_png
from ovis.training.messages import evaluation_line, start_lines
from ovis.training.monitor import StepMonitor, summary
from ovis.training.optim import load_optimizer_state, make_optimizer
from ovis.training.progress import Progress
from ovis.training.recorder import RunRecorder
from ovis.training.schedules import AlphaSchedule, LearningRateSchedule

ESS_POINTS = 1000  # training points of the ESS at the training K


@dataclass
class RunComponents:
    """What a run trains and evaluates with (built from the options by ``ovis.training.components``).

    ``evaluator(iw, rows, compiler)`` returns a plain L_K evaluator (alpha = 0, beta = 1) of
    ``rows`` rows per forward pass (``compiler``: None, or what compiles its chunks' pass), called
    as ``evaluator(model, x)``; ``datasets`` has ``train``, ``valid``, ``test`` and ``x_shape``."""
    datasets: object
    model: nn.Module
    estimator: nn.Module
    evaluator: Callable[[int, int, Optional[Callable]], Callable]
    device: torch.device
    estimator_id: str = ""


@dataclass
class TrainingState:
    """The position of a run; ``batch`` is the next batch of epoch ``epoch``."""
    step: int = 0
    epoch: int = 0
    batch: int = 0
    last_eval_step: int = -1
    best_value: float = -math.inf
    best_step: int = -1
    best_epoch: int = -1
    elapsed: float = 0.0  # seconds of training time before the current process
    training_time: float = 0.0  # wall-clock seconds spent in training steps (evaluations excluded)
    training_cpu_time: float = 0.0  # process CPU seconds spent in training steps (evaluations excluded)
    chunk_rows: int = 0  # rows per forward pass of the evaluations and analyses (0: not chosen yet)


@contextmanager
def seeded_rng(seed: int, device: torch.device):
    """Run a block on the global RNGs seeded with ``seed``, then restore their previous state."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class Trainer:
    """Trains one run. ``run()`` returns the exit code (0 success, 1 failed, 130 aborted)."""

    def __init__(self, args, components: RunComponents, run_dir: str, logger, resume: bool = False):
        self.args, self.run_dir, self.logger = args, run_dir, logger
        self.device = components.device
        self.datasets = components.datasets
        self.model = components.model.to(self.device)
        self.estimator = components.estimator.to(self.device)
        total_steps = (epoch_count(args.epochs, args.nsteps, len(self.datasets.train), args.bs)
                       * steps_per_epoch(len(self.datasets.train), args.bs))
        compile = compiles(getattr(args, "compile", "off"), total_steps, args.mc * args.iw,
                           getattr(self.estimator, "compile_problem", None))
        # --compile: the gradient pass and the optimiser steps, compiled on first use (ovis.training.compilation)
        self.gradient_pass = self._gradient_pass
        if compile:
            # the fallback's: compiled on first use only
            estimator_call = torch.compile(self.estimator, options=compile_options(self.device, cuda_graphs=False))
            self.gradient_pass = compiled_gradient_pass(
                self._gradient_pass, self.device, lambda x, **runtime: self._gradient_pass(x, estimator_call, **runtime))
        self.make_evaluator = components.evaluator
        # --compile: the bound evaluations' chunk passes compiled too, one evaluator (and program) per K
        self.evaluation_compiler = evaluation_compiler(self.device) if compile else None
        self.evaluators: Dict[int, Callable] = {}
        self.estimator_id = components.estimator_id or args.estimator
        self.image_data = len(self.datasets.x_shape) == 3

        betas = getattr(args, "adam_betas", None)
        self.optimizers = [make_optimizer(args.optimizer, self.model.parameters(), lr=args.lr, betas=betas)]
        estimator_parameters = [p for p in self.estimator.parameters() if p.requires_grad]
        if estimator_parameters:
            self.optimizers.append(make_optimizer("adam", estimator_parameters, lr=args.baseline_lr, betas=betas))
        self.base_lrs = [[group["lr"] for group in optimizer.param_groups] for optimizer in self.optimizers]
        self.optimizer_steps = [compiled_optimizer_step(optimizer, self.device) if compile else optimizer.step
                                for optimizer in self.optimizers]
        self.trained_parameters = [p for optimizer in self.optimizers for group in optimizer.param_groups
                                   for p in group["params"]]

        train = self.datasets.train
        self.batches = TrainingBatches(train, args.bs, args.seed, args.workers,
                                       pin_memory=self.device.type == "cuda")
        self.epochs = epoch_count(args.epochs, args.nsteps, len(train), args.bs)
        self.alpha_schedule = AlphaSchedule(args.alpha, args.alpha_init, args.warmup, args.warmup_offset,
                                            args.warmup_mode)
        self.lr_schedule = LearningRateSchedule(self.epochs, args.lr_reduce_steps)
        self.subsets = {
            "train": FixedSubset(train, args.max_eval, args.seed, "train"),
            "test": FixedSubset(self.datasets.test, args.max_eval, args.seed, "test"),
            "valid": FixedSubset(self.datasets.valid, None, args.seed, "valid"),
            "gradients": FixedSubset(train, args.grad_bs, args.seed, "gradients"),
            "active-units": FixedSubset(train, args.npoints_au_analysis, args.seed, "active-units"),
        }

        self.state = TrainingState()
        self.monitor = StepMonitor(self.device)
        saved = checkpoints.load_checkpoint(run_dir, map_location=self.device) if resume else None
        if saved is not None:
            self._restore(saved)
        self.recorder = RunRecorder(run_dir, resume_step=self.state.step if saved is not None else None)
        self.state.chunk_rows, self.chunk_choice = self._chunk_rows()
        self.probability_mass = self._likelihood_is_probability_mass()
        self.analysis_context = AnalysisContext(args, self.model, self.estimator, self.subsets, self.device,
                                                self.state.chunk_rows)
        self.stop_requests = StopRequests(logger)
        # --grad_variance_mode moving: per-step variances (not checkpointed: a resumed run restarts them)
        self.moving_variance = moving_variance_tracker(args, self.model, self.estimator, self.datasets.x_shape)
        # --compile: the whole step as one graph where the optimisers are Adam, no analysis reads .grad and
        # the estimator has no objective of its own (its backward pass would be skipped)
        self.whole_step = (compiled_training_step(self._gradients, self.optimizers, self.device, self._separate_steps,
                                                  summary)
                           if compile and self.moving_variance is None and self.estimator.own_objective is None
                           and all(p.requires_grad for p in self.trained_parameters) else None)
        self._started = time.time()
        self._last_checkpoint = time.monotonic()
        self.progress: Optional[Progress] = None

    def run(self) -> int:
        """Train and validate in the run folder's life cycle (``ovis.run_folder.run_work``: signal
        handlers, outcome marker); returns the exit code."""
        try:
            return run_work(self.run_dir, self._train_and_validate, self.logger, self.stop_requests,
                            self._failure_note)
        finally:
            if self.progress is not None:
                self.progress.close()
            self.recorder.close()

    def _train_and_validate(self) -> None:
        for line in start_lines(self.run_dir, self):
            self.logger.info("%s", line)
        self._train()
        self._final_validation()
        self.logger.info("Success: best test L_k %.4f at step %d", self.state.best_value, self.state.best_step)

    def _failure_note(self) -> str:
        checkpoint_step = self._checkpoint_step()
        kept = (f"the checkpoint of step {checkpoint_step} is kept" if checkpoint_step is not None
                else "no checkpoint was written")
        return f"estimator {self.estimator_id}; {kept}"

    @property
    def total_steps(self) -> int:
        return self.epochs * len(self.batches)

    def runtime(self, step: int) -> Dict[str, float]:
        """Call-time estimator options at ``step`` (alpha from its schedule)."""
        options = {"alpha": self.alpha_schedule(step), "beta": self.args.beta, "tau": self.args.tau}
        if self.args.freebits is not None:
            options["freebits"] = self.args.freebits
        return options

    def _train(self) -> None:
        state, args = self.state, self.args
        self.progress = Progress(self.total_steps, state.step, args.silent, self.logger)
        while True:
            finished = state.epoch >= self.epochs or self._budget_spent()
            due = (state.batch == 0 and state.epoch % args.eval_freq == 0) or finished
            if due and state.last_eval_step != state.step:
                self._evaluate()
                self._save_checkpoint()
            if finished:
                return
            self._stop_if_requested()
            self.lr_schedule.apply(self.optimizers, self.base_lrs, state.epoch)
            self.model.train()
            self.estimator.train()
            for x in self.batches.epoch(state.epoch, start=state.batch):
                wall, cpu = time.perf_counter(), time.process_time()
                try:
                    self._train_step(x.to(self.device, non_blocking=True))
                except Exception:
                    # NaN parameters break sampling: report the NaN loss or parameters that caused it
                    self._sync()
                    check_parameters(state.step, self.model)
                    raise
                if self.monitor.full:
                    self._sync()  # on CUDA the wait for the queued steps counts as their time
                state.training_time += time.perf_counter() - wall
                state.training_cpu_time += time.process_time() - cpu
                if self.stop_requests.pending:
                    self._sync()
                    self._save_checkpoint()
                    self._stop_if_requested()
                if time.monotonic() - self._last_checkpoint > args.checkpoint_interval:
                    self._sync()
                    self._save_checkpoint()
                if self._budget_spent():
                    break
            else:
                state.epoch += 1
                state.batch = 0

    def _budget_spent(self) -> bool:
        """Whether ``--time_budget`` is spent: process CPU time of the training steps on a CPU (the
        time a one-thread run would take on an idle machine), wall-clock on CUDA."""
        budget = getattr(self.args, "time_budget", None)
        if budget is None:
            return False
        spent = self.state.training_cpu_time if self.device.type == "cpu" else self.state.training_time
        return spent >= budget

    def _gradient_pass(self, x: Tensor, estimator_call: Optional[Callable] = None, **runtime):
        """The batch-mean surrogate loss and the diagnostics; the gradients accumulated in ``.grad``
        by the estimator's backward pass (``GradientEstimator.backward``). ``estimator_call``: the
        estimator's compiled call, whose backward pass runs here, eagerly (estimators with an
        objective of their own do not compile)."""
        if estimator_call is None:
            loss, diagnostics, _ = self.estimator(self.model, x, backward=True, return_diagnostics=True, **runtime)
            return loss.detach().mean(), diagnostics
        loss, diagnostics, _ = estimator_call(self.model, x, backward=False, return_diagnostics=True, **runtime)
        loss = loss.mean()
        loss.backward()
        return loss.detach(), diagnostics

    def _gradients(self, x: Tensor, **runtime):
        """The batch-mean surrogate loss, the diagnostics and the gradients of ``trained_parameters``."""
        loss, diagnostics, _ = self.estimator(self.model, x, backward=False, return_diagnostics=True, **runtime)
        loss = loss.mean()
        return loss.detach(), diagnostics, torch.autograd.grad(loss, self.trained_parameters, allow_unused=True)

    def _separate_steps(self, x: Tensor, **runtime):
        """The gradient pass, then each optimiser's step."""
        loss, diagnostics = self.gradient_pass(x, **runtime)
        if self.moving_variance is not None:  # on its own random stream: the trajectory does not change
            with seeded_rng(derive_seed(self.args.seed, "moving-variance", self.state.step), self.device):
                diagnostics = {**diagnostics, **self.moving_variance.step(self.model, x, **runtime)}
        for optimizer, step in zip(self.optimizers, self.optimizer_steps):
            step()
            optimizer.zero_grad(set_to_none=True)
        return loss, diagnostics

    def _train_step(self, x: Tensor) -> None:
        state = self.state
        runtime = self.runtime(state.step)
        row, keys = self.whole_step(x, **runtime) if self.whole_step else summary(*self._separate_steps(x, **runtime))
        state.step += 1
        state.batch += 1
        self.monitor.store(state.step, row, keys)

    def _sync(self) -> None:
        """Read the pending training losses (raises on NaN) and refresh the progress bar."""
        means = self.monitor.sync()
        if self.progress is not None and means is not None:
            self.progress.update(self.state.step, self.state.epoch, means.get(StepMonitor.BOUND, math.nan),
                                 self.runtime(self.state.step)["alpha"])

    def _evaluate(self) -> None:
        self._sync()
        self.progress.describe("evaluating")
        args, state = self.args, self.state
        common = {f"parameters/{key}": value for key, value in self.runtime(state.step).items()}
        common.update({"info/epoch": float(state.epoch), "info/elapsed-time": self._elapsed(),
                       "info/training-time": state.training_time, "info/training-cpu-time": state.training_cpu_time,
                       "info/model-evaluations": float(self.estimator.model_evaluations())})
        with seeded_rng(derive_seed(args.seed, "evaluation", state.step), self.device):
            self.model.eval()
            self.estimator.eval()
            train, test = run_analyses(self.analysis_context, self.runtime(state.step)), {}
            ess = self._bound("train", args.iw, limit=ESS_POINTS)["loss/ess"]
            train.update(self._bound("train", args.iw_test))
            train["loss/ess"] = ess
            test.update(self._bound("test", args.iw_test))
            test["loss/overfitting"] = train["loss/L_k"] - test["loss/L_k"]
            if self.image_data:
                self._save_images()
        online = self.monitor.pop_averages()
        train.update(common)
        test.update(common)
        self.recorder.log_metrics(state.step, "train", train, epoch=state.epoch)
        self.recorder.log_metrics(state.step, "test", test, epoch=state.epoch)
        if online:
            self.recorder.log_metrics(state.step, "online", online, epoch=state.epoch)
        for split, values in (("online", online), ("train", train), ("test", test)):
            check_evaluation(state.step, split, values, self.probability_mass and split != "online")
        if math.isfinite(test["loss/L_k"]) and test["loss/L_k"] > state.best_value:
            state.best_value, state.best_step, state.best_epoch = test["loss/L_k"], state.step, state.epoch
            checkpoints.save_model(self.run_dir, self.model)
        state.last_eval_step = state.step
        self.progress.describe("")
        speed = state.step / max(self._elapsed(), 1e-9)
        self.logger.info("%s", evaluation_line(state, self.total_steps, train, test, speed))

    def _bound(self, split: str, iw: int, limit: Optional[int] = None, batch_size: Optional[int] = None) -> Dict:
        batches = self.subsets[split].batches(batch_size or self.args.test_bs, self.device, limit=limit)
        return evaluate_bound(self.evaluator(iw), self.model, batches)

    def evaluator(self, iw: int) -> Callable:
        """The run's L_K evaluator of ``iw`` particles, in chunks of the run's ``state.chunk_rows``."""
        if iw not in self.evaluators:
            self.evaluators[iw] = self.make_evaluator(iw, self.state.chunk_rows, self.evaluation_compiler)
        return self.evaluators[iw]

    def _save_images(self) -> None:
        """Prior samples and test reconstructions (means of p(x|z)) as PNG grids and TensorBoard images."""
        x = next(self.subsets["test"].batches(RECONSTRUCTIONS, self.device))  # [n, *x_shape]
        for name, grid in model_image_grids(self.model, x, self.datasets.x_shape).items():
            save_png(grid, os.path.join(self.run_dir, f"{name}.png"))
            self.recorder.log_image(self.state.step, "test", name, grid)

    def _final_validation(self) -> None:
        """L_K with ``iw_valid`` particles of the best model on the whole validation split,
        logged to ``valid`` at the step of the best model."""
        state, args = self.state, self.args
        if not checkpoints.load_model(self.run_dir, self.model, map_location=self.device):
            self.logger.warning("no best model was saved (non-finite test bounds); validating the last model")
        with seeded_rng(derive_seed(args.seed, "validation"), self.device):
            self.model.eval()
            values = self._bound("valid", args.iw_valid, batch_size=args.valid_bs)
            if self.image_data:
                self._save_images()
        step = state.best_step if state.best_step >= 0 else state.step
        epoch = state.best_epoch if state.best_epoch >= 0 else state.epoch
        values.update({"info/epoch": float(epoch), "info/elapsed-time": self._elapsed()})
        self.recorder.log_metrics(step, "valid", values, epoch=epoch)
        check_evaluation(step, "valid", values, self.probability_mass)
        self.logger.info("valid (best model of step %d, iw=%d, %d points): L_k %.4f", step, args.iw_valid,
                         len(self.subsets["valid"]), values["loss/L_k"])

    def _stop_if_requested(self) -> None:
        """Raise ``AbortRequested`` after a signal (called once the step's checkpoint is saved)."""
        step, epoch = self.state.step, self.state.epoch
        self.stop_requests.check(f"at step {step} (epoch {epoch}); the checkpoint of this step is saved")

    def _save_checkpoint(self) -> None:
        self.state.elapsed = self._elapsed()
        with self.stop_requests.writing():
            self._write_checkpoint()
        self._started = time.time()
        self._last_checkpoint = time.monotonic()

    def _write_checkpoint(self) -> None:
        checkpoints.save_checkpoint(self.run_dir, {
            "state": asdict(self.state),
            "model": self.model.state_dict(),
            "estimator": self.estimator.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "monitor": self.monitor.state_dict(),
            "rng": checkpoints.rng_state(self.device),
        })

    def _restore(self, saved: Dict) -> None:
        if len(saved["optimizers"]) != len(self.optimizers):
            raise ValueError(f"the checkpoint has {len(saved['optimizers'])} optimisers, this run "
                             f"{len(self.optimizers)}: it belongs to different options")
        self.model.load_state_dict(saved["model"])
        self.estimator.load_state_dict(saved["estimator"])
        for optimizer, state in zip(self.optimizers, saved["optimizers"]):
            load_optimizer_state(optimizer, state)
        self.state = TrainingState(**saved["state"])
        self.monitor.load_state_dict(saved["monitor"])
        checkpoints.set_rng_state(saved["rng"], self.device)

    def _chunk_rows(self) -> Tuple[int, str]:
        """``chunk_rows`` of this run (measured on one test point in eval mode, on a forked RNG)."""
        training = self.model.training
        with seeded_rng(derive_seed(self.args.seed, "chunk-rows"), self.device):
            self.model.eval()
            x = next(self.subsets["test"].batches(1, self.device))  # [1, *x_shape]
            chosen = chunk_rows(self.args, self.model, x, self.state.chunk_rows)
        self.model.train(training)
        return chosen

    def _likelihood_is_probability_mass(self) -> bool:
        """Whether p(x|z) is a probability mass (binary or discrete data: L_K <= 0), from one
        forward pass on two test points, in eval mode on a forked RNG (the run is unchanged)."""
        training = self.model.training
        with seeded_rng(derive_seed(self.args.seed, "likelihood-kind"), self.device):
            self.model.eval()
            x = next(self.subsets["test"].batches(2, self.device))  # [2, *x_shape]
            mass = likelihood_is_probability_mass(self.model, x)
        self.model.train(training)
        return mass

    def _checkpoint_step(self) -> Optional[int]:
        saved = checkpoints.load_checkpoint(self.run_dir, map_location="cpu")
        return None if saved is None else saved["state"]["step"]

    def _elapsed(self) -> float:
        return self.state.elapsed + time.time() - self._started
