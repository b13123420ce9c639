"""Run a benchmark module in a fresh Python process and read back the rows it prints.

Tables that need their own JAX set-up (one pinned core, or N fake CPU devices) run as
``python -m jaxssl.benchmarks.<module> ARGS`` in a child process; the child prints its rows
as one JSON list on its last stdout line. The child imports the same ``jaxssl`` as this
process (its folder goes first on ``PYTHONPATH``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys


def run_module(module: str, args: list[str], env: dict | None = None, pin_one_core: bool = False,
               timeout_s: int = 3600) -> list[dict]:
    """``python -m module args`` with ``env`` added; returns its last stdout line as JSON."""
    import jaxssl
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(jaxssl.__file__)))
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", module, *args]
    if pin_one_core and hasattr(os, "sched_getaffinity"):
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout_s)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(cmd)} failed (exit {out.returncode}):\n"
                           f"{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_env(devices: int, extra_xla_flags: str = "") -> dict:
    """Environment of a child that runs on ``devices`` CPU devices."""
    flags = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), extra_xla_flags,
                                 f"--xla_force_host_platform_device_count={devices}") if f)
    return {"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices), "XLA_FLAGS": flags}
