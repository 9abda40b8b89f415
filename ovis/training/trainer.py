"""The training loop of ``run.py``: train, evaluate, analyse, log, checkpoint, resume.

One ``Trainer`` runs one run folder (DESIGN 4). The loop, per epoch ``e``:

1. at the start of epochs ``e % eval_freq == 0`` and after the last epoch: evaluate (active
   units, gradient statistics, L_K on fixed train / test subsets, images), keep the best model
   by test L_K, save a checkpoint;
2. set the learning rate of the epoch, then one optimiser step per batch, alpha following its
   warm-up schedule. Training losses and diagnostics stay on the device and are read every
   ``SYNC_EVERY`` steps (progress bar, NaN check); their averages since the previous
   evaluation are logged under the ``online`` split (``online:loss/L_k``, ``online:control_variate/mse``).

After training the best model is evaluated on the whole validation split (``valid:loss/L_k``).

Randomness: model initialisation and particles draw from the global torch RNG, whose state is
checkpointed. Data order and dynamic binarisation use generators derived from (seed,
position) (``ovis.training.data``), evaluations run on a forked RNG seeded by (seed, step), so
switching analyses on or off never changes the training trajectory, and a resumed run
repeats an unbroken one exactly (bit-for-bit with ``--deterministic`` on GPUs).
"""
import math
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ovis.analysis.active_units import active_units
from ovis.analysis.grad_variance import GradientVarianceTracker, parse_tracked_ids
from ovis.analysis.gradients import gradient_statistics
from ovis.records import ABORTED, FAILED, SUCCESS, write_outcome
from ovis.training import checkpoint as checkpoints
from ovis.training.data import FixedSubset, TrainingBatches, derive_seed, epoch_count
from ovis.training.evaluation import evaluate_bound
from ovis.training.images import image_grid, interleave_rows, save_png
from ovis.training.optim import load_optimizer_state, make_optimizer
from ovis.training.recorder import RunRecorder
from ovis.training.schedules import AlphaSchedule, LearningRateSchedule

SYNC_EVERY = 50  # training steps between reads of the losses kept on the device
ESS_POINTS = 1000  # training points of the ESS at the training K (SPEC 5.5 step 3)
PRIOR_SAMPLES = 100
RECONSTRUCTIONS = 50
# Bytes of gradient samples held at once by the gradient analysis: wide vmap batches on a GPU,
# little memory on a CPU, where samples are drawn one at a time anyway (the samples of an SBN's
# inference network then take two passes).
GPU_SAMPLE_MEMORY, CPU_SAMPLE_MEMORY = 512 * 2 ** 20, 2 * 2 ** 20
EXIT_SUCCESS, EXIT_FAILED, EXIT_ABORTED = 0, 1, 130



