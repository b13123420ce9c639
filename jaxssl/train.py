"""``run(config, workdir)``: the jitted train step, the loop, checkpoints, evaluation, metrics.

One step is one ``jax.jit`` over global arrays on a ``("data",)`` mesh: the batch is sharded
over devices, the state replicated and donated. The same code runs on 1 device, N devices and
several processes. Running the same command again resumes from the last checkpoint in
``WORKDIR/checkpoints``; data order and augmentation are functions of (seed, step), so the
resumed run sees the same batches and ends bit-identical to an uninterrupted one (on the same
device count). docs/reliability.md lists every promise; this module keeps them:

* **Preemption** (SIGTERM): the state of the current step is saved, the save awaited, and the
  process exits with :data:`EXIT_PREEMPTED`. One process: a Python SIGTERM handler sets a flag
  read before every step. Several processes (``jax.distributed``): JAX's preemption service
  (``multihost_utils.reached_preemption_sync_point``, the protocol orbax and MaxText use)
  catches SIGTERM on any process and makes every process stop at the same step (one past the
  largest step any process had reached), so the collective save lines up; if that service is
  disabled, a Python handler plus an all-gather of the flags before every step does the same.
* **Non-finite loss or gradients** (``train.nonfinite_policy``): the step itself never applies
  such an update (params, optimizer and model state stay as they were; the step counter
  advances past the bad batch; ``nonfinite_steps`` counts it and ``last_nonfinite_step``
  records it). The trainer reads the counters (returned with the step's metrics) at every
  logged step, one step late, and at every checkpoint step, before the save (reading them
  every step would stall the asynchronous dispatch), and applies the policy
  (:mod:`jaxssl.train_loop.nonfinite`): ``skip`` logs a warning and goes on; ``abort``
  writes the metrics row, flushes, keeps the last good checkpoint (nothing after the bad
  step is saved) and exits with :data:`EXIT_NONFINITE`; ``rollback`` restores the last
  checkpoint (or the initial state) and continues at the step after the bad one, i.e. it
  also discards the updates since that checkpoint and skips their batches (the PaLM recipe
  for loss spikes). Because the batch is a function of the step, "moving past the bad
  batch" means setting the step to ``bad_step + 1``: the learning-rate schedule and
  augmentation keys follow the step too. Replaying a rolled-back run after a kill is still
  deterministic (the same NaN recurs at the same step and is rolled back the same way).
* **Metrics one step late** (nanodo): the row of a logged step ``t`` is read on the host
  after step ``t+1`` is dispatched, so the device always has work queued while the host logs.
  A checkpoint step is read at once (its save reads the state anyway). The policy's decision
  still concerns step ``t``: a skipped step was already skipped on the device; an abort
  raises before anything after ``t`` is saved (step ``t+1`` ran but is never saved); a
  rollback restores the same checkpoint and continues at the same step, the update of step
  ``t+1`` being discarded with the others.
* **Prefetch**: a host-read feeder is wrapped in :class:`jaxssl.data.prefetch.PrefetchingFeeder`
  (``data.prefetch`` batches ahead), so the next batch is read and decoded while this step
  runs; batches remain a function of (seed, step).
* ``checkpoint.Checkpointer`` refuses to save a state with NaN/Inf, verifies every restore, and
  surfaces async save errors at the next save or at exit; the final save is always awaited.

Exit codes (``jaxssl.main``): 0 done; 1 error (bad config, damaged or mismatched checkpoint,
failed save); 3 (:data:`EXIT_NONFINITE`) aborted on a NaN/Inf loss or gradient; 75
(:data:`EXIT_PREEMPTED`, ``EX_TEMPFAIL`` of sysexits.h: "try again later", what requeueing
schedulers test for) preempted by SIGTERM after a checkpoint of the current step was written:
rerun the same command to resume.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import signal

import jax
import jax.numpy as jnp
import optax

from jaxssl import checkpoint as checkpoint_lib
from jaxssl import config as config_lib
from jaxssl.imports import read as imports_read
from jaxssl import metrics as metrics_lib
from jaxssl import monitor as monitor_lib
from jaxssl import optim, paths, rng, run_info
from jaxssl import sharding as sharding_lib
from jaxssl import train_state as state_lib
from jaxssl import methods as methods_lib
from jaxssl.data import pipeline
from jaxssl.data import prefetch as prefetch_lib
from jaxssl.evaluators import build as eval_build
from jaxssl.train_loop import nonfinite, throughput
from jaxssl.train_loop.nonfinite import EXIT_NONFINITE, NonFiniteError  # noqa: F401  (public)
from jaxssl.train_loop.periodic import Every
from jaxssl.train_loop.preemption import (EXIT_INTERRUPTED, EXIT_PREEMPTED,  # noqa: F401
                                          Interrupted, Preempted, PreemptionWatch)
from jaxssl.train_loop.step_log import StepLog
from jaxssl.train_loop.step_read import StepReader

EXIT_ERROR = 1


def _tree_all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(method, tx, lr_fn, debug_nan_at_step: int = -1, gather=None):
    """``(state, batch) -> (state, metrics)``: loss, gradients, update, method hook.

    A step whose loss, gradients or new model state (BN statistics, teacher, queue) are not
    all finite leaves params, optimizer state and model state unchanged; the step counter
    still advances (the bad batch is passed over), ``nonfinite_steps`` is incremented and
    ``last_nonfinite_step`` set to the step. The trainer's policy decides what happens next.

    ``debug_nan_at_step`` (>= 0) is a test hook: the loss of that step is multiplied by NaN,
    which makes the loss and every gradient NaN, as a diverged step would.

    ``gather`` (FSDP, :func:`jaxssl.sharding.gather_for_use`): applied to the parameters and
    the model state before the loss, so every device computes with whole leaves as under
    replicated state; the gradient is then reduce-scattered to the state's sharding.
    """
    def step_fn(state: state_lib.TrainState, batch):
        def loss_fn(params):
            model_state = state.model_state
            if gather is not None:
                params, model_state = gather(params), gather(model_state)
            loss, aux = method.loss(params, model_state, batch, state.step)
            if debug_nan_at_step >= 0:
                loss = loss * jnp.where(state.step == debug_nan_at_step, jnp.nan, 1.0)
            return loss, aux

        (loss, (model_state, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state.replace(params=params, opt_state=opt_state, model_state=model_state)
        new = method.after_update(new)
        finite = jnp.isfinite(loss) & _tree_all_finite(grads) & _tree_all_finite(new.model_state)
        kept = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
        kept = kept.replace(
            step=state.step + 1,
            nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32),
            last_nonfinite_step=jnp.where(finite, state.last_nonfinite_step, state.step))
        metrics = {"loss": loss, "lr": lr_fn(state.step), "grad_norm": optax.tree_utils.tree_norm(grads),
                   **aux}
        return kept, metrics

    return step_fn


# Fields whose change does not change the run's computation, or is checked elsewhere: the
# device count (a resume on another device count is allowed and warned about by the checkpoint)
# and the opt-in fall-back past a damaged checkpoint.
_RESUMABLE_CHANGES = ("mesh.", "train.restore_fallback")


def _check_workdir_config(workdir, config, allow_change: bool) -> None:
    """Refuse to resume a workdir (local or URL) whose recorded config differs, unless told to."""
    path = paths.resolve(workdir) / "config.json"
    if allow_change or not path.exists():
        return
    old = json.loads(path.read_text())
    new = json.loads(run_info.config_json(config))

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(old), flat(new)
    diff = sorted(k for k in set(a) | set(b)
                  if a.get(k) != b.get(k) and not k.startswith(_RESUMABLE_CHANGES))
    if diff:
        lines = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:10])
        raise ValueError(
            f"workdir {workdir} holds a run with a different config ({lines}); use a new "
            "--workdir, or pass --allow_config_change to resume this run with the new config")


def validate(config) -> None:
    """Every check a run's config gets before device work: the shared fields and the
    method's own (:func:`jaxssl.methods.validate_config`), the dataset's name
    (:func:`jaxssl.data.pipeline.validate_data`) and the names in ``eval.evaluators``.
    Raises ``ValueError`` naming field, value and fix."""
    methods_lib.validate_config(config)
    method_cls = methods_lib.get_method_class(config.method)
    pipeline.validate_data(config, method_cls)
    eval_build.check_names(config, method_cls.default_evaluators)


class Setup:
    """Everything a run (or an evaluation of its checkpoints) derives from the config.

    In order: the mesh; the training data (``data.pipeline.build_train_data``, from
    ``config.data`` and what the method class declares); the run's length from the data;
    the method, given the data and ``total_steps``; the optimizer (with the method's
    ``lr_scales`` and ``wrap_optimizer``) and the abstract state. The evaluators
    ``config.eval`` lists are built on first use around the method's named functions
    (:meth:`jaxssl.methods.base.Method.eval_functions`); they never see the method.
    """

    def __init__(self, config, *, validated: bool = False, mesh=None, build_data=None):
        """``mesh`` (default: from ``config.mesh``) and ``build_data`` (default:
        ``pipeline.build_train_data``) let ``jaxssl.plan`` build the same run on a TPU
        topology's compile-only devices from abstract data."""
        if not validated:  # train.run validates before it creates the workdir
            validate(config)
        self.config = config
        self.mesh = mesh if mesh is not None else sharding_lib.make_mesh(config.mesh.num_devices or None)
        self.param_sharding = str(config.mesh.get("param_sharding", "replicated"))
        self.global_batch = int(config.train.batch_size)
        sharding_lib.check_batch_divisible(self.global_batch, self.mesh)
        method_cls = methods_lib.get_method_class(config.method)
        self.data = (build_data or pipeline.build_train_data)(config, self.mesh, method_cls)
        self.feeder = self.data.feeder
        self.steps_per_epoch = self.feeder.steps_per_epoch
        self.total_steps = config_lib.total_steps(config.train, self.steps_per_epoch)
        self.method = method_cls(config, self.mesh, self.data, self.total_steps)
        self.tx, self.lr_fn = optim.build_optimizer(
            config.optim, global_batch=self.global_batch, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch)
        lr_scales = self.method.lr_scales()
        if lr_scales is not None:  # layer-wise lr decay: each update times its layer's scale
            self.tx = optax.chain(self.tx, optim.scale_by_tree(lr_scales))
        # per-group optimizers, update freezes (the default keeps tx)
        self.tx = self.method.wrap_optimizer(self.tx, dict(
            global_batch=self.global_batch, total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch))
        init_key = rng.root_key(config.seed, "init")
        self.init_fn = lambda: self.method.init(init_key)  # noqa: E731
        self.abstract_state = state_lib.abstract(self.init_fn, self.tx, self.mesh,
                                                 self.param_sharding)

    def fresh_state(self):
        """The initial state on the mesh, laid out by ``mesh.param_sharding``."""
        return state_lib.create(self.init_fn, self.tx, self.mesh, self.param_sharding)

    def jit_train_step(self):
        """The run's jitted step ``(state, batch) -> (state, metrics)``: state donated, state
        out in its own shardings (``mesh.param_sharding``), metrics replicated."""
        return jax.jit(
            _with_counters(make_train_step(
                self.method, self.tx, self.lr_fn, int(self.config.train.debug_nan_at_step),
                gather=sharding_lib.gather_for_use(self.mesh, self.param_sharding))),
            donate_argnums=0,
            out_shardings=(state_lib.state_shardings(self.abstract_state, self.mesh,
                                                     self.param_sharding),
                           sharding_lib.replicated(self.mesh)))

    @functools.cached_property
    def evaluators(self) -> list:
        return eval_build.build_evaluators(self.config, self.mesh, self.method.eval_functions(),
                                           type(self.method).default_evaluators)

    def evaluate(self, state, workdir: str, final: bool) -> dict:
        """The merged results of every evaluator of the config on ``state``."""
        return eval_build.run_evaluators(self.evaluators, state, workdir, final)

    def baseline_runs(self, workdir: str) -> dict:
        """``{"random_init": results}`` of the run the method asks for as a baseline
        (:meth:`jaxssl.methods.base.Method.random_init_baseline`), or ``{}``."""
        overrides = self.method.random_init_baseline()
        if overrides is None:
            return {}
        return {"random_init": random_init_baseline(self.config, workdir, overrides)}


