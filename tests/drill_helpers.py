"""Fault drills shared by the reliability tests and ``scripts/fault_drill.py``.

Each drill runs the real command line (``python -m jaxssl.main``) in subprocesses on a tiny
SimCLR-on-digits config, injects one fault (SIGKILL, SIGTERM, a damaged checkpoint, a second
process), and returns a :class:`Row` (drill, PASS/FAIL, the figure behind it) plus the raw
facts the tests assert on. Subprocesses get their own fake CPU device count, share a
persistent compilation cache (the same program is compiled once per drill session), and are
always killed (by pid) when a drill ends.

Run as a script, this module is the worker of the multi-process equivalence drill:
``python tests/drill_helpers.py equiv_worker OUT_DIR`` (see :func:`equiv_worker`).
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from jaxssl.methods.base import Method

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "simclr_digits.py")

# The tiny run every drill uses: 40 steps of batch 32, a checkpoint every 4 steps, a log
# line every step (so a signal can be aimed at a step), no evaluation.
TINY = {
    "train.num_epochs": 0.0, "train.num_steps": 40, "train.batch_size": 32,
    "train.log_every_steps": 1, "train.checkpoint_every_steps": 4,
    "train.max_checkpoints_to_keep": 3, "eval.enabled": False, "optim.warmup_epochs": 0.5,
}


@dataclasses.dataclass
class Row:
    drill: str
    passed: bool
    figure: str
    facts: dict = dataclasses.field(default_factory=dict)

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"


def load_config(overrides: dict | None = None, path: str = CONFIG):
    """The config file at ``path`` with ``TINY`` and ``overrides`` (dotted keys) applied."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("drill_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(None)
    with config.unlocked():
        for key, value in dict(TINY, **(overrides or {})).items():
            node = config
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
    return config


# ----------------------------------------------------------------------------- a tiny method
def tiny_points_data(config, mesh, method_cls):
    """The training data of :class:`TinyMethod`: 256 fixed random 8-d points on the device."""
    from jaxssl.data.feeder import DeviceFeeder
    from jaxssl.data.pipeline import TrainData
    del method_cls
    data = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    return TrainData(DeviceFeeder({"x": data}, int(config.train.batch_size), int(config.seed), mesh))


class TinyMethod(Method):
    """A method that compiles in about a second, for in-process tests of the trainer's logic.

    ``backbone`` (8 -> 16, tanh) and ``head`` (16 -> ``model.head_output_dim``) on 256 fixed
    random 8-d points, a running mean of the hidden features in ``model_state['batch_stats']``
    (BatchNorm-like state), per-example noise keyed by (seed, step) like an augmentation, and a
    regression loss. Register it with :func:`register_tiny_method`; ``config.method='tiny'``.
    It implements the abstract methods of ``jaxssl.methods.base.Method`` and keeps its hooks'
    defaults.
    """

    unit = "img"
    data_kind = "tiny_points"
    default_evaluators = ()

    def __init__(self, config, mesh, data, total_steps):
        self.config, self.mesh, self.data, self.total_steps = config, mesh, data, total_steps

    @classmethod
    def validate_config(cls, config) -> None:
        pass

    def items_per_step(self) -> int:
        return int(self.config.train.batch_size)

    def init(self, key):
        import jax
        import jax.numpy as jnp
        k1, k2 = jax.random.split(key)
        d = int(self.config.model.head_output_dim)
        params = {"backbone": {"kernel": jax.random.normal(k1, (8, 16)) / 3.0},
                  "head": {"kernel": jax.random.normal(k2, (16, d)) / 4.0}}
        return params, {"batch_stats": {"mean": jnp.zeros((16,), jnp.float32)}}

    def loss(self, params, model_state, batch, step):
        import jax
        import jax.numpy as jnp
        from jaxssl import rng
        x = batch["x"]
        key = rng.step_key(self.config.seed, "augment", step)
        x = x + 0.1 * jax.random.normal(key, x.shape)
        h = jnp.tanh(x @ params["backbone"]["kernel"])
        z = h @ params["head"]["kernel"]
        mean = 0.9 * model_state["batch_stats"]["mean"] + 0.1 * jnp.mean(h, axis=0)
        loss = jnp.mean((z - jnp.sum(x, axis=1, keepdims=True)) ** 2)
        return loss, ({"batch_stats": {"mean": mean}}, {"embedding_std": jnp.mean(jnp.std(z, 0))})

    def after_update(self, state):
        return state

    def save_artifacts(self, workdir):
        pass

    def flops_per_step(self):
        return None

    def chance_loss(self):
        """The collapse monitor's reference loss (``jaxssl.monitor.chance_loss`` hook): about
        the loss at initialisation, so that the monitor's wiring can be tested."""
        return 13.0


