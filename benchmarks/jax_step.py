"""ovis's training step against a hand-written JAX step of the same model, surrogate and optimiser.

    OVIS_DATA=../shared/data python benchmarks/jax_step.py [--iw 5,50] [--repeats 5] [--core 1] [--compile]

The JAX step (``jax_step``, below; JAX is not a dependency of ovis: ``pip install "jax[cpu]"``,
without it this benchmark prints a message and exits) is the paper's 3 x 200 linear sigmoid
belief network on a batch of 24 binarized MNIST images, the OVIS~ surrogate with gamma = 1
(``ovis-gamma1``), the first inference layer once per data point, and Adam with torch's defaults,
all in one ``jax.jit`` program on XLA's CPU backend with one thread.

ovis's step is ``run.py``'s: its set-up, ``Trainer._train_step`` (estimator, backward pass,
``make_optimizer``'s Adam, the diagnostics kept on the device), ``RUN_ENVIRONMENT``,
consecutive steps as the JAX step's are timed (``ovis.training.efficiency.consecutive_step_times``).
``--compile``: with ``run.py --compile``.

Each measurement is a fresh process pinned to one core (``--core``, ``os.sched_setaffinity``, as
``taskset -c``), the two steps' processes alternating (their order swapped at every repeat), so
that load changes on a shared machine hit both alike. Per process: the median of the timed steps'
process CPU time (one thread: the wall-clock time without the waits for the core) and wall-clock
time; printed: the medians over the repeats and the median over the repeats of the ratio
ovis / JAX of the two processes of a repeat.

``--check_gradient``: the JAX surrogate's gradient against ovis's (``ovis-gamma1`` on the same
parameters, data and uniform noise), printed as the largest relative difference per parameter.
"""
import json
import math
import os
import statistics
import subprocess
import sys
from typing import Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# XLA's CPU backend on one thread (set before JAX is imported)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list  # noqa: E402

# run.py's parameter names of the SBN's linear maps, in the order the JAX step uses them
INFERENCE = [f"inference_network.{level}.net" for level in range(3)]  # q(z2 | x), q(z1 | z2), q(z0 | z1)
GENERATIVE = ["generative_model.conditionals.0.net", "generative_model.conditionals.1.net",
              "generative_model.observation"]  # p(z1 | z0), p(z2 | z1), p(x | z2)
PRIOR = "generative_model.prior_params"
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)  # torch.optim.Adam's defaults, run.py's lr


def jax_available() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def workload(iw: int, steps: int, untimed_steps: int, compile: bool = False, data_root=None):
    from ovis.training.efficiency import Workload
    return Workload(model="sbm", estimator="ovis-gamma1", iw=iw, batch_size=24, device="cpu", threads=1,
                    steps=steps, untimed_steps=untimed_steps, compile=compile, data_root=data_root)


def jax_surrogate(iw: int, x_mean):
    """``loss(params, x [bs, 784], uniforms) -> scalar``: the batch mean of ovis-gamma1's surrogate;
    ``uniforms``: three ``[bs * iw, 200]`` arrays, bottom latent layer first (torch's draw order)."""
    import jax
    import jax.numpy as jnp
    x_mean = jnp.asarray(x_mean)

    def log_bernoulli(logits, z):  # [rows, N] -> [rows]
        return (z * logits - jax.nn.softplus(logits)).sum(-1)

    def linear(params, name, h):
        return h @ params[name + ".weight"].T + params[name + ".bias"]

    def loss(params, x, uniforms):
        bs = x.shape[0]
        x_centred = (x - x_mean + 1) * 0.5
        logits = jnp.repeat(linear(params, INFERENCE[0], x_centred), iw, axis=0)  # [bs * iw, 200]: once per point
        log_q, zs = 0.0, []
        for level in range(3):  # q(z2 | x), q(z1 | z2), q(z0 | z1)
            if level > 0:
                logits = linear(params, INFERENCE[level], 2 * zs[-1] - 1)
            z = jax.lax.stop_gradient((uniforms[level] < jax.nn.sigmoid(logits)).astype(logits.dtype))
            log_q = log_q + log_bernoulli(logits, z)  # [rows]
            zs.append(z)
        z2, z1, z0 = zs
        log_p = log_bernoulli(jnp.broadcast_to(params[PRIOR][:, 0], z0.shape), z0)
        log_p += log_bernoulli(linear(params, GENERATIVE[0], 2 * z0 - 1), z1)
        log_p += log_bernoulli(linear(params, GENERATIVE[1], 2 * z1 - 1), z2)
        x_rows = jnp.repeat(x, iw, axis=0)  # [rows, 784]
        log_p += log_bernoulli(linear(params, GENERATIVE[2], 2 * z2 - 1), x_rows)
        log_weights = (log_p - jax.lax.stop_gradient(log_q)).reshape(bs, iw)  # [bs, iw]
        theta_bound = jax.nn.logsumexp(log_weights, -1) - math.log(iw)  # [bs]
        weights = jax.nn.softmax(jax.lax.stop_gradient(log_weights), -1)  # [bs, iw]
        eps = jnp.finfo(weights.dtype).eps
        prefactor = math.log(1 - 1 / iw) - jnp.log(jnp.maximum(1 - weights, eps))  # d_k - c_k, gamma = 1
        phi_loss = -(prefactor * log_q.reshape(bs, iw)).sum(-1)  # [bs]
        return (phi_loss - theta_bound).mean()

    return loss