def _with_counters(step_fn):
    """The step, its metrics extended with the state's non-finite counters: the policy reads
    them from the metrics, which are not donated to the next step as the state is."""
    def step_with_counters(state, batch):
        state, metrics = step_fn(state, batch)
        return state, {**metrics, "nonfinite_steps": state.nonfinite_steps,
                       "last_nonfinite_step": state.last_nonfinite_step}
    return step_with_counters


STEP_TRANSFER_GUARD_ENV = "JAXSSL_STEP_TRANSFER_GUARD"


def step_transfer_guard() -> str:
    """The ``jax.transfer_guard`` level around feeding and dispatching each step: the value
    of ``$JAXSSL_STEP_TRANSFER_GUARD`` ('allow' when unset). The tests run with 'disallow', so
    an implicit host-to-device copy in the loop fails them; explicit ``jax.device_put`` (the
    feeders) is always allowed."""
    level = os.environ.get(STEP_TRANSFER_GUARD_ENV, "allow")
    if level not in ("allow", "log", "disallow", "log_explicit", "disallow_explicit"):
        raise ValueError(f"${STEP_TRANSFER_GUARD_ENV}={level!r}; use 'allow', 'log' or 'disallow' "
                         "(jax.transfer_guard levels)")
    return level


def run(config, workdir: str, allow_config_change: bool = False) -> dict:
    """Train (or resume) and evaluate; returns the final evaluation results."""
    # A local folder (made absolute) or a URL (gs://...) that every process proved it can
    # write, before any device work.
    workdir = os.fspath(checkpoint_lib.check_workdir(workdir))
    validate(config)
    if jax.process_index() == 0:
        paths.makedirs(workdir)
    _check_workdir_config(workdir, config, allow_config_change)
    setup = Setup(config, validated=True)
    mesh, global_batch = setup.mesh, setup.global_batch
    run_info.record_start(workdir, config)
    if jax.process_index() == 0:
        setup.method.save_artifacts(workdir)
    metrics_lib.log(
        f"jaxssl {config.method}: mesh {dict(mesh.shape)} of {mesh.devices.size} "
        f"{jax.devices()[0].device_kind} devices, {jax.process_count()} process(es), global batch "
        f"{global_batch} ({global_batch // jax.process_count()} per process), "
        f"{setup.steps_per_epoch} steps/epoch, {setup.total_steps} steps")

    writer = metrics_lib.MetricWriter(workdir)
    state = _train(setup, workdir, writer)
    results = {}
    if config.eval.enabled:
        results = setup.evaluate(state, workdir, final=True)
        results.update(setup.baseline_runs(workdir))
        writer.write(setup.total_steps, _flatten_results(results))
        names = eval_build.evaluator_names(config, type(setup.method).default_evaluators)
        described = None
        if "representation" in names:   # name the monitor's protocol beside its numbers
            from jaxssl.evaluators import protocol
            described = protocol.describe(config.eval)
        if jax.process_index() == 0:
            paths.write_text(paths.resolve(workdir) / "eval_results.json",
                             json.dumps(results, indent=2))
            if described:
                paths.write_text(paths.resolve(workdir) / "eval_protocol.json",
                                 json.dumps(described, indent=2))
        metrics_lib.log(results_table(results))
        if described:
            metrics_lib.log("protocol: " + described["linear"])
    writer.close()
    return results


