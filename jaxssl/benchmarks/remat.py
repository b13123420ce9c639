"""Remat table: step time and memory for ``model.remat`` in (none, full, dots) x dtype."""
from __future__ import annotations

from jaxssl.benchmarks.steps import time_train_step
from jaxssl.benchmarks.workloads import WORKLOADS, apply_overrides, cpu_levers

POLICIES = ("none", "full", "dots")
DTYPES = ("float32", "bfloat16")


def remat_rows(names: list[str], *, batch: int = 0, overrides: tuple = (),
               steps: int = 5) -> list[dict]:
    """One row per workload x dtype x remat policy (``batch`` 0: the workload's default)."""
    rows = []
    for name in names:
        w = WORKLOADS[name]
        b = batch or w.default_batch
        for dtype in DTYPES:
            for policy in POLICIES:
                config = w.build(b, dtype)
                levers = cpu_levers(config, list(overrides))
                apply_overrides(config, [*overrides, f"model.remat={policy}"])
                r = time_train_step(config, w.inputs, steps)
                r.update(workload=name, remat=policy, dtype=dtype, levers=",".join(levers) or "-")
                mem = f"{r['mem_gib']:.3f} GiB" if r.get("mem_gib") else "memory n/a"
                print(f"{name} remat={policy} {dtype}: {r['step_ms']:.0f} ms/step, {mem}", flush=True)
                rows.append(r)
    return rows


def format_remat_table(rows: list[dict]) -> str:
    lines = ["workload | batch | dtype | remat | step ms | items/s | mem GiB | vs none (time, mem)"]
    base = {}
    for r in rows:
        key = (r["workload"], r["dtype"])
        if r["remat"] == "none":
            base[key] = r
        b = base.get(key)
        rel = (f"{r['step_ms'] / b['step_ms']:.2f}x, {r['mem_gib'] / b['mem_gib']:.2f}x"
               if b and r.get("mem_gib") and b.get("mem_gib") else "-")
        lines.append(" | ".join([r["workload"], str(r["batch"]), r["dtype"], r["remat"],
                                 f"{r['step_ms']:.0f}", f"{r['items_per_s']:.1f} {r['unit']}/s",
                                 f"{r['mem_gib']:.3f}" if r.get("mem_gib") else "n/a", rel]))
    return "\n".join(lines)
