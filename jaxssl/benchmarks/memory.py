"""Memory of a compiled program: the device's peak where it reports one, else XLA's buffers."""
from __future__ import annotations


def memory_gib(compiled) -> float | None:
    """Peak device memory in GiB if the device reports it, else XLA's buffers of ``compiled``."""
    import jax
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # CPU devices may not implement it
        stats = None
    if stats and stats.get("peak_bytes_in_use"):
        return stats["peak_bytes_in_use"] / 2**30
    return xla_buffer_gib(compiled)


def xla_buffer_gib(compiled) -> float | None:
    """Arguments + outputs + temporaries - aliased, per device, from XLA's memory analysis."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return total / 2**30