def random_init_baseline(config, workdir: str, overrides: dict) -> dict:
    """The ``random_init`` results of the same recipe trained from random initialisation:
    ``config`` with ``overrides`` (``{"section.field": value}``, what
    :meth:`jaxssl.methods.base.Method.random_init_baseline` returns), run in
    ``WORKDIR/baselines/random_init`` (a run of its own: resumable, with its checkpoints)."""
    config = copy.deepcopy(config)
    for key, value in overrides.items():
        section, field = key.split(".")
        config[section][field] = value
    base_dir = os.path.join(workdir, "baselines", "random_init")
    print(f"baseline: the same recipe from random initialisation in {base_dir}", flush=True)
    return run(config, base_dir, allow_config_change=True)["random_init"]


def evaluate_checkpoint(config, workdir: str, step: int | None = None,
                        baselines: bool = False) -> tuple[int, dict]:
    """``(step, results)`` of the config's evaluators on a run's checkpoint (``scripts/evaluate.py``).

    Restores ``WORKDIR/checkpoints/<step>`` (default: the latest) into the current mesh and
    runs the evaluators the trainer would (``final=baselines`` adds the baselines).
    """
    setup = Setup(config)
    ckpt = checkpoint_lib.Checkpointer(workdir, async_save=False)
    try:
        step = step if step is not None else ckpt.latest_step()
        if step is None:
            raise ValueError(f"no checkpoint in {ckpt.directory}; train first or check --workdir")
        if step not in ckpt.all_steps():
            raise ValueError(f"--step={step} is not in {ckpt.directory}; available: "
                             f"{ckpt.all_steps()}")
        state = ckpt.restore(step, setup.abstract_state)
    finally:
        ckpt.close()
    results = setup.evaluate(state, workdir, final=baselines)
    if baselines:
        results.update(setup.baseline_runs(workdir))
    return step, results


