"""The peers jaxssl's benchmark rows are compared with, and how to run them.

The peer step scripts sit beside this file (plain scripts, run with a peer environment's
python, never imported by jaxssl):

- ``torch_simclr_step.py``: torchvision ResNet-18 (CIFAR stem) + lightly's SimCLR head and
  NT-Xent loss, SGD; ``--bf16`` runs the forward under ``torch.autocast``;
- ``torch_mlm_step.py``: Hugging Face ``BertForMaskedLM`` (bert-base, random init), AdamW;
- ``flax_mlm_step.py``: Hugging Face ``FlaxBertForMaskedLM`` (transformers<5), optax AdamW, jit;
- ``lightly_augment.py``: lightly's ``SimCLRTransform`` per core at 32 and 224 px.

Each prints one line with its throughput (``img/s``, ``tok/s`` or ``images/s/core``), or
exits with :data:`NOT_INSTALLED_EXIT` when its libraries are missing. The environments are
built by ``bash scripts/setup_peers.sh`` (``torch/`` and ``flax/`` under ``.peers/`` of the
checkout by default).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from typing import Callable

SCRIPTS_DIR = os.path.dirname(os.path.abspath(__file__))
NOT_INSTALLED_EXIT = 3
SETUP_COMMAND = "bash scripts/setup_peers.sh"


@dataclasses.dataclass(frozen=True)
class PeerStep:
    """One peer: ``env`` (``torch`` | ``flax``), its ``script`` here, and
    ``args(batch, threads, dtype) -> argv`` with the workload's shapes."""
    env: str
    script: str
    args: Callable[[int, int, str], list[str]]
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.script


@dataclasses.dataclass(frozen=True)
class PeerResult:
    """``items_per_s`` and the peer's ``line`` when it ran, else ``missing`` (what to run)
    or ``error`` (its output's tail)."""
    items_per_s: float | None = None
    line: str = ""
    text: str = ""
    missing: str = ""
    error: str = ""

    @property
    def note(self) -> str:
        """What the table prints in place of the peer's figure when there is none."""
        if self.missing:
            return f"peer not installed: run {self.missing}"
        if self.error:
            return "peer failed (see stderr)"
        return ""


def setup_command(peers_dir: str, env: str, default_dir: str | None = None) -> str:
    """The command that builds environment ``env`` under ``peers_dir``."""
    same = default_dir and os.path.abspath(peers_dir) == os.path.abspath(default_dir)
    return (f"{SETUP_COMMAND} {env}" if same else
            f"PEERS_DIR={peers_dir} {SETUP_COMMAND} {env}")


def run_peer(peer: PeerStep, argv: list[str], peers_dir: str, default_dir: str | None = None,
             pattern: str = r"([\d.]+) (?:img|tok)/s", timeout_s: int = 1800) -> PeerResult:
    """Run ``peer``'s script with ``peers_dir/<env>/bin/python``; its throughput is the first
    match of ``pattern``. A missing environment or library gives ``PeerResult.missing``."""
    python = os.path.join(peers_dir, peer.env, "bin", "python")
    script = os.path.join(SCRIPTS_DIR, peer.script)
    fix = setup_command(peers_dir, peer.env, default_dir)
    if not os.path.exists(python):
        print(f"peer {peer.name} not installed: {python} does not exist; run {fix}",
              file=sys.stderr, flush=True)
        return PeerResult(missing=fix)
    out = subprocess.run([python, script, *argv], capture_output=True, text=True, timeout=timeout_s)
    text = out.stdout + out.stderr
    if out.returncode == NOT_INSTALLED_EXIT:
        print(f"peer {peer.name} not installed in {python}: {text.strip()[-500:]}; run {fix}",
              file=sys.stderr, flush=True)
        return PeerResult(missing=fix, text=text)
    m = re.search(pattern, text)
    if out.returncode != 0 or not m:
        print(f"peer {peer.name} failed (exit {out.returncode}):\n{text[-2000:]}",
              file=sys.stderr, flush=True)
        return PeerResult(error=text[-2000:], text=text)
    line = next((ln for ln in text.splitlines() if m.group(0) in ln), m.group(0))
    return PeerResult(items_per_s=float(m.group(1)), line=line.strip(), text=text)