def register_tiny_method(monkeypatch) -> None:
    """Make ``config.method='tiny'`` resolve to :class:`TinyMethod` (pytest monkeypatch)."""
    from jaxssl import methods
    from jaxssl.data import pipeline
    pipeline.register_data_kind("tiny_points", tiny_points_data)
    monkeypatch.setitem(methods._METHODS, "tiny", TinyMethod)  # noqa: SLF001


def tiny_method_config(overrides: dict | None = None):
    base = {"method": "tiny", "train.batch_size": 16, "train.num_steps": 8,
            "train.log_every_steps": 2, "train.checkpoint_every_steps": 2,
            "train.max_checkpoints_to_keep": 10, "optim.name": "sgd", "optim.base_lr": 0.05,
            "optim.warmup_epochs": 0.0, "model.head_output_dim": 4}
    return load_config({**base, **(overrides or {})})


# ----------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def child_env(num_devices: int, cache_dir: str | None = None, **extra) -> dict:
    """Environment of a child JAX process: ``num_devices`` fake CPU devices, no GPUs."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env.update(XLA_FLAGS=flags.strip(), JAX_NUM_CPU_DEVICES=str(num_devices), JAX_PLATFORMS="cpu",
               CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if cache_dir:
        env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def main_argv(workdir: str, overrides: dict | None = None, *flags: str) -> list[str]:
    """``python -m jaxssl.main`` on the digits config with ``TINY`` and ``overrides``."""
    over = dict(TINY, **(overrides or {}))
    return ([sys.executable, "-m", "jaxssl.main", f"--config={CONFIG}", f"--workdir={workdir}"]
            + [f"--config.{k}={v}" for k, v in over.items()] + list(flags))


class Proc:
    """A child process whose combined output goes to a log file (no pipe to fill up)."""

    def __init__(self, argv: list[str], env: dict, log_path: str):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """Block until ``pattern`` appears in the output; raise if the process ends or times out."""
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            m = rx.search(self.text())
            if m:
                return m
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited ({self.popen.returncode}) before printing "
                                   f"{pattern!r}:\n{tail(self.text())}")
            time.sleep(0.05)
        raise TimeoutError(f"{pattern!r} not printed within {timeout:.0f}s:\n{tail(self.text())}")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"process {self.pid} still running after {timeout:.0f}s:\n"
                               f"{tail(self.text())}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(30)
        self._log.close()


def tail(text: str, n: int = 25) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith(("W1", "I1"))]
    return "\n".join(lines[-n:])


def run_main(workdir: str, env: dict, log_path: str, overrides: dict | None = None,
             *flags: str, timeout: float = 300) -> tuple[int, str]:
    proc = Proc(main_argv(workdir, overrides, *flags), env, log_path)
    try:
        rc = proc.wait(timeout)
        return rc, proc.text()
    finally:
        proc.kill()


# ----------------------------------------------------------------------------- state hashes
def state_hashes(path: str) -> dict[str, str]:
    """sha256 per state group (params, model_state, opt_state, step, counters) of a checkpoint.

    Restores the checkpoint's own stored tree (``checkpoint.load_tree``, every leaf verified)
    and hashes each leaf's path, dtype, shape and bytes in sorted path order.
    """
    from jaxssl import checkpoint
    tree, _ = checkpoint.load_tree(path)
    flat = checkpoint.flat_leaves(tree)  # the same path naming as the checkpoint
    groups: dict[str, hashlib._Hash] = {}
    for name in sorted(flat):
        x = np.asarray(flat[name])
        h = groups.setdefault(name.split("/")[0], hashlib.sha256())
        h.update(f"{name}|{x.dtype.str}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return {k: v.hexdigest() for k, v in sorted(groups.items())}


def combined(hashes: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}={v}" for k, v in sorted(hashes.items())).encode()).hexdigest()


def finished_steps(workdir: str) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


# ----------------------------------------------------------------------------- drills
def drill_kill_and_resume(tmp: str, cache: str, seed: int | None = None) -> tuple[Row, Row]:
    """SIGKILL at a random step, SIGTERM at a later random step, then run to the end.

    Returns the SIGKILL row (final hashes equal to an uninterrupted run's) and the
    single-process SIGTERM row (exit code 75, a finished checkpoint at the step it stopped).
    """
    rnd = random.Random(seed)
    env = child_env(2, cache)
    ref, split = os.path.join(tmp, "uninterrupted"), os.path.join(tmp, "interrupted")
    rc, out = run_main(ref, env, os.path.join(tmp, "ref.log"))
    if rc != 0:
        raise RuntimeError(f"uninterrupted run failed ({rc}):\n{tail(out)}")

    kill_at = rnd.randint(5, 20)
    proc = Proc(main_argv(split), env, os.path.join(tmp, "killed.log"))
    try:
        proc.wait_for(rf"step {kill_at}/40 ", 300)
        os.kill(proc.pid, signal.SIGKILL)
        killed_rc = proc.wait(60)
    finally:
        proc.kill()
    kept_after_kill = finished_steps(split)

    proc = Proc(main_argv(split), env, os.path.join(tmp, "terminated.log"))
    try:
        proc.wait_for(r"step \d+/40 ", 300)
        # No "resuming" line: killed before the first save was finalised, restarts from 0.
        m = re.search(r"resuming from \S+/(\d+)\n", proc.text())
        resumed_from = int(m.group(1)) if m else 0
        term_at = resumed_from + rnd.randint(2, 5)
        proc.wait_for(rf"step {term_at}/40 ", 300)
        os.kill(proc.pid, signal.SIGTERM)
        term_rc = proc.wait(120)
        term_text = proc.text()
    finally:
        proc.kill()
    m = re.search(r"SIGTERM: saving step (\d+)", term_text)
    term_step = int(m.group(1)) if m else None
    term_ckpt_ok = term_step is not None and term_step in finished_steps(split)

    rc, out = run_main(split, env, os.path.join(tmp, "final.log"))
    h_ref, h_split = state_hashes(ref), state_hashes(split)
    ok = rc == 0 and h_ref == h_split and killed_rc == -signal.SIGKILL
    kill_row = Row("SIGKILL at a random step, rerun", ok,
                   f"killed at step >= {kill_at}, resumed from {resumed_from}; final state sha256 "
                   f"{combined(h_split)[:12]} vs uninterrupted {combined(h_ref)[:12]}",
                   dict(kill_at=kill_at, resumed_from=resumed_from, kept_after_kill=kept_after_kill,
                        hashes_ref=h_ref, hashes_split=h_split, final_rc=rc, final_log=out))
    from jaxssl import train
    term_row = Row("SIGTERM, 1 process", term_rc == train.EXIT_PREEMPTED and term_ckpt_ok,
                   f"exit code {term_rc} (expected {train.EXIT_PREEMPTED}); checkpoint at step "
                   f"{term_step} (signal after step {term_at}) finished: {term_ckpt_ok}",
                   dict(rc=term_rc, step=term_step, signalled_after=term_at, log=term_text))
    return kill_row, term_row


def drill_sigterm_two_processes(tmp: str, cache: str) -> Row:
    """2 processes x 1 device under jax.distributed; SIGTERM reaches process 1 only."""
    port = free_port()
    workdir = os.path.join(tmp, "sigterm2")
    procs = []
    try:
        for i in range(2):
            env = child_env(1, cache, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                            JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i)
            procs.append(Proc(main_argv(workdir, {"train.num_steps": 2000}, "--distributed"), env,
                              os.path.join(tmp, f"sigterm2_p{i}.log")))
        procs[0].wait_for(r"step 6/2000 ", 300)
        os.kill(procs[1].pid, signal.SIGTERM)
        rcs = [p.wait(180) for p in procs]
        texts = [p.text() for p in procs]
    finally:
        for p in procs:
            p.kill()
    steps = [re.findall(r"SIGTERM: saving step (\d+)", t) for t in texts]
    agreed = all(len(s) == 1 for s in steps) and steps[0] == steps[1]
    step = int(steps[0][0]) if agreed else None
    saved = step is not None and step in finished_steps(workdir)
    meta = {}
    if saved:
        import json
        with open(os.path.join(workdir, "checkpoints", str(step), "meta", "metadata")) as f:
            meta = json.load(f)
    from jaxssl import train
    ok = rcs == [train.EXIT_PREEMPTED] * 2 and agreed and saved and meta.get("process_count") == 2
    return Row("SIGTERM to 1 of 2 processes", ok,
               f"exit codes {rcs}; both saved step {step}: {agreed and saved}",
               dict(rcs=rcs, steps=steps, step=step, meta=meta, logs=texts))


def drill_damaged_checkpoint(tmp: str, cache: str, source: str) -> Row:
    """Damage a finished run's checkpoints; the CLI must refuse, then fall back when asked.

    ``source`` is a finished run of :data:`TINY` (checkpoints 32, 36, 40). An unfinished save
    (tmp folder) must be ignored and removed; the latest checkpoint is truncated: the run
    fails naming its path; with ``train.restore_fallback=True`` it resumes from 36 and
    finishes with a new step 40.
    """
    workdir = os.path.join(tmp, "damaged")
    shutil.copytree(source, workdir)
    ckpts = os.path.join(workdir, "checkpoints")
    tmp_dir = os.path.join(ckpts, "44.orbax-checkpoint-tmp-1700000000000000")
    shutil.copytree(os.path.join(ckpts, "40"), tmp_dir)
    truncate_arrays(os.path.join(ckpts, "40"))
    env = child_env(2, cache)
    rc_fail, out_fail = run_main(workdir, env, os.path.join(tmp, "damaged_fail.log"))
    path40 = os.path.join(os.path.abspath(ckpts), "40")
    names_path = f"checkpoint {path40} is damaged" in out_fail
    tmp_removed = not os.path.exists(tmp_dir)
    rc_ok, out_ok = run_main(workdir, env, os.path.join(tmp, "damaged_fallback.log"),
                             {"train.restore_fallback": True})
    resumed36 = re.search(r"resuming from \S+/36\n", out_ok) is not None
    ok = rc_fail == 1 and names_path and tmp_removed and rc_ok == 0 and resumed36 \
        and 40 in finished_steps(workdir)
    return Row("damaged checkpoint (tmp + truncated)", ok,
               f"exit {rc_fail} naming .../checkpoints/40: {names_path}; tmp removed: "
               f"{tmp_removed}; fallback resumed from 36, exit {rc_ok}",
               dict(rc_fail=rc_fail, out_fail=out_fail, rc_ok=rc_ok, out_ok=out_ok))


def truncate_arrays(step_dir: str) -> list[str]:
    """Truncate every array data file of a checkpoint step (as a full disk would)."""
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
             if os.path.isfile(f)]
    for f in files:
        with open(f, "r+b") as fh:
            fh.truncate(max(0, os.path.getsize(f) // 3))
    return files


def flip_bytes(step_dir: str) -> list[str]:
    """Flip 8 bytes in the middle of every array data file (same size: a silent bit rot)."""
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
             if os.path.isfile(f) and os.path.getsize(f) > 64]
    for f in files:
        data = bytearray(open(f, "rb").read())
        mid = len(data) // 2
        data[mid:mid + 8] = bytes(b ^ 0xFF for b in data[mid:mid + 8])
        with open(f, "wb") as fh:
            fh.write(bytes(data))
    return files


# ----------------------------------------------------------------------------- equivalence
EQUIV_STEP = 3          # the global batch of this step is compared
EQUIV_BATCH = 32


def equiv_worker(out_dir: str) -> None:
    """One process of the equivalence drill: loss, gradients and BN statistics of one step.

    With ``JAX_COORDINATOR_ADDRESS`` set it joins ``jax.distributed`` first. Every process
    writes the dataset indices its rows hold for every step of epoch 0 (and checks that the
    rows of the assembled global batch on its devices are exactly those images); process 0
    writes the loss, gradients and new BN statistics (``out.npz``).
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        from jaxssl.main import initialize_distributed
        initialize_distributed()
    import jax

    from jaxssl import checkpoint, train
    from jaxssl import sharding as sharding_lib
    from jaxssl import train_state as state_lib
    config = load_config({"train.batch_size": EQUIV_BATCH})
    setup = train.Setup(config)
    method, feeder, mesh = setup.method, setup.feeder, setup.mesh
    state = state_lib.create(setup.init_fn, setup.tx, mesh)
    batch = feeder(EQUIV_STEP)

    # The rows of the global batch this process holds are the images its indices name.
    images = np.asarray(method.data.source.images)
    want = images[feeder.indices(EQUIV_STEP)]
    for shard in batch["image"].addressable_shards:
        np.testing.assert_array_equal(np.asarray(shard.data), want[shard.index[0]])

    rep = sharding_lib.replicated(mesh)

    @jax.jit
    def loss_grads(params, model_state, batch):
        def f(p):
            return method.loss(p, model_state, batch, jax.numpy.int32(EQUIV_STEP))
        (loss, (new_ms, _)), grads = jax.value_and_grad(f, has_aux=True)(params)
        return jax.lax.with_sharding_constraint((loss, grads, new_ms), rep)

    loss, grads, new_ms = loss_grads(state.params, state.model_state, batch)
    rows = np.stack([feeder.indices(s)[feeder.rows] for s in range(feeder.steps_per_epoch)])
    pid = jax.process_index()
    np.save(os.path.join(out_dir, f"rows_p{pid}.npy"), rows)
    if pid == 0:
        host = checkpoint.to_host
        out = {"loss": host(loss)}
        out.update({f"grad/{k}": host(v) for k, v in checkpoint.flat_leaves(grads).items()})
        out.update({f"bn/{k}": host(v) for k, v in checkpoint.flat_leaves(new_ms).items()})
        out["meta/devices"] = np.array(jax.device_count())
        out["meta/processes"] = np.array(jax.process_count())
        out["meta/num_examples"] = np.array(feeder.num_examples)
        np.savez(os.path.join(out_dir, "out.npz"), **out)


def drill_equivalence(tmp: str, cache: str, tolerance: float = 1e-5) -> Row:
    """2 processes x 2 CPU devices vs 1 process x 4 devices: loss, gradients, BN statistics."""
    one, two = os.path.join(tmp, "equiv_1x4"), os.path.join(tmp, "equiv_2x2")
    os.makedirs(one), os.makedirs(two)
    port = free_port()
    argv = [sys.executable, os.path.join(ROOT, "tests", "drill_helpers.py"), "equiv_worker"]
    procs = []
    try:
        procs.append(Proc(argv + [one], child_env(4, cache), os.path.join(tmp, "equiv_1x4.log")))
        for i in range(2):
            env = child_env(2, cache, JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                            JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i)
            procs.append(Proc(argv + [two], env, os.path.join(tmp, f"equiv_2x2_p{i}.log")))
        rcs = [p.wait(300) for p in procs]
        logs = [p.text() for p in procs]
    finally:
        for p in procs:
            p.kill()
    if rcs != [0, 0, 0]:
        return Row("2 proc x 2 dev == 1 proc x 4 dev", False, f"worker exit codes {rcs}",
                   dict(rcs=rcs, logs=logs))
    a, b = np.load(os.path.join(one, "out.npz")), np.load(os.path.join(two, "out.npz"))
    keys = sorted(k for k in a.files if not k.startswith("meta/"))
    same_keys = keys == sorted(k for k in b.files if not k.startswith("meta/"))
    diffs = {k: float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)), initial=0.0))
             for k in keys}
    scale = {k: float(np.max(np.abs(a[k]), initial=0.0)) for k in keys}
    worst = max(diffs, key=lambda k: diffs[k] / max(scale[k], 1e-12))
    rel = diffs[worst] / max(scale[worst], 1e-12)
    rows = [np.load(os.path.join(two, f"rows_p{i}.npy")) for i in range(2)]
    seen = np.concatenate([r.reshape(-1) for r in rows])
    n = int(a["meta/num_examples"])
    coverage_ok = (len(np.unique(seen)) == seen.size == (n // EQUIV_BATCH) * EQUIV_BATCH
                   and rows[0].shape == rows[1].shape)
    ok = same_keys and rel <= tolerance and coverage_ok and int(b["meta/processes"]) == 2 \
        and int(a["meta/devices"]) == int(b["meta/devices"]) == 4
    return Row("2 proc x 2 dev == 1 proc x 4 dev", ok,
               f"max rel diff {rel:.1e} ({worst}) <= {tolerance:g}; loss {float(a['loss']):.6f} vs "
               f"{float(b['loss']):.6f}; epoch 0: {seen.size} rows, {len(np.unique(seen))} distinct "
               f"of {n} ({n % EQUIV_BATCH} left for later epochs)",
               dict(diffs=diffs, rel=rel, worst=worst, coverage_ok=coverage_ok, rows=rows, n=n,
                    loss=(float(a["loss"]), float(b["loss"]))))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "equiv_worker":
        equiv_worker(sys.argv[2])
    else:
        raise SystemExit("usage: python tests/drill_helpers.py equiv_worker OUT_DIR")