def _train(setup: Setup, workdir: str, writer: metrics_lib.MetricWriter):
    """The training loop, from the latest checkpoint (or a fresh state) to the final state.

    Feed and dispatch step ``t``; then read on the host what is due: the metrics of the
    previous logged step (one step late, so the device always has the next step queued while
    the host logs), or at once at a checkpoint step, whose save reads the state anyway. Every
    read applies the non-finite policy to the step it concerns (:class:`StepReader`); then the
    checkpoint and evaluation actions that are due run. Returns the final state, saved.
    """
    config, mesh, method, total = setup.config, setup.mesh, setup.method, setup.total_steps
    train_cfg = config.train
    ckpt = checkpoint_lib.Checkpointer(workdir, train_cfg.max_checkpoints_to_keep)

    fresh_state = setup.fresh_state
    state = _initial_state(ckpt, setup.abstract_state, fresh_state, train_cfg, method, mesh)
    train_step = setup.jit_train_step()
    monitor_cfg = config.monitor
    collapse = monitor_lib.CollapseMonitor(
        method.chance_loss(),
        rel_tol=monitor_cfg.collapse_loss_rel_tol, patience=monitor_cfg.collapse_patience,
        std_floor=monitor_cfg.collapse_std_floor)
    step = int(jax.device_get(state.step))
    meter = throughput.ThroughputMeter(step, method.items_per_step(), method.flops_per_step(),
                                       mesh.devices.size)
    reader = StepReader(
        StepLog(writer, meter, collapse, method.unit, total),
        nonfinite.NonFinitePolicy(train_cfg.nonfinite_policy,
                                  seen=int(jax.device_get(state.nonfinite_steps))),
        restore=lambda decision: nonfinite.restore_for_rollback(
            ckpt, setup.abstract_state, fresh_state, train_cfg.restore_fallback, decision, mesh),
        latest_checkpoint=ckpt.latest_step)
    log_due = Every(int(train_cfg.log_every_steps), total, at_last=True)
    ckpt_due = Every(int(train_cfg.checkpoint_every_steps), total, at_last=True)
    eval_due = Every(int(train_cfg.eval_every_steps) if config.eval.enabled else 0, total)
    guard = step_transfer_guard()

    feeder = prefetch_lib.prefetching(setup.feeder, int(config.data.prefetch), end=total)
    pending = None  # (step, metrics) of a logged step, read after the next step is dispatched
    watch = PreemptionWatch()
    failing = False
    try:
        while step < total:
            if watch.should_stop(step):
                if pending is not None:  # the last logged step, read before stopping
                    rolled_back = reader.read(*pending, log_row=True, now=step)
                    state, step = rolled_back or (state, step)
                _save_preempted(ckpt, step, state, writer)
            with jax.transfer_guard(guard):
                state, metrics = train_step(state, feeder(step))
            step += 1
            if pending is not None:  # the previous logged step, read while this step runs
                rolled_back, pending = reader.read(*pending, log_row=True, now=step), None
                if rolled_back:
                    state, step = rolled_back
                    continue
            if ckpt_due.due(step) or (log_due.due(step) and eval_due.due(step)):
                rolled_back = reader.read(step, metrics, log_row=log_due.due(step), now=step)
                if rolled_back:
                    state, step = rolled_back
                    continue
            elif log_due.due(step):
                pending = (step, metrics)
            if ckpt_due.due(step) and step != total:
                ckpt.save(step, state)
            if eval_due.due(step):
                results = setup.evaluate(state, workdir, final=False)
                writer.write(step, _flatten_results(results))
                metrics_lib.log(f"eval at step {step}: {json.dumps(results)}")
        if total not in ckpt.all_steps():
            ckpt.save(total, state, force=True)
        ckpt.wait()
        if watch.should_stop(total):  # SIGTERM during the last step: the final state is saved
            _save_preempted(ckpt, total, state, writer)
    except BaseException:
        failing = True
        raise
    finally:
        if feeder is not setup.feeder:
            feeder.close()
        watch.close()
        writer.flush()
        try:
            ckpt.close()  # awaits the last save; raises if it failed
        except checkpoint_lib.CheckpointError as e:
            if not failing:
                raise
            metrics_lib.log(f"error: {e}")
    return state


