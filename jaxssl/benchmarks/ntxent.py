"""NT-Xent table: loss + gradient at large global batches, ``direct`` vs ``blockwise``.

Runs in a child process with ``devices`` fake CPU devices (``python -m
jaxssl.benchmarks.ntxent --batches ...`` prints its rows as JSON), or on the real devices.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from jaxssl.benchmarks import memory, worker


def measure(batches: list[int], dim: int, block_size: int, budget_gib: float) -> list[dict]:
    """NT-Xent loss + gradient at global batch N (2N views) on the mesh of all devices.

    ``direct``: ``losses.nt_xent`` under jit (XLA partitions the [2N, 2N] similarity matrix);
    ``blockwise``: ``losses.nt_xent_blockwise`` (shard_map, gathered columns, chunked online
    logsumexp). Memory is XLA's per-device buffer total of the compiled program; a form is
    only run when all devices' buffers fit in ``budget_gib`` of host memory.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxssl import losses, sharding

    mesh = sharding.make_mesh()
    devices = mesh.devices.size
    rows = []
    for n in batches:
        key = jax.random.key(n)
        za = jax.device_put(jax.random.normal(key, (n, dim)), NamedSharding(mesh, P("data")))
        zb = jax.device_put(jax.random.normal(jax.random.fold_in(key, 1), (n, dim)),
                            NamedSharding(mesh, P("data")))
        forms = {
            "direct": lambda a, b: losses.nt_xent(a, b, 0.1),
            "blockwise": lambda a, b: losses.nt_xent_blockwise(a, b, 0.1, mesh=mesh,
                                                               block_size=block_size),
        }
        values = {}
        for form, loss in forms.items():
            f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
            t = time.perf_counter()
            compiled = f.lower(za, zb).compile()
            compile_s = time.perf_counter() - t
            gib = memory.xla_buffer_gib(compiled)
            row = {"global_batch": n, "views": 2 * n, "devices": devices, "form": form,
                   "mem_gib_per_device": gib, "compile_s": compile_s}
            if gib is not None and gib * devices > budget_gib:
                row["skipped"] = f"needs {gib * devices:.1f} GiB of host memory for {devices} devices"
            else:
                out = compiled(za, zb)
                jax.block_until_ready(out)
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    out = compiled(za, zb)
                    jax.block_until_ready(out)
                    times.append(time.perf_counter() - t)
                row["time_ms"] = statistics.median(times) * 1e3
                row["loss"] = float(out[0])
                values[form] = out
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        if len(values) == 2:
            (l0, g0), (l1, g1) = values["direct"], values["blockwise"]
            diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(g0, g1))
            scale = max(float(jnp.max(jnp.abs(x))) for x in g0)
            rows[-1]["max_grad_rel_diff_vs_direct"] = diff / scale
            rows[-1]["loss_diff_vs_direct"] = abs(float(l0) - float(l1))
        del za, zb
    return rows


def ntxent_rows(batches: str = "4096,8192,16384", devices: int = 8, block_size: int = 4096,
                budget_gib: float = 12.0) -> list[dict]:
    """:func:`measure` in a child with ``devices`` fake CPU devices (0: the real devices)."""
    env = worker.cpu_env(devices) if devices else {}
    return worker.run_module("jaxssl.benchmarks.ntxent",
                             ["--batches", batches, "--block", str(block_size),
                              "--budget-gib", str(budget_gib)], env=env)


def format_ntxent_table(rows: list[dict]) -> str:
    lines = ["global batch | views | devices | form | XLA buffers GiB/device | loss+grad ms | note"]
    for r in rows:
        note = r.get("skipped", "")
        if "max_grad_rel_diff_vs_direct" in r:
            note = (f"loss diff {r['loss_diff_vs_direct']:.1e}, max grad diff "
                    f"{r['max_grad_rel_diff_vs_direct']:.1e} (rel) vs direct")
        lines.append(" | ".join([
            str(r["global_batch"]), str(r["views"]), str(r["devices"]), r["form"],
            f"{r['mem_gib_per_device']:.3f}" if r.get("mem_gib_per_device") is not None else "n/a",
            f"{r['time_ms']:.0f}" if "time_ms" in r else "-", note]))
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="NT-Xent rows on this process's devices, as JSON")
    p.add_argument("--batches", default="4096,8192,16384")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--block", type=int, default=4096)
    p.add_argument("--budget-gib", type=float, default=12.0)
    a = p.parse_args(argv)
    print(json.dumps(measure([int(x) for x in a.batches.split(",")], a.dim, a.block, a.budget_gib)))


if __name__ == "__main__":
    main()
