"""Parameter sharding (``mesh.param_sharding='fsdp'``): the same step as replicated state.

On 8 fake CPU devices: 3 steps of the real jitted step with replicated vs FSDP-sharded state
agree on every leaf (params, optimizer state, BatchNorm statistics, EMA teacher) to 1e-6
relative for an image method with BN (SimCLR), a ViT with an EMA teacher (DINO) and BERT MLM;
checkpoints written under one layout resume under the other (orbax restores into the new
shardings); a resumed FSDP run is bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import shutil

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxssl import checkpoint, sharding, train
from jaxssl.config import load_preset

TINY = dict(train__batch_size=16, train__num_steps=3, train__num_epochs=0.0,
            mesh__num_devices=8, optim__warmup_epochs=0.0, eval__enabled=False)
CONFIGS = {
    # small conv backbone + SimCLR v1 head, BatchNorm in both
    "simclr_digits": ("simclr_digits", {}),
    # a one-block ViT with DINO's EMA teacher and SGD (main_dino.py --optimizer sgd), multi-crop (2 x 16 px + 4 x 8 px)
    "dino_vit": ("dino_digits", dict(
        model__backbone="vit_tiny", model__vit_hidden_dim=32, model__vit_depth=1,
        model__vit_num_heads=2, model__patch_size=4, dino__out_dim=64,
        dino__head_hidden_dim=32, dino__head_bottleneck_dim=16, dino__head_use_bn=False,
        optim__name="sgd", optim__base_lr=0.03, optim__weight_decay=1e-4)),
    # BERT MLM, one 32-wide layer, 32-token rows, a 300-token vocabulary
    "bert_mlm": ("bert_pydoc", dict(
        data__vocab_size=300, data__seq_len=32, model__num_layers=1, model__hidden_size=32,
        model__num_heads=2, model__intermediate_size=64, model__max_position=64,
        model__dtype="float32", mlm__max_predictions=5, optim__warmup_fraction=0.5)),
}


def config_of(name, param_sharding, **extra):
    preset, overrides = CONFIGS[name]
    overrides = dict(TINY, **overrides, mesh__param_sharding=param_sharding, **extra)
    if preset == "bert_pydoc":
        overrides.pop("optim__warmup_epochs")
    return load_preset(preset, **overrides)


def run_steps(config, steps=3):
    setup = train.Setup(config)
    state = setup.fresh_state()
    step_fn = setup.jit_train_step()
    for s in range(steps):
        state, _ = step_fn(state, setup.feeder(s))
    return setup, jax.block_until_ready(state)


def leaves(tree):
    return {checkpoint.path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_states_close(a, b, rtol=1e-6, atol=1e-7):
    """Every leaf: ``|a - b| <= rtol |a| + atol sqrt(n)`` in the 2-norm, i.e. 1e-6 relative
    with ``allclose``'s absolute floor for leaves near 0 (a reduce-scatter sums the gradient in
    another order than an all-reduce, so single elements may differ in the last bits)."""
    fa, fb = leaves(a), leaves(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        x, y = np.asarray(fa[k], np.float64), np.asarray(fb[k], np.float64)
        err, size = np.linalg.norm((x - y).ravel()), np.linalg.norm(x.ravel())
        assert err <= rtol * size + atol * np.sqrt(x.size), \
            f"{k}: |a - b| = {err:.3g}, |a| = {size:.3g}"


def sharded_fraction(state) -> float:
    """Bytes a device holds / bytes of the whole state."""
    whole = held = 0
    for x in jax.tree.leaves(state):
        whole += x.size * x.dtype.itemsize
        held += int(np.prod(x.sharding.shard_shape(x.shape))) * x.dtype.itemsize
    return held / whole


def test_fsdp_spec_splits_the_largest_divisible_dimension():
    assert sharding.fsdp_spec((3, 3, 16, 64), 8) == P(None, None, None, "data")
    assert sharding.fsdp_spec((64, 16), 8) == P("data", None)
    assert sharding.fsdp_spec((24, 10), 8) == P("data", None)      # 10 is not divisible
    assert sharding.fsdp_spec((32, 32), 8) == P("data", None)      # a tie: the first
    assert sharding.fsdp_spec((10,), 8) == P()                      # nothing divisible
    assert sharding.fsdp_spec((), 8) == P()                         # scalars
    assert sharding.fsdp_spec((4,), 8) == P()                       # smaller than the axis
    assert sharding.fsdp_spec((64,), 1) == P()                      # one device


def test_param_sharding_is_validated():
    from jaxssl import methods
    with pytest.raises(ValueError, match=r"mesh\.param_sharding='zero3'.*'fsdp'"):
        methods.validate_config(load_preset("simclr_digits", mesh__param_sharding="zero3"))


@pytest.mark.slow  # two setups and compiles on 8 devices (30-60 s of CPU each)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fsdp_steps_equal_replicated_steps(name, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSSL_CACHE_DIR", str(tmp_path))
    _, rep = run_steps(config_of(name, "replicated"))
    setup, fsdp = run_steps(config_of(name, "fsdp"))
    assert_states_close(rep, fsdp)
    # the state really is spread: each device holds far less than the whole
    assert sharded_fraction(rep) == 1.0
    assert sharded_fraction(fsdp) < 0.3
    want = jax.tree.map(lambda s: s.sharding, setup.abstract_state)
    got = jax.tree.map(lambda x: x.sharding, fsdp)
    assert all(a.is_equivalent_to(b, x.ndim) for a, b, x in
               zip(jax.tree.leaves(want), jax.tree.leaves(got), jax.tree.leaves(fsdp)))
    if name == "dino_vit":
        teacher = leaves(fsdp.model_state["teacher"])
        assert any("data" in tuple(x.sharding.spec) for x in teacher.values())


def _truncate_to(workdir, step):
    """Keep only the checkpoints up to ``step`` (the run 'stopped' there)."""
    ckpt = checkpoint.Checkpointer(workdir)
    later = [s for s in ckpt.all_steps() if s > step]
    ckpt.close()
    for s in later:
        shutil.rmtree(f"{workdir}/checkpoints/{s}")


def _final(workdir):
    tree, _ = checkpoint.load_tree(workdir)
    return tree


@pytest.mark.slow
def test_checkpoints_cross_layouts_and_fsdp_resume_is_bitwise(tmp_path):
    """replicated 3 steps, fsdp 3 steps; resume step 2 of each under the other layout (and
    the fsdp one under fsdp): the final states agree (bitwise for fsdp -> fsdp)."""
    def cfg(mode):
        return config_of("simclr_digits", mode, train__checkpoint_every_steps=2,
                         train__log_every_steps=1)

    runs = {}
    for mode in ("replicated", "fsdp"):
        runs[mode] = str(tmp_path / mode)
        train.run(cfg(mode), runs[mode])
    for saved, resumed in (("replicated", "fsdp"), ("fsdp", "replicated"), ("fsdp", "fsdp")):
        work = str(tmp_path / f"{saved}_then_{resumed}")
        shutil.copytree(runs[saved], work)
        _truncate_to(work, 2)
        # the restore lands in the new layout
        setup = train.Setup(cfg(resumed))
        ckpt = checkpoint.Checkpointer(work)
        state = ckpt.restore(2, setup.abstract_state)
        ckpt.close()
        for want, x in zip(jax.tree.leaves(setup.abstract_state), jax.tree.leaves(state)):
            assert x.sharding.is_equivalent_to(want.sharding, x.ndim)
        train.run(cfg(resumed), work)
        a, b = leaves(_final(runs[resumed])), leaves(_final(work))
        assert int(np.asarray(b["step"])) == 3
        for k in a:
            if saved == resumed:
                np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
            else:
                assert_states_close({k: a[k]}, {k: b[k]})