def _initial_state(ckpt, abstract_state, fresh_state, train_cfg, method, mesh):
    """The latest checkpoint's state, or a fresh one (optionally ``train.init_from`` another
    run's weights)."""
    if ckpt.latest_step() is not None:
        restored_step, state = ckpt.restore_latest(abstract_state,
                                                   fallback=train_cfg.restore_fallback)
        if state is not None:
            metrics_lib.log(f"resuming from {ckpt.step_path(restored_step)}")
            return state
        # every checkpoint was damaged and moved away (restore_fallback)
        metrics_lib.log("restore_fallback: no usable checkpoint left; starting from scratch")
        return fresh_state()
    state = fresh_state()
    if train_cfg.init_from and imports_read.is_import_source(train_cfg.init_from):
        from jaxssl.imports import workdir as import_workdir  # a released checkpoint
        state, message = import_workdir.init_state(train_cfg.init_from, state, mesh,
                                                   method.config)
        metrics_lib.log(message)
    elif train_cfg.init_from and train_cfg.init_from != config_lib.RANDOM_INIT:
        # a classifier loads its backbone only; the default, what matches
        state, loaded = method.init_from(train_cfg.init_from, state, mesh)
        metrics_lib.log(f"init_from {train_cfg.init_from}: loaded {', '.join(loaded)}")
    return state