class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite."""


class AbortRequested(Exception):
    """SIGINT or SIGTERM: the run stopped after a step and saved a checkpoint."""


@dataclass
class RunComponents:
    """What a run trains and evaluates with (built from the options by ``ovis.training.main``).

    ``evaluator(iw)`` returns a plain L_K evaluator (alpha = 0, beta = 1) called as
    ``evaluator(model, x)``; ``datasets`` has ``train``, ``valid``, ``test`` and ``x_shape``."""
    datasets: object
    model: nn.Module
    estimator: nn.Module
    evaluator: Callable[[int], Callable]
    device: torch.device
    estimator_id: str = ""
    chunk_rows: Optional[int] = None  # rows (data points x MC samples) per forward pass of the active units


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


class StepMonitor:
    """Diagnostics of the recent training steps, kept on the device and read every ``window`` steps.

    Each step stores the batch means of the surrogate loss (``loss/surrogate``) and of every
    training diagnostic (one row each). Reading them checks that the loss and the bound are
    finite (the error names the first bad step) and adds them to the online averages logged at
    the next evaluation under the ``online`` split (``online:loss/L_k``, ``online:control_variate/mse``:
    the training estimator's own values, at the training K and the scheduled alpha)."""

    LOSS = "loss/surrogate"
    BOUND = "loss/L_k"

    def __init__(self, device: torch.device, window: int = SYNC_EVERY):
        self.device, self.window = device, window
        self.keys: Optional[List[str]] = None
        self.values: Optional[Tensor] = None  # [keys, window]
        self.count = 0
        self.first_step = 0
        self.sums: Dict[str, float] = {}
        self.steps = 0
        self.last_finite: Optional[Dict] = None

    @property
    def full(self) -> bool:
        return self.count == self.window

    def record(self, step: int, loss: Tensor, diagnostics: Dict[str, Tensor]) -> None:
        """``step``: the global step of this loss; ``loss``: the batch-mean surrogate loss."""
        if self.keys is None:
            self.keys = [self.LOSS] + sorted(diagnostics)
            self.values = torch.zeros(len(self.keys), self.window, device=self.device)
        if self.count == 0:
            self.first_step = step
        means = [loss.detach()] + [diagnostics[key].detach().float().mean() for key in self.keys[1:]]
        self.values[:, self.count] = torch.stack(means)
        self.count += 1

    def sync(self) -> Optional[Dict[str, float]]:
        """Read the pending values; returns their means by key, or None if there were none."""
        if self.count == 0:
            return None
        rows = dict(zip(self.keys, self.values[:, :self.count].tolist()))
        losses, bounds = rows[self.LOSS], rows.get(self.BOUND, rows[self.LOSS])
        for i, (loss, bound) in enumerate(zip(losses, bounds)):
            if not (math.isfinite(loss) and math.isfinite(bound)):
                self.count = 0
                raise NonFiniteLossError(self._message(self.first_step + i, loss, bound))
            self.last_finite = {"step": self.first_step + i, "loss": loss, "L_k": bound}
        for key, values in rows.items():
            self.sums[key] = self.sums.get(key, 0.0) + sum(values)
        self.steps += self.count
        self.count = 0
        return {key: sum(values) / len(values) for key, values in rows.items()}

    def _message(self, step: int, loss: float, bound: float) -> str:
        last = self.last_finite
        previous = (f"last finite values at step {last['step']}: loss {last['loss']:.6g}, L_k {last['L_k']:.6g}"
                    if last else "no finite value was recorded before")
        return f"non-finite training loss at step {step} (loss {loss}, L_k {bound}); {previous}"

    def pop_averages(self) -> Dict[str, float]:
        """Means over the steps since the last call, by diagnostic key."""
        averages = {key: total / self.steps for key, total in self.sums.items()} if self.steps else {}
        self.sums, self.steps = {}, 0
        return averages

    def state_dict(self) -> Dict:
        return {"sums": dict(self.sums), "steps": self.steps, "last_finite": self.last_finite}

    def load_state_dict(self, state: Dict) -> None:
        self.sums, self.steps, self.last_finite = dict(state["sums"]), state["steps"], state["last_finite"]


@contextmanager
def seeded_rng(seed: int, device: torch.device):
    """Run a block on the global RNGs seeded with ``seed``, then restore their previous state."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def distribution_mean(distribution) -> Tensor:
    try:
        return distribution.mean
    except NotImplementedError:
        return distribution.sample()


class Trainer:
    """Trains one run. ``run()`` returns the exit code (0 success, 1 failed, 130 aborted)."""

    def __init__(self, args, components: RunComponents, run_dir: str, logger, resume: bool = False):
        self.args, self.run_dir, self.logger = args, run_dir, logger
        self.device = components.device
        self.datasets = components.datasets
        self.model = components.model.to(self.device)
        self.estimator = components.estimator.to(self.device)
        self.evaluator, self.chunk_rows = components.evaluator, components.chunk_rows
        self.estimator_id = components.estimator_id or args.estimator
        self.image_data = len(self.datasets.x_shape) == 3

        self.optimizers = [make_optimizer(args.optimizer, self.model.parameters(), lr=args.lr)]
        estimator_parameters = [p for p in self.estimator.parameters() if p.requires_grad]
        if estimator_parameters:
            self.optimizers.append(make_optimizer("adam", estimator_parameters, lr=args.baseline_lr))
        self.base_lrs = [[group["lr"] for group in optimizer.param_groups] for optimizer in self.optimizers]
        self.grad_variances = None  # --track_grad_variances (ovis/analysis/grad_variance.py)
        if getattr(args, "track_grad_variances", ""):
            self.grad_variances = GradientVarianceTracker(parse_tracked_ids(args.track_grad_variances, args.mc, args.iw), args.mc,
                                                          args.iw, self.datasets.x_shape,
                                                          training={self.estimator_id: self.estimator})

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
        self.stop_signal: Optional[int] = None
        self._started = time.time()
        self._last_checkpoint = time.monotonic()
        self._progress = None

    # ------------------------------------------------------------------ public
    def run(self) -> int:
        """Train, validate, write the outcome marker; returns the exit code."""
        handlers = self._install_signal_handlers()
        try:
            self._log_start()
            self._train()
            self._final_validation()
            write_outcome(self.run_dir, SUCCESS)
            self.logger.info("Success: best test L_k %.4f at step %d", self.state.best_value, self.state.best_step)
            return EXIT_SUCCESS
        except (AbortRequested, KeyboardInterrupt) as stop:
            message = str(stop) or "interrupted; the last checkpoint is kept"
            write_outcome(self.run_dir, ABORTED, message)
            self.logger.warning("Aborted: %s", message)
            return EXIT_ABORTED
        except Exception as error:
            checkpoint_step = self._checkpoint_step()
            kept = (f"the checkpoint of step {checkpoint_step} is kept" if checkpoint_step is not None
                    else "no checkpoint was written")
            message = f"{type(error).__name__}: {error} [estimator {self.estimator_id}; {kept}]"
            write_outcome(self.run_dir, FAILED, message + "\n" + traceback.format_exc())
            self.logger.error("Failed. %s\n%s", message, traceback.format_exc())
            return EXIT_FAILED
        finally:
            self._close_progress()
            self.recorder.close()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    @property
    def total_steps(self) -> int:
        return self.epochs * len(self.batches)

    def runtime(self, step: int) -> Dict[str, float]:
        """Call-time estimator options at ``step`` (alpha from its schedule)."""
        options = {"alpha": self.alpha_schedule(step), "beta": self.args.beta, "tau": self.args.tau}
        if self.args.freebits is not None:
            options["freebits"] = self.args.freebits
        return options

    # ------------------------------------------------------------------ training
    def _train(self) -> None:
        state, args = self.state, self.args
        self._open_progress()
        while True:
            due = state.epoch % args.eval_freq == 0 or state.epoch >= self.epochs
            if state.batch == 0 and due and state.last_eval_step != state.step:
                self._evaluate()
                self._save_checkpoint()
            if state.epoch >= self.epochs:
                return
            self._check_stop()
            self.lr_schedule.apply(self.optimizers, self.base_lrs, state.epoch)
            self.model.train()
            self.estimator.train()
            for x in self.batches.epoch(state.epoch, start=state.batch):
                try:
                    self._train_step(x.to(self.device, non_blocking=True))
                except Exception:
                    self._sync()  # NaN parameters break sampling: report the NaN loss that caused it
                    raise
                if self.monitor.full:
                    self._sync()
                if self.stop_signal is not None:
                    self._sync()
                    self._save_checkpoint()
                    self._check_stop()
                if time.monotonic() - self._last_checkpoint > args.checkpoint_interval:
                    self._sync()
                    self._save_checkpoint()
            state.epoch += 1
            state.batch = 0

    def _train_step(self, x: Tensor) -> None:
        state = self.state
        loss, diagnostics, _ = self.estimator(self.model, x, backward=False, return_diagnostics=True,
                                              **self.runtime(state.step))
        loss = loss.mean()
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batch += 1
        self.monitor.record(state.step, loss, diagnostics)

    def _sync(self) -> None:
        """Read the pending training losses (raises on NaN) and refresh the progress bar."""
        means = self.monitor.sync()
        if self._progress is not None and means is not None:
            self._progress.n = self.state.step
            bound = means.get(StepMonitor.BOUND, math.nan)
            self._progress.set_postfix(L_k=f"{bound:.3f}", alpha=f"{self.runtime(self.state.step)['alpha']:.3g}",
                                       epoch=self.state.epoch, refresh=False)
            self._progress.refresh()

    def _check_stop(self) -> None:
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            raise AbortRequested(f"{name} received: stopped at step {self.state.step} (epoch {self.state.epoch}); "
                                 f"the checkpoint of this step is saved, --resume continues the run")

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self) -> None:
        self._sync()
        args, state = self.args, self.state
        common = {f"parameters/{key}": value for key, value in self.runtime(state.step).items()}
        common.update({"info/epoch": float(state.epoch), "info/elapsed-time": self._elapsed()})
        with seeded_rng(derive_seed(args.seed, "evaluation", state.step), self.device):
            self.model.eval()
            self.estimator.eval()
            train, test = self._analyses(), {}
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
        if math.isfinite(test["loss/L_k"]) and test["loss/L_k"] > state.best_value:
            state.best_value, state.best_step, state.best_epoch = test["loss/L_k"], state.step, state.epoch
            checkpoints.save_model(self.run_dir, self.model)
        state.last_eval_step = state.step
        self._log_evaluation(train, test)

    def _analyses(self) -> Dict[str, float]:
        """Active units and gradient statistics (``train:active_units/*``, ``train:grads/*``, ``train:snr/*``)."""
        args, values = self.args, {}
        if args.mc_au_analysis > 0:
            batches = self.subsets["active-units"].batches(args.test_bs, self.device)
            rows = {"max_rows": self.chunk_rows} if self.chunk_rows else {}
            values.update(active_units(self.model, batches, args.mc_au_analysis, args.npoints_au_analysis,
                                       threshold=args.au_threshold, **rows).summary)
        if args.grad_samples > 0:
            x = torch.cat(list(self.subsets["gradients"].batches(args.grad_bs, self.device)))
            # vmap over many samples at once pays off on GPUs; on CPUs a loop is as fast and leaner
            cuda = self.device.type == "cuda"
            statistics = gradient_statistics(self.estimator, self.model, x, args.grad_samples, args.grad_key,
                                             epsilon=args.grad_epsilon, vectorize=cuda,
                                             sample_memory=GPU_SAMPLE_MEMORY if cuda else CPU_SAMPLE_MEMORY,
                                             **self.runtime(self.state.step))
            values.update(statistics.summary)
            if self.grad_variances is not None:
                values.update(self.grad_variances(self.model, x, args.grad_samples, args.grad_key,
                                                  **self.runtime(self.state.step)))
        return values

    def _bound(self, split: str, iw: int, limit: Optional[int] = None, batch_size: Optional[int] = None) -> Dict:
        batches = self.subsets[split].batches(batch_size or self.args.test_bs, self.device, limit=limit)
        return evaluate_bound(self.evaluator(iw), self.model, batches)

    def _save_images(self) -> None:
        """Prior samples and test reconstructions (means of p(x|z)) as PNG grids and TensorBoard images."""
        x_shape = tuple(self.datasets.x_shape)
        with torch.no_grad():
            samples = distribution_mean(self.model.sample_from_prior(PRIOR_SAMPLES)["px"])
            grids = {"prior-samples": image_grid(samples.reshape(-1, *x_shape))}
            x = next(self.subsets["test"].batches(RECONSTRUCTIONS, self.device))  # [n, *x_shape]
            reconstructions = distribution_mean(self.model(x)["px"]).reshape(-1, *x_shape)
            grids["reconstructions"] = image_grid(interleave_rows(x, reconstructions))
        for name, grid in grids.items():
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
        self.logger.info("valid (best model of step %d, iw=%d, %d points): L_k %.4f", step, args.iw_valid,
                         len(self.subsets["valid"]), values["loss/L_k"])

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self) -> None:
        self.state.elapsed = self._elapsed()
        checkpoints.save_checkpoint(self.run_dir, {
            "state": asdict(self.state),
            "model": self.model.state_dict(),
            "estimator": self.estimator.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "monitor": self.monitor.state_dict(),
            "rng": checkpoints.rng_state(self.device),
        })
        self._started = time.time()
        self._last_checkpoint = time.monotonic()

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

    def _checkpoint_step(self) -> Optional[int]:
        saved = checkpoints.load_checkpoint(self.run_dir, map_location="cpu")
        return None if saved is None else saved["state"]["step"]

    def _elapsed(self) -> float:
        return self.state.elapsed + time.time() - self._started

    # ------------------------------------------------------------------ signals, progress, log
    def _install_signal_handlers(self) -> Dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:  # a second signal stops at once, keeping the last checkpoint
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice: stopped without a new checkpoint")
        self.stop_signal = signum
        self.logger.warning("%s received: stopping after the current step", signal.Signals(signum).name)

    def _open_progress(self) -> None:
        if self.args.silent or not sys.stderr.isatty():
            return
        from tqdm import tqdm
        self._progress = tqdm(total=self.total_steps, initial=self.state.step, unit="step", dynamic_ncols=True,
                              file=sys.stderr, smoothing=0.1)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _log_start(self) -> None:
        args, state = self.args, self.state
        parameters = sum(p.numel() for p in self.model.parameters())
        verb = f"resuming at step {state.step} (epoch {state.epoch})" if state.step > 0 else "starting"
        self.logger.info("%s %s: %s", verb, self.run_dir, " ".join(sys.argv[1:]) if sys.argv else "")
        self.logger.info("model %s (%d parameters), estimator %s, mc=%d, iw=%d, device %s; %d epochs x %d steps "
                         "= %d steps; %s", type(self.model).__name__, parameters, self.estimator_id, args.mc,
                         args.iw, self.device, self.epochs, len(self.batches), self.total_steps, self.alpha_schedule)

    def _log_evaluation(self, train: Dict, test: Dict) -> None:
        state = self.state
        speed = state.step / max(self._elapsed(), 1e-9)
        line = (f"step {state.step}/{self.total_steps} epoch {state.epoch} | train L_k {train['loss/L_k']:.3f} "
                f"kl_q_p {train.get('loss/kl_q_p', math.nan):.3f} ess {train.get('loss/ess', math.nan):.2f} | "
                f"test L_k {test['loss/L_k']:.3f} (best {state.best_value:.3f} at step {state.best_step})")
        if "grads/snr" in train:
            line += (f" | grads snr {train['grads/snr']:.3g} var {train['grads/variance']:.3g} "
                     f"magnitude {train['grads/magnitude']:.3g} dsnr {train['grads/dsnr']:.3g}")
        if "active_units/au" in train:
            line += f" | active units {train['active_units/au']:.0f}/{train['active_units/n']:.0f}"
        self.logger.info("%s | %.1f steps/s", line, speed)