def jax_step(iw: int, x_mean):
    """``step(params, adam_state, x [bs, 784], key) -> (params, adam_state, loss)``, jitted."""
    import jax
    import jax.numpy as jnp
    loss = jax_surrogate(iw, x_mean)

    def step(params, state, x, key):
        keys = jax.random.split(key, 3)
        rows = x.shape[0] * iw
        uniforms = [jax.random.uniform(k, (rows, 200)) for k in keys]
        value, grads = jax.value_and_grad(loss)(params, x, uniforms)
        count = state["count"] + 1
        m = jax.tree.map(lambda m, g: ADAM["beta1"] * m + (1 - ADAM["beta1"]) * g, state["m"], grads)
        v = jax.tree.map(lambda v, g: ADAM["beta2"] * v + (1 - ADAM["beta2"]) * g * g, state["v"], grads)
        scale = ADAM["lr"] * jnp.sqrt(1 - ADAM["beta2"] ** count) / (1 - ADAM["beta1"] ** count)
        eps = ADAM["eps"] * jnp.sqrt(1 - ADAM["beta2"] ** count)
        params = jax.tree.map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, m, v)
        return params, {"m": m, "v": v, "count": count}, value

    return jax.jit(step, donate_argnums=(0, 1))


def model_and_batches(iw: int, count: int, data_root=None):
    """run.py's SBN (initial parameters) and ``count`` training batches ``[24, 784]``, as numpy."""
    import tempfile
    from ovis.training.efficiency import _batches, _build
    with tempfile.TemporaryDirectory() as root:
        trainer, components = _build(workload(iw, count, 0, data_root=data_root), root)
        batches = _batches(components.datasets.train, workload(iw, count, 0), count, components.device)
        trainer.recorder.close()
    params = {name: p.detach().numpy().copy() for name, p in trainer.model.named_parameters()}
    return trainer.model, params, [x.flatten(1).numpy() for x in batches]


def measure_jax(iw: int, steps: int, untimed_steps: int, data_root=None) -> Dict:
    import time
    import jax
    import jax.numpy as jnp
    model, params, batches = model_and_batches(iw, steps + untimed_steps, data_root)
    params = {k: jnp.asarray(v) for k, v in params.items()}
    state = {"m": jax.tree.map(jnp.zeros_like, params), "v": jax.tree.map(jnp.zeros_like, params),
             "count": jnp.zeros((), jnp.float32)}
    step, key = jax_step(iw, model.x_mean.numpy()), jax.random.PRNGKey(0)
    batches = [jnp.asarray(x) for x in batches]
    times = []
    for i, x in enumerate(batches):
        key, subkey = jax.random.split(key)
        wall, cpu = time.perf_counter(), time.process_time()
        params, state, value = step(params, state, x, subkey)
        value.block_until_ready()
        if i >= untimed_steps:
            times.append((1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)))
    return {"wall_ms": statistics.median(t[0] for t in times), "cpu_ms": statistics.median(t[1] for t in times)}


def measure_ovis(iw: int, steps: int, untimed_steps: int, compile: bool, data_root=None) -> Dict:
    from ovis.training.efficiency import consecutive_step_times
    times, _ = consecutive_step_times(workload(iw, steps, untimed_steps, compile, data_root))
    return {"wall_ms": statistics.median(t[0] for t in times), "cpu_ms": statistics.median(t[1] for t in times)}


def worker(args) -> None:
    """One measurement in this process, pinned to ``--core``; prints one JSON line."""
    os.sched_setaffinity(0, {args.core})
    if args.worker == "jax":
        result = measure_jax(args.iw[0], args.steps, args.untimed_steps, args.data_root)
    else:
        result = measure_ovis(args.iw[0], args.steps, args.untimed_steps, args.compile, args.data_root)
    print(json.dumps(result))


