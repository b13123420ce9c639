"""Train-step table: jaxssl's real jitted step per workload, side by side with its peers.

Each row compiles ``train.make_train_step`` for the workload's config and times the median
of ``steps`` steps after compilation and one warm-up step. Model FLOPs come from XLA's cost
analysis of the compiled step; MFU where the device's peak is known (``jaxssl.flops``);
memory from :mod:`jaxssl.benchmarks.memory`.
"""
from __future__ import annotations

import statistics
import sys
import time

from jaxssl.benchmarks import memory, peers as peers_lib
from jaxssl.benchmarks.workloads import WORKLOADS, apply_overrides, cpu_levers


class PremadeViews:
    """Mixin over an image method: its views are the batch's ``"views"`` (float
    ``[B, V, S, S, C]``, made outside the step, V = the spec's view count, one size), split
    into the method's view groups in order, so the row times the step without the
    augmentation, as the peers do on given tensors."""

    def make_views(self, batch, step):
        import jax.numpy as jnp
        views, out, v = batch["views"], {}, 0
        for group in self.spec.groups:
            out[group.name] = jnp.moveaxis(views[:, v:v + group.count], 1, 0)
            v += group.count
        return out


def use_premade_views(setup) -> None:
    """Replace ``setup.method`` by the same method (same config, mesh, data, length) whose
    views come from the batch (:class:`PremadeViews`)."""
    cls = type(setup.method)
    premade = type(f"PremadeViews{cls.__name__}", (PremadeViews, cls), {})
    setup.method = premade(setup.config, setup.mesh, setup.data, setup.total_steps)


def fixed_batch(setup, inputs: str):
    """The device-resident batch every timed step reuses, or None for ``feeder`` rows."""
    import jax
    import numpy as np

    from jaxssl import sharding
    data = setup.config.data  # a text workload's data section has no image_size
    b, s = setup.global_batch, int(data.image_size) if "image_size" in data else 0
    rng = np.random.default_rng(0)
    if inputs == "views":
        return sharding.global_batch_from_local(
            {"views": rng.standard_normal((b, 2, s, s, 3), dtype=np.float32)}, setup.mesh)
    if inputs == "images":
        return sharding.global_batch_from_local(
            {"image": rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8),
             "label": np.zeros((b,), np.int32)}, setup.mesh)
    if inputs == "feeder_once":
        return jax.block_until_ready(setup.feeder(0))
    if inputs == "feeder":
        return None
    raise ValueError(f"Workload.inputs={inputs!r}: use views, images, feeder_once or feeder")


def time_train_step(config, inputs: str, steps: int) -> dict:
    """Compile and time ``jaxssl.train``'s real jitted step for ``config``."""
    import jax

    from jaxssl import flops, train, train_state

    setup = train.Setup(config)
    if inputs == "views":
        use_premade_views(setup)
    state = train_state.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn), donate_argnums=0)
    fixed = fixed_batch(setup, inputs)
    make_batch = (lambda step: fixed) if fixed is not None else setup.feeder
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, make_batch(0)).compile()
    compile_s = time.perf_counter() - t0
    model_flops = flops.compiled_flops(compiled)
    state, m = compiled(state, make_batch(0))
    jax.block_until_ready(m["loss"])
    times = []
    for i in range(1, steps + 1):
        t = time.perf_counter()
        state, m = compiled(state, make_batch(i))
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    dt = statistics.median(times)
    return {"batch": setup.global_batch, "step_ms": dt * 1e3, "steps_per_s": 1 / dt,
            "items_per_s": setup.method.items_per_step() / dt, "unit": setup.method.unit,
            "compile_s": compile_s, "gflop_per_step": (model_flops or 0) / 1e9,
            "mfu": flops.mfu(model_flops, 1.0 / dt, setup.mesh.devices.size),
            "mem_gib": memory.memory_gib(compiled), "loss": float(m["loss"]),
            "device": f"{jax.device_count()}x {jax.devices()[0].device_kind}"}


def train_step_rows(names: list[str], *, batch: int = 0, dtype: str = "float32",
                    overrides: tuple = (), steps: int = 5, peers_dir: str = "",
                    default_peers_dir: str | None = None, threads: int = 2) -> list[dict]:
    """One row per workload (``batch`` 0: its default), and one per peer when ``peers_dir``
    is set: ``ratio`` = jaxssl / peer items/s, or ``peer_note`` saying why there is none."""
    rows = []
    for name in names:
        w = WORKLOADS[name]
        b = batch or w.default_batch
        config = w.build(b, dtype)
        levers = cpu_levers(config, list(overrides))
        apply_overrides(config, list(overrides))
        row = {"workload": name, "levers": ",".join(levers + list(overrides)) or "-",
               **time_train_step(config, w.inputs, steps)}
        print(f"{name}: {row['items_per_s']:.1f} {row['unit']}/s ({row['step_ms']:.0f} ms/step, "
              f"batch {row['batch']}, {row['levers']})", flush=True)
        peer_steps = w.peers if peers_dir else ()
        if not peer_steps:
            rows.append(row)
        for peer in peer_steps:
            res = peers_lib.run_peer(peer, peer.args(b, threads, str(config.model.dtype)),
                                     peers_dir, default_peers_dir)
            prow = dict(row, workload=f"{name} vs {peer.script}")
            if res.items_per_s:
                prow.update(peer_items_per_s=res.items_per_s, peer_line=res.line,
                            ratio=row["items_per_s"] / res.items_per_s)
                print(f"  peer {res.line}\n  ratio {prow['ratio']:.2f}x", flush=True)
            else:
                prow["peer_note"] = res.note
                print(f"  {peer.name}: {res.note}", file=sys.stderr, flush=True)
            rows.append(prow)
    return rows


def format_train_table(rows: list[dict]) -> str:
    cols = ["workload", "device", "batch", "items/s", "steps/s", "step ms", "compile s",
            "GFLOP/step", "MFU", "mem GiB", "peer items/s", "ratio", "levers"]
    lines = [" | ".join(cols)]
    for r in rows:
        lines.append(" | ".join([
            r["workload"], r["device"], str(r["batch"]), f"{r['items_per_s']:.1f} {r['unit']}/s",
            f"{r['steps_per_s']:.3f}", f"{r['step_ms']:.0f}", f"{r['compile_s']:.1f}",
            f"{r['gflop_per_step']:.1f}", f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a",
            f"{r['mem_gib']:.2f}" if r.get("mem_gib") else "n/a",
            f"{r['peer_items_per_s']:.1f}" if r.get("peer_items_per_s") else r.get("peer_note", "-"),
            f"{r['ratio']:.2f}x" if r.get("ratio") else "-", r.get("levers", "-")]))
    return "\n".join(lines)
