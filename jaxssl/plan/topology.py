"""TPU slices by name, their compile-only devices, and the chips' published figures.

A slice is named as Cloud TPU names it (``v3-128``: 128 TensorCores; ``v4-32``: 32 TensorCores
= 16 chips; ``v5litepod-16`` / ``v6e-16``: 16 chips) or as libtpu does (``v4:2x2x4``: the chip
grid). :func:`resolve` maps either to the libtpu topology and the options MaxText's
``accelerator_to_spec_map.py`` passes for it; :meth:`Topology.devices` asks libtpu for the
slice's compile-only devices (no TPU needed: the TPU compiler runs on this CPU).

Device layout, as a run has it: v2 and v3 chips expose each of their two TensorCores as a JAX
device (v3-128 = 128 devices of 16 GiB); v4 and v5p run *megacore*, one device per chip
spanning both TensorCores (v4-32 = 16 devices of 32 GiB). libtpu's default topology lists a
v4 chip's two cores as two devices; the plan asks for ``chip_config_name='megacore'`` so it
compiles for the 16-device layout a v4-32 run has. v5e and v6e chips have one TensorCore.

Chip figures (peak dense bf16 FLOP/s, HBM, HBM bandwidth, per chip; chips and vCPUs per host
VM) are from the Cloud TPU system-architecture pages cited in :data:`CHIPS` and
docs/performance.md.
"""
from __future__ import annotations

import dataclasses
import math
import re


@dataclasses.dataclass(frozen=True)
class Chip:
    """One TPU generation. ``peak_tflops``, ``hbm_gib``, ``hbm_gbps``: per chip;
    ``devices_per_chip``: JAX devices a chip shows in a run (2 for v2/v3, 1 otherwise);
    ``chips_per_host`` / ``host_vcpus``: the host VM of a multi-host slice."""
    name: str
    libtpu: str            # libtpu's prefix: 'v4' in 'v4:2x2x4'
    peak_tflops: float
    hbm_gib: float
    hbm_gbps: float
    devices_per_chip: int
    chips_per_host: int
    host_vcpus: int
    megacore: bool
    cloud_counts_cores: bool  # Cloud name 'v4-32' counts TensorCores (2 per chip), not chips
    source: str


CHIPS = {
    "v2": Chip("v2", "v2", 45.0, 16.0, 600.0, 2, 4, 96, False, True,
               "https://cloud.google.com/tpu/docs/v2"),
    "v3": Chip("v3", "v3", 123.0, 32.0, 900.0, 2, 4, 96, False, True,
               "https://cloud.google.com/tpu/docs/v3"),
    "v4": Chip("v4", "v4", 275.0, 32.0, 1200.0, 1, 4, 240, True, True,
               "https://cloud.google.com/tpu/docs/v4"),
    "v5p": Chip("v5p", "v5", 459.0, 95.0, 2765.0, 1, 4, 208, True, True,
                "https://cloud.google.com/tpu/docs/v5p"),
    "v5e": Chip("v5e", "v5e", 197.0, 16.0, 819.0, 1, 8, 224, False, False,
                "https://cloud.google.com/tpu/docs/v5e"),
    "v6e": Chip("v6e", "v6e", 918.0, 32.0, 1640.0, 1, 4, 180, False, False,
                "https://cloud.google.com/tpu/docs/v6e"),
}
_CLOUD_PREFIX = {"v2": "v2", "v3": "v3", "v4": "v4", "v5p": "v5p", "v5litepod": "v5e",
                 "v5e": "v5e", "v6e": "v6e"}
_LIBTPU_PREFIX = {c.libtpu: c.name for c in CHIPS.values()}

# chips -> grid of the slice shapes Cloud TPU offers (2-D for v2/v3/v5e/v6e, 3-D for v4/v5p)
_GRIDS_2D = {4: (2, 2), 16: (4, 4), 64: (8, 8), 128: (8, 16), 256: (16, 16), 512: (16, 32),
             1024: (32, 32)}
_GRIDS_LITE = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8),
               128: (8, 16), 256: (16, 16)}
_GRIDS_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4),
             128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16),
             2048: (8, 16, 16), 4096: (16, 16, 16)}


def _grids(chip: Chip) -> dict:
    if chip.name in ("v4", "v5p"):
        return _GRIDS_3D
    if chip.name in ("v5e", "v6e"):
        return _GRIDS_LITE
    return {k: v for k, v in _GRIDS_2D.items() if k <= (512 if chip.name == "v3" else 256)}


