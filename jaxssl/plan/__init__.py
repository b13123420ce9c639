"""Plan a preset's run on a TPU slice from a CPU: does it fit, how fast can it be, can the
hosts feed it.

``python scripts/plan.py --config=configs/FILE.py[:VARIANT] --topology=NAME [--config.KEY=V]``

:func:`plan` builds the run exactly as ``jaxssl.main`` does (``train.Setup``: the method,
optimizer, state shardings and jitted step; pretraining and protocol presets alike) on the
compile-only devices of the slice (:mod:`jaxssl.plan.topology`), from abstract data
(:mod:`jaxssl.plan.data`: nothing is read, nothing allocated), lowers the step on
``jax.ShapeDtypeStruct`` state and batch, and has the TPU compiler (libtpu, running on this
CPU) compile it. From the compiled step it reports, per device: the arguments (params,
optimizer state, other state, batch), temporaries and outputs against the device's HBM; the
FLOPs and bytes of one step (XLA's cost analysis); each collective in the HLO with its count
and bytes; the roofline lower bound on the step time, ``max(FLOPs / peak, bytes / HBM
bandwidth)``, the upper bound on images (tokens) per second per chip it implies and the hours
of the whole run at that bound; and the host feed that rate needs. The last line says
whether it fits (exit 0) or not and which levers to try (exit 1). This is MaxText's
``train_compile.py`` for jaxssl's presets; docs/performance.md has the table of the papers'
runs.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import time

from jaxssl.plan.topology import CHIPS, Topology, UnknownTopologyError, resolve  # noqa: F401

GIB = 1024 ** 3

# jaxssl's host path at 224 px, one core (JPEG decode + random-resized crops, HostCropReader
# with one thread, on the benchmark's 500x375 q90 JPEGs): crops per example -> images/s/core.
# ``python -m jaxssl.plan.host``, three runs on one core of an AMD EPYC VM: 1 crop 522, 553,
# 572; 2 crops 351, 328, 404 (the medians, rounded, below).
HOST_DECODE_CROP_PER_CORE = {1: 550.0, 2: 350.0}

INSTALL_HINT = "pip install -e '.[tpu]'"


class MissingLibtpuError(RuntimeError):
    pass


def require_libtpu() -> None:
    """Raise a one-line :class:`MissingLibtpuError` unless libtpu (the TPU compiler) is installed."""
    if importlib.util.find_spec("libtpu") is None:
        raise MissingLibtpuError(
            "planning compiles the step with the TPU compiler from the libtpu package, which "
            f"is not installed; {INSTALL_HINT}")


# ----------------------------------------------------------------------------- collectives
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_OP = re.compile(r"=\s*(?P<type>.*?)\s(?P<op>" + "|".join(_COLLECTIVES) + r")(?P<start>-start)?\(")
_SHAPE = re.compile(r"\b(pred|bf16|f16|f32|f64|s8|s16|s32|s64|u8|u16|u32|u64|f8e4m3fn|f8e5m2)"
                    r"\[([\d,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "bf16": 2, "f16": 2,
          "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}


def _shape_bytes(text: str) -> list[int]:
    return [_BYTES[d] * math.prod(int(x) for x in dims.split(",") if x)
            for d, dims in _SHAPE.findall(text)]


def collectives(hlo_text: str) -> dict[str, dict]:
    """``{kind: {"count", "bytes"}}`` of the collectives in compiled HLO text, per device.

    Bytes are each op's result (an all-gather's gathered output, a reduce-scatter's shard, an
    all-reduce's reduced operands); an async ``-start`` op counts once (its ``-done`` not at
    all), its bytes the largest array of its result tuple.
    """
    out: dict[str, dict] = {}
    for line in hlo_text.splitlines():
        m = _OP.search(line)
        if not m:
            continue
        sizes = _shape_bytes(m.group("type"))
        if m.group("start") and m.group("op") != "all-reduce":
            size = max(sizes, default=0)  # (operand, output[, contexts]) tuples
        else:
            size = sum(sizes)
        entry = out.setdefault(m.group("op"), {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += size
    return out


# ----------------------------------------------------------------------------- the plan
@dataclasses.dataclass
class Plan:
    """Everything :func:`plan` measured (bytes and FLOPs per device, seconds per step)."""
    topology: Topology
    config: object
    param_sharding: str
    device_kind: str
    global_batch: int
    total_steps: int
    items_per_example: int
    unit: str
    args: dict            # {"params", "optimizer state", "other state", "batch"}: bytes/device
    argument_bytes: int   # the compiler's figure (includes padding)
    temp_bytes: int
    output_bytes: int
    alias_bytes: int
    code_bytes: int
    flops: float
    bytes_accessed: float
    collectives: dict
    compile_s: float
    host_cropped: bool
    crops_per_example: int
    compile_error: str = ""  # the TPU compiler's out-of-HBM message (nothing else measured)

    @property
    def hbm_bytes(self) -> float:
        chip = self.topology.chip
        return chip.hbm_gib * GIB / chip.devices_per_chip

    @property
    def peak_bytes(self) -> int:
        """Arguments + outputs not aliased to them (donated state) + temporaries + code."""
        return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes
                + self.code_bytes)

    @property
    def fits(self) -> bool:
        return not self.compile_error and self.peak_bytes <= self.hbm_bytes

    @property
    def step_seconds(self) -> float:
        chip = self.topology.chip
        peak = chip.peak_tflops * 1e12 / chip.devices_per_chip
        bandwidth = chip.hbm_gbps * 1e9 / chip.devices_per_chip
        return max(self.flops / peak, self.bytes_accessed / bandwidth, 1e-12)

    @property
    def bound(self) -> str:
        chip = self.topology.chip
        compute = self.flops / (chip.peak_tflops * 1e12 / chip.devices_per_chip)
        return "compute" if compute >= self.step_seconds else "HBM bandwidth"

    @property
    def items_per_s_per_chip(self) -> float:
        return (self.global_batch * self.items_per_example / self.topology.num_chips
                / self.step_seconds)

    @property
    def hours(self) -> float:
        return self.total_steps * self.step_seconds / 3600.0


def _tree_bytes_per_device(tree) -> int:
    import jax
    import numpy as np
    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total


def plan(config, topology: str | Topology, log=print, hlo_path: str | None = None) -> Plan:
    """Compile ``config``'s train step for ``topology`` and measure it (module docstring);
    ``hlo_path``: also write the compiled HLO text there."""
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # compile-only: no TPU is opened
    require_libtpu()
    topo = resolve(topology) if isinstance(topology, str) else topology
    from jaxssl import methods as methods_lib
    from jaxssl import sharding as sharding_lib
    from jaxssl import train
    from jaxssl.plan.data import abstract_train_data

    methods_lib.validate_config(config, num_devices=topo.num_devices,
                                num_processes=topo.num_hosts)
    devices = topo.devices()
    wanted = int(config.mesh.num_devices) or len(devices)
    mesh = sharding_lib.make_mesh(devices=devices[:wanted])
    setup = train.Setup(config, validated=True, mesh=mesh, build_data=abstract_train_data)
    state, batch = setup.abstract_state, setup.feeder.batch
    log(f"compiling the {config.method} step for {topo.describe()} ...")
    t0 = time.perf_counter()
    lowered = setup.jit_train_step().lower(state, batch)
    try:
        compiled = lowered.compile()
    except Exception as err:  # noqa: BLE001 - the TPU compiler's out-of-HBM verdict is a result
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        compiled, out_of_memory = None, str(err).strip().splitlines()[0]
    else:
        out_of_memory = ""
    compile_s = time.perf_counter() - t0
    if compiled is None:  # "... HLO temporaries (38.40G) exceeds available HBM (15.75G)"
        found = re.search(r"temporaries \(([\d.]+)G\)", out_of_memory)
        temp = int(float(found.group(1)) * GIB) if found else 0
        mem = dataclasses.make_dataclass("Mem", [])()
        for k, v in dict(argument_size_in_bytes=0, temp_size_in_bytes=temp,
                         output_size_in_bytes=0, alias_size_in_bytes=0,
                         generated_code_size_in_bytes=0).items():
            setattr(mem, k, v)
        cost, hlo = {}, ""
    else:
        mem = compiled.memory_analysis()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        hlo = compiled.as_text()
    if hlo_path and hlo:
        with open(hlo_path, "w") as f:
            f.write(hlo)
    other = {"step": state.step, "nonfinite_steps": state.nonfinite_steps,
             "last_nonfinite_step": state.last_nonfinite_step}
    args = {"params": _tree_bytes_per_device(state.params),
            "optimizer state": _tree_bytes_per_device(state.opt_state),
            "other state": _tree_bytes_per_device(state.model_state) + _tree_bytes_per_device(other),
            "batch": _tree_bytes_per_device(batch)}
    method = setup.method
    items = int(method.items_per_step()) // setup.global_batch if setup.global_batch else 1
    crops = 0
    if getattr(setup.data, "host_cropped", False):
        crops = sum(int(s.shape[1]) for k, s in batch.items() if k.startswith("image")
                    and len(s.shape) == 5) or 1
    if compiled is None:
        mem.argument_size_in_bytes = sum(args.values())
    return Plan(
        compile_error=out_of_memory, topology=topo, config=config, param_sharding=setup.param_sharding,
        device_kind=devices[0].device_kind, global_batch=setup.global_batch,
        total_steps=setup.total_steps, items_per_example=max(1, items),
        unit=getattr(method, "unit", "img"), args=args,
        argument_bytes=int(mem.argument_size_in_bytes), temp_bytes=int(mem.temp_size_in_bytes),
        output_bytes=int(mem.output_size_in_bytes), alias_bytes=int(mem.alias_size_in_bytes),
        code_bytes=int(mem.generated_code_size_in_bytes), flops=float(cost.get("flops", 0.0)),
        bytes_accessed=float(cost.get("bytes accessed", 0.0)),
        collectives=collectives(hlo), compile_s=compile_s,
        host_cropped=bool(getattr(setup.data, "host_cropped", False)), crops_per_example=crops)


# ----------------------------------------------------------------------------- report
def _gib(b: float) -> str:
    return f"{b / GIB:.2f}"


def _size(b: float) -> str:
    return f"{b / GIB:.2f} GiB" if b >= GIB / 10 else f"{b / 2**20:.1f} MiB"


def _levers(p: Plan) -> str:
    m = p.config.model
    levers = []
    if p.param_sharding == "replicated":
        levers.append("--config.mesh.param_sharding=fsdp (shards params and optimizer state)")
    if "remat" in m and str(m.remat) in ("", "none"):
        levers.append("--config.model.remat=full (recompute activations in the backward pass)")
    per_device = p.global_batch // max(1, p.topology.num_devices)
    if per_device > 1:
        levers.append(f"a smaller per-device batch (now {per_device}: a larger slice, or "
                      "--config.train.batch_size)")
    if "dtype" in m and m.dtype != "bfloat16":
        levers.append("--config.model.dtype=bfloat16")
    return "; ".join(levers) or "a larger slice"


def report_lines(p: Plan) -> list[str]:
    """The plan as printed, last line ``fits: ...`` or ``does not fit: ...``."""
    t, chip = p.topology, p.topology.chip
    if p.compile_error:
        return [
            f"slice: {t.describe()}",
            f"run: {p.config.method}, global batch {p.global_batch} "
            f"({p.global_batch // t.num_devices} per device), state {p.param_sharding}",
            "per device: " + ", ".join(f"{k} {_size(v)}" for k, v in p.args.items()),
            f"the TPU compiler: {p.compile_error}",
            f"does not fit: {_gib(p.peak_bytes)} of {_gib(p.hbm_bytes)} GiB per device; try "
            f"{_levers(p)}"]
    lines = [
        f"slice: {t.describe()}; compiled for {t.num_devices} x {p.device_kind} in "
        f"{p.compile_s:.0f} s",
        f"run: {p.config.method}, global batch {p.global_batch} "
        f"({p.global_batch // t.num_devices} per device), {p.total_steps} steps, state "
        f"{p.param_sharding}",
        "per device: " + ", ".join(f"{k} {_size(v)}" for k, v in p.args.items())
        + f"; arguments {_size(p.argument_bytes)} (compiler), temporaries {_size(p.temp_bytes)}, "
        f"outputs {_size(p.output_bytes)} ({_size(p.alias_bytes)} aliased to donated "
        f"arguments), code {_size(p.code_bytes)}; total {_size(p.peak_bytes)} of "
        f"{_size(p.hbm_bytes)} HBM",
        f"compute per device per step: {p.flops / 1e12:.4g} TFLOP, "
        f"{_size(p.bytes_accessed)} accessed (XLA cost analysis)",
    ]
    if p.collectives:
        lines.append("collectives per device per step: " + ", ".join(
            f"{k} x{v['count']} ({v['bytes'] / 2**20:.1f} MiB)"
            for k, v in sorted(p.collectives.items())))
    else:
        lines.append("collectives per device per step: none")
    unit = "tok" if p.unit == "tok" else "img"
    lines.append(
        f"roofline (TPU {chip.name}: {chip.peak_tflops:g} TFLOP/s bf16, {chip.hbm_gbps:g} GB/s "
        f"HBM per chip; {chip.source}): step >= {p.step_seconds * 1e3:.3g} ms "
        f"({p.bound}-bound), <= {p.items_per_s_per_chip:,.0f} {unit}/s per chip, whole run "
        f">= {p.hours:.3g} h")
    per_host = p.items_per_s_per_chip * t.chips_per_host
    if p.host_cropped:
        rate = HOST_DECODE_CROP_PER_CORE[min(2, max(1, p.crops_per_example))]
        cores = per_host / rate
        verdict = ("the host can feed it" if cores <= chip.host_vcpus else
                   "the host path cannot keep up at this rate")
        more = "at least " if p.crops_per_example > 2 else ""
        lines.append(
            f"host feed: {per_host:,.0f} img/s per host ({t.chips_per_host} chips x "
            f"{p.items_per_s_per_chip:,.0f}), {p.crops_per_example} crops per image: {more}"
            f"{cores:.0f} cores at jaxssl's {rate:g} img/s/core (JPEG decode + crops, 224 px) "
            f"of the host's {chip.host_vcpus} vCPUs: {verdict}")
    else:
        what = "packed rows" if unit == "tok" else "the split"
        lines.append(f"host feed: none per step ({what} held on the device)")
    used = f"{_gib(p.peak_bytes)} of {_gib(p.hbm_bytes)} GiB per device"
    if p.fits:
        lines.append(f"fits: {used} ({100 * p.peak_bytes / p.hbm_bytes:.0f}% of HBM) on "
                     f"{t.name}")
    else:
        lines.append(f"does not fit: {used}; try {_levers(p)}")
    return lines


__all__ = ["plan", "Plan", "report_lines", "collectives", "require_libtpu",
           "MissingLibtpuError", "UnknownTopologyError", "HOST_DECODE_CROP_PER_CORE", "resolve",
           "CHIPS"]
