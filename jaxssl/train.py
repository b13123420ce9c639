"""``run(config, workdir)``: the jitted train step, the loop, checkpoints, evaluation, metrics.

One step is one ``jax.jit`` over global arrays on a ``("data",)`` mesh: the batch is sharded
over devices, the state replicated and donated. The same code runs on 1 device, N devices and
several processes. Running the same command again resumes from the last checkpoint in
``WORKDIR/checkpoints``; data order and augmentation are functions of (seed, step), so the
resumed run sees the same batches.

Exit codes (``jaxssl.main``): 0 done; 1 error; 3 aborted on a NaN/Inf loss or gradient
(``train.nonfinite_policy='abort'``; the last good checkpoint is kept); 75 preempted by SIGTERM
after a checkpoint of the current step was written (rerun the same command to resume).
"""
from __future__ import annotations

import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import optax

from jaxssl import checkpoint as checkpoint_lib
from jaxssl import config as config_lib
from jaxssl import metrics as metrics_lib
from jaxssl import optim, rng, run_info
from jaxssl import sharding as sharding_lib
from jaxssl import train_state as state_lib
from jaxssl.methods import get_method_class

EXIT_NONFINITE = 3
EXIT_PREEMPTED = 75


class NonFiniteError(RuntimeError):
    exit_code = EXIT_NONFINITE


class Preempted(SystemExit):
    def __init__(self):
        super().__init__(EXIT_PREEMPTED)