def cloud_names() -> list[str]:
    """Every Cloud TPU slice name :func:`resolve` knows."""
    out = []
    for prefix, chip_name in (("v2", "v2"), ("v3", "v3"), ("v4", "v4"), ("v5p", "v5p"),
                              ("v5litepod", "v5e"), ("v6e", "v6e")):
        chip = CHIPS[chip_name]
        per = 2 if chip.cloud_counts_cores else 1
        out += [f"{prefix}-{n * per}" for n in sorted(_grids(chip))]
    return out


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice: its chip, grid and the libtpu name the compiler is asked for."""
    name: str              # as given
    chip: Chip
    grid: tuple[int, ...]

    @property
    def libtpu_name(self) -> str:
        return f"{self.chip.libtpu}:{'x'.join(str(d) for d in self.grid)}"

    @property
    def num_chips(self) -> int:
        return math.prod(self.grid)

    @property
    def num_devices(self) -> int:
        return self.num_chips * self.chip.devices_per_chip

    @property
    def num_hosts(self) -> int:
        return max(1, math.ceil(self.num_chips / self.chip.chips_per_host))

    @property
    def chips_per_host(self) -> int:
        return min(self.num_chips, self.chip.chips_per_host)

    def topology_options(self) -> dict:
        """MaxText's ``get_topology_desc`` options for this slice (``{}`` for v2 / v3)."""
        if self.chip.name in ("v2", "v3"):
            return {}
        grid = tuple(self.grid) + (1,) * (3 - len(self.grid))
        bounds = (2, 2, 1) if self.num_chips >= 4 else (1, 1, 1)
        if self.chip.megacore:
            wrap = (min(grid) >= 4,) * 3
        else:  # 2-D slices: a 16-long dimension wraps around (MaxText's v5e / v6e table)
            wrap = tuple(d >= 16 for d in grid[:2]) + (False,)
        return dict(chip_config_name="megacore" if self.chip.megacore else "default",
                    chips_per_host_bounds=bounds, wrap=wrap, num_slices=1)

    def devices(self) -> list:
        """The slice's compile-only devices, in the layout a run has (module docstring)."""
        from jax.experimental import topologies
        desc = topologies.get_topology_desc(platform="tpu", topology_name=self.libtpu_name,
                                            **self.topology_options())
        devices = list(desc.devices)
        if len(devices) != self.num_devices:
            raise RuntimeError(f"libtpu lists {len(devices)} devices for {self.libtpu_name}, "
                               f"expected {self.num_devices} ({self.chip.devices_per_chip} per chip)")
        return devices

    def describe(self) -> str:
        layout = ("megacore: one device per chip" if self.chip.megacore else
                  "one device per TensorCore" if self.chip.devices_per_chip > 1 else
                  "one TensorCore per chip")
        return (f"{self.name} = libtpu {self.libtpu_name}: {self.num_chips} TPU {self.chip.name} "
                f"chips, {self.num_devices} devices ({layout}), {self.num_hosts} host(s) of "
                f"{self.chips_per_host} chips")


class UnknownTopologyError(ValueError):
    pass


def unknown(name: str) -> UnknownTopologyError:
    return UnknownTopologyError(
        f"--topology={name!r} is not a known TPU slice; use a Cloud TPU name "
        f"({', '.join(cloud_names())}) or libtpu's form "
        f"({', '.join(sorted(_LIBTPU_PREFIX))}:AxB[xC], e.g. v4:2x2x4, v5e:4x4)")


def resolve(name: str) -> Topology:
    """The :class:`Topology` of a Cloud TPU name or a libtpu ``PREFIX:AxBxC`` name."""
    name = name.strip()
    m = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v5e|v6e)-(\d+)", name)
    if m:
        chip = CHIPS[_CLOUD_PREFIX[m.group(1)]]
        count = int(m.group(2))
        per = 2 if chip.cloud_counts_cores else 1
        if count % per or count // per not in _grids(chip):
            raise unknown(name)
        return Topology(name, chip, _grids(chip)[count // per])
    m = re.fullmatch(r"(v2|v3|v4|v5|v5e|v6e):(\d+(?:x\d+){1,2})", name)
    if m:
        chip = CHIPS[_LIBTPU_PREFIX[m.group(1)]]
        grid = tuple(int(d) for d in m.group(2).split("x"))
        want = 3 if chip.name in ("v4", "v5p") else 2
        if len(grid) != want or min(grid) < 1:
            raise unknown(name)
        return Topology(name, chip, grid)
    raise unknown(name)


__all__ = ["Chip", "CHIPS", "Topology", "resolve", "cloud_names", "UnknownTopologyError"]
