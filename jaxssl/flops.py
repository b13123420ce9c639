"""Model FLOPs and device peaks for MFU (docs/performance.md: FLOP = 2 x multiply-add).

MFU = model FLOPs per step / (step time x peak FLOP/s of all devices). Model FLOPs count the
forward and backward passes of the model as written (3 x forward), never rematerialisation.
"""
from __future__ import annotations

import jax

# Dense bf16 peak FLOP/s per device (vendor figures).
PEAK_BF16_FLOPS = {
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "V100": 125e12, "L4": 121e12,
    "TPU v3": 123e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v5p": 459e12, "TPU v6 lite": 918e12,
}


def device_peak_flops(device=None) -> float | None:
    """Peak dense bf16 FLOP/s of one device, or None when unknown (e.g. CPU)."""
    device = device or jax.devices()[0]
    kind = device.device_kind
    for name, peak in sorted(PEAK_BF16_FLOPS.items(), key=lambda kv: -len(kv[0])):
        if name.lower() in kind.lower():
            return peak
    return None


def mfu(flops_per_step: float | None, steps_per_s: float, num_devices: int | None = None) -> float | None:
    """Model-FLOP utilisation in [0, 1], or None when FLOPs or the device peak are unknown."""
    peak = device_peak_flops()
    if not flops_per_step or peak is None or steps_per_s <= 0:
        return None
    n = num_devices or jax.device_count()
    return flops_per_step * steps_per_s / (peak * n)


def compiled_flops(compiled) -> float | None:
    """FLOPs XLA's cost analysis reports for a compiled step (``jit(f).lower(...).compile()``)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement cost analysis
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None