def _tree_all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(method, tx, lr_fn):
    """``(state, batch) -> (state, metrics)``: loss, gradients, update, method hook.

    A step whose loss or gradients are not finite leaves params, optimizer state and model
    state unchanged (the step counter still advances, so the bad batch is passed over) and
    increments ``nonfinite_steps``; the trainer's policy decides whether to go on.
    """
    def step_fn(state: state_lib.TrainState, batch):
        def loss_fn(params):
            return method.loss(params, state.model_state, batch, state.step)

        (loss, (model_state, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(params=params, opt_state=opt_state, model_state=model_state)
        new = method.after_update(new)
        finite = jnp.isfinite(loss) & _tree_all_finite(grads)
        kept = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        kept = kept.replace(step=state.step + 1,
                            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))
        metrics = {"loss": loss, "lr": lr_fn(state.step), "grad_norm": optax.global_norm(grads),
                   **aux}
        return kept, metrics

    return step_fn


def _check_workdir_config(workdir: str, config, allow_change: bool) -> None:
    """Refuse to resume a workdir whose recorded config differs, unless told to."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path) or allow_change:
        return
    with open(path) as f:
        old = json.load(f)
    new = json.loads(run_info.config_json(config))

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(old), flat(new)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        lines = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:10])
        raise ValueError(
            f"workdir {workdir} holds a run with a different config ({lines}); use a new "
            "--workdir, or pass --allow_config_change to resume this run with the new config")


class Setup:
    """Everything a run (or an evaluation of its checkpoints) derives from the config."""

    def __init__(self, config):
        config_lib.validate(config)
        self.config = config
        self.mesh = sharding_lib.make_mesh(config.mesh.num_devices or None)
        self.global_batch = int(config.train.batch_size)
        sharding_lib.check_batch_divisible(self.global_batch, self.mesh)
        self.method = get_method_class(config.method)(config, self.mesh)
        self.feeder = self.method.make_feeder()
        self.steps_per_epoch = self.feeder.steps_per_epoch
        self.total_steps = config_lib.total_steps(config.train, self.steps_per_epoch)
        self.tx, self.lr_fn = optim.build_optimizer(
            config.optim, global_batch=self.global_batch, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch)
        init_key = rng.root_key(config.seed, "init")
        self.init_fn = lambda: self.method.init(init_key)  # noqa: E731
        self.abstract_state = state_lib.abstract(self.init_fn, self.tx, self.mesh)


def run(config, workdir: str, allow_config_change: bool = False) -> dict:
    """Train (or resume) and evaluate; returns the final evaluation results."""
    config_lib.validate(config)
    workdir = os.path.abspath(workdir)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
    _check_workdir_config(workdir, config, allow_config_change)
    setup = Setup(config)
    mesh, method, feeder, tx = setup.mesh, setup.method, setup.feeder, setup.tx
    global_batch, total, lr_fn = setup.global_batch, setup.total_steps, setup.lr_fn
    run_info.record_start(workdir, config)
    metrics_lib.log(
        f"jaxssl {config.method}: mesh {dict(mesh.shape)} of {mesh.devices.size} "
        f"{jax.devices()[0].device_kind} devices, {jax.process_count()} process(es), global batch "
        f"{global_batch} ({global_batch // jax.process_count()} per process), "
        f"{setup.steps_per_epoch} steps/epoch, {total} steps")

    ckpt = checkpoint_lib.Checkpointer(workdir, config.train.max_checkpoints_to_keep)
    abstract_state = setup.abstract_state
    latest = ckpt.latest_step()
    if latest is not None:
        metrics_lib.log(f"resuming from {ckpt.directory}/{latest}")
        state = ckpt.restore(latest, abstract_state)
    else:
        state = state_lib.create(setup.init_fn, tx, mesh)
    start = int(state.step)

    shardings = state_lib.state_shardings(abstract_state, mesh)
    train_step = jax.jit(make_train_step(method, tx, lr_fn), donate_argnums=0,
                         out_shardings=(shardings, sharding_lib.replicated(mesh)))
    writer = metrics_lib.MetricWriter(workdir)

    preempt = {"flag": False}
    old_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        preempt["flag"] = True

    signal.signal(signal.SIGTERM, on_sigterm)
    log_every = int(config.train.log_every_steps)
    eval_every = int(config.train.eval_every_steps)
    nonfinite_seen = int(state.nonfinite_steps)
    t_last, step_last = time.perf_counter(), start
    timed_since, timed_steps, timed_time = None, 0, 0.0
    try:
        for step in range(start, total):
            if preempt["flag"]:
                metrics_lib.log(f"SIGTERM: saving step {step} and exiting with code {EXIT_PREEMPTED}")
                ckpt.save(step, state, force=True)
                ckpt.wait()
                writer.flush()
                raise Preempted()
            batch = feeder(step)
            state, metrics = train_step(state, batch)
            done = step + 1
            if done % log_every == 0 or done == total:
                scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                dt, ds = now - t_last, done - step_last
                if timed_since is None:  # the first interval includes compilation
                    timed_since = done
                else:
                    timed_steps += ds
                    timed_time += dt
                rate = (timed_steps / timed_time) if timed_time > 0 else ds / max(dt, 1e-9)
                items_s = rate * method.items_per_step()
                scalars["nonfinite_steps"] = float(int(state.nonfinite_steps))
                writer.write(done, {**scalars, f"{method.unit}_per_s": items_s})
                shown = {k: scalars[k] for k in ("loss", "lr") if k in scalars}
                metrics_lib.log(metrics_lib.progress_line(
                    done, total, shown, items_s, method.unit, (total - done) / max(rate, 1e-9)))
                t_last, step_last = now, done
                if int(state.nonfinite_steps) > nonfinite_seen:
                    nonfinite_seen = int(state.nonfinite_steps)
                    msg = (f"non-finite loss or gradient: {nonfinite_seen} step(s) skipped so far "
                           f"(last logged step {done})")
                    if config.train.nonfinite_policy == "abort":
                        writer.flush()
                        raise NonFiniteError(msg + "; aborting, the last good checkpoint is kept")
                    metrics_lib.log("warning: " + msg + "; updates skipped (nonfinite_policy=skip)")
            if done % config.train.checkpoint_every_steps == 0 and done != total:
                ckpt.save(done, state)
            if eval_every and done % eval_every == 0 and done != total and config.eval.enabled:
                res = method.evaluate(state, workdir, final=False)
                writer.write(done, _flatten_results(res))
                metrics_lib.log(f"eval at step {done}: {json.dumps(res)}")
        if ckpt.latest_step() != total:
            ckpt.save(total, state, force=True)
        ckpt.wait()
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        writer.flush()
        ckpt.close()

    results = {}
    if config.eval.enabled:
        results = method.evaluate(state, workdir, final=True)
        writer.write(total, _flatten_results(results))
        if jax.process_index() == 0:
            with open(os.path.join(workdir, "eval_results.json"), "w") as f:
                json.dump(results, f, indent=2)
        metrics_lib.log(_results_table(results))
    writer.close()
    return results


def _flatten_results(results: dict) -> dict:
    out = {}
    for group, vals in results.items():
        if isinstance(vals, dict):
            out.update({f"eval/{group}/{k}": v for k, v in vals.items()
                        if isinstance(v, (int, float))})
        elif isinstance(vals, (int, float)):
            out[f"eval/{group}"] = vals
    return out


def _results_table(results: dict) -> str:
    from jaxssl.evaluators import protocol
    if all(isinstance(v, dict) for v in results.values()):
        return protocol.format_results_table(results)
    return json.dumps(results, indent=2)