def _save_preempted(ckpt, step: int, state, writer) -> None:
    interrupted = PreemptionWatch.stop_signal == signal.SIGINT
    name, code = ("SIGINT (Ctrl-C)", EXIT_INTERRUPTED) if interrupted else ("SIGTERM", EXIT_PREEMPTED)
    # Every process prints this line: the steps must agree (tests/test_multiprocess.py).
    print(f"{name}: saving step {step} and exiting with code {code} "
          f"(process {jax.process_index()} of {jax.process_count()})", flush=True)
    if step not in ckpt.all_steps():
        ckpt.save(step, state, force=True)
    ckpt.wait()
    writer.flush()
    metrics_lib.log(f"{name}: checkpoint {ckpt.step_path(step)} written; rerun the same "
                    "command to resume")
    raise Interrupted() if interrupted else Preempted()


def _flatten_results(results: dict) -> dict:
    out = {}
    for group, vals in results.items():
        if isinstance(vals, dict):
            out.update({f"eval/{group}/{k}": v for k, v in vals.items()
                        if isinstance(v, (int, float))})
        elif isinstance(vals, (int, float)):
            out[f"eval/{group}"] = vals
    return out


def results_table(results: dict) -> str:
    """A fixed-width table when every result is a group of metrics, else indented JSON."""
    from jaxssl.evaluators import protocol
    if all(isinstance(v, dict) for v in results.values()):
        return protocol.format_results_table(results)
    return json.dumps(results, indent=2)
