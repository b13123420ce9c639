"""What makes a workdir self-describing: the resolved config and the environment of the run.

``WORKDIR/config.json`` holds the resolved config; ``WORKDIR/run_info.json`` the jaxssl git
revision, package versions, and the device kind, count and process count of each (re)start.
Both are written by process 0 only, to a local folder or a URL (:mod:`jaxssl.paths`).
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time

import jax

from jaxssl import paths

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections",
            "tensorflow-datasets", "tensorflow-cpu", "tensorflow", "numpy", "tokenizers")


def git_revision() -> str:
    """The jaxssl source revision (``git describe``-like), or 'unknown' outside a checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def environment() -> dict:
    devices = jax.devices()
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "jaxssl_git_revision": git_revision(),
        "packages": package_versions(),
        "device_kind": devices[0].device_kind,
        "platform": devices[0].platform,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        "command": sys.argv,
    }


def config_json(config) -> str:
    return config.to_json_best_effort(indent=2, sort_keys=True)


def record_start(workdir: paths.PathLike, config) -> None:
    """Write config.json and append this start's environment to run_info.json (process 0)."""
    if jax.process_index() != 0:
        return
    workdir = paths.resolve(workdir)
    paths.makedirs(workdir)
    paths.write_text(workdir / "config.json", config_json(config))
    path = workdir / "run_info.json"
    starts = []
    if path.exists():
        starts = json.loads(path.read_text()).get("starts", [])
    starts.append(environment())
    paths.write_text(path, json.dumps({"starts": starts}, indent=2))