def run_worker(kind: str, iw: int, args) -> Dict:
    from ovis.launch import RUN_ENVIRONMENT
    command = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--iw", str(iw), "--core", str(args.core),
               "--steps", str(args.steps), "--untimed_steps", str(args.untimed_steps)]
    command += (["--compile"] if args.compile else []) + (["--data_root", args.data_root] if args.data_root else [])
    result = subprocess.run(command, env={**RUN_ENVIRONMENT, **os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the {kind} process failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(args) -> None:
    rows: List[str] = []
    for iw in args.iw:
        results: Dict[str, List[Dict]] = {"ovis": [], "jax": []}
        for repeat in range(args.repeats):
            for kind in (("ovis", "jax") if repeat % 2 == 0 else ("jax", "ovis")):
                results[kind].append(run_worker(kind, iw, args))
            print(f"K={iw} repeat {repeat}: ovis {results['ovis'][-1]['cpu_ms']:.2f} ms, "
                  f"JAX {results['jax'][-1]['cpu_ms']:.2f} ms (CPU time)", flush=True)
        row = [str(iw)]
        for clock in ("cpu_ms", "wall_ms"):
            ovis, jax = ([r[clock] for r in results[kind]] for kind in ("ovis", "jax"))
            ratio = statistics.median(o / j for o, j in zip(ovis, jax))
            row += [f"{statistics.median(ovis):.2f}", f"{statistics.median(jax):.2f}", f"{ratio:.2f}"]
        rows.append("| " + " | ".join(row) + " |")
    step = "ovis (run.py --compile)" if args.compile else "ovis"
    print(f"\nSBN 3x200 linear, ovis-gamma1, batch 24, one core (core {args.core}), {args.repeats} repeats "
          f"x {args.steps} timed steps per process, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| K | {step} CPU ms | JAX CPU ms | ovis / JAX (CPU) | {step} wall ms | JAX wall ms | ovis / JAX (wall) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def check_gradient(args) -> None:
    """ovis-gamma1's gradient and the JAX surrogate's on the same parameters, data and noise."""
    import jax
    import jax.numpy as jnp
    import torch
    from ovis.estimators.config import parse_estimator_id
    iw = args.iw[0]
    model, params, batches = model_and_batches(iw, 1, args.data_root)
    x = torch.from_numpy(batches[0]).view(-1, 1, 28, 28)
    Estimator, config = parse_estimator_id("ovis-gamma1")
    torch.manual_seed(0)
    loss, _, _ = Estimator(mc=1, iw=iw, **config)(model, x)
    loss.mean().backward()
    torch.manual_seed(0)  # the same uniforms: BernoulliLogits.sample draws one torch.rand per layer, bottom first
    uniforms = [jnp.asarray(torch.rand(x.shape[0] * iw, 200).numpy()) for _ in range(3)]
    value, grads = jax.value_and_grad(jax_surrogate(iw, model.x_mean.numpy()))(
        {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(batches[0]), uniforms)
    print(f"K={iw}: loss ovis {loss.mean().item():.6f}, JAX {float(value):.6f}")
    worst = 0.0
    for name, p in model.named_parameters():
        difference = float(jnp.abs(grads[name] - p.grad.numpy()).max() / (jnp.abs(p.grad.numpy()).max() + 1e-12))
        worst = max(worst, difference)
        print(f"  {name:45s} max |JAX - ovis| / max |ovis| = {difference:.2e}")
    print(f"largest relative difference {worst:.2e}: {'equal gradients' if worst < 1e-4 else 'DIFFERENT'}")


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=ExamplesHelpFormatter)
    parser.add_argument("--iw", type=lambda text: comma_list(text, int), default="5,50", help="comma-separated K")
    parser.add_argument("--repeats", type=int, default=5, help="process pairs per K (medians are reported)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per process")
    parser.add_argument("--untimed_steps", type=int, default=10, help="untimed steps first (JAX: compilation)")
    parser.add_argument("--core", type=int, default=1, help="the CPU core every process is pinned to")
    parser.add_argument("--compile", action="store_true", help="ovis's step with run.py --compile")
    parser.add_argument("--check_gradient", action="store_true", help="compare the two surrogates' gradients")
    parser.add_argument("--data_root", default=None, help="data directory (default: $OVIS_DATA, then ./data)")
    parser.add_argument("--worker", choices=("ovis", "jax"), help="internal: one measurement in this process")
    args = parser.parse_args()
    if not jax_available():
        print("benchmarks/jax_step.py skipped: JAX is not installed (it is not a dependency of ovis); "
              "to run it: pip install 'jax[cpu]'")
        return
    if args.worker:
        worker(args)
    elif args.check_gradient:
        for iw in args.iw:
            check_gradient(argparse_copy(args, iw))
    else:
        compare(args)


def argparse_copy(args, iw: int):
    """``args`` with ``iw = [iw]``."""
    import argparse
    return argparse.Namespace(**{**vars(args), "iw": [iw]})


if __name__ == "__main__":
    main()
