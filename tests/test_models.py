"""Tests for jaxssl.models: ResNet, SmallCNN, projection heads, ViT and the backbone registry.

References are independent of the code under test: torchvision's / timm's documented
parameter counts (and the architecture formulas behind them), plain numpy forward passes,
MAE's numpy ``get_2d_sincos_pos_embed``, and per-shard single-device runs for BN.
Shapes are tiny; parameter counts of full-size models use ``jax.eval_shape`` (no compute).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxssl.models import heads, registry
from jaxssl.models.resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50
from jaxssl.models.small_cnn import SmallCNN
from jaxssl.models.vit import (EncoderBlock, VisionTransformer, sincos_2d_position_embedding,
                               vit_base, vit_small, vit_tiny)
from jaxssl.sharding import batch_sharding, make_mesh, replicate

# Parameter-init key. 'rbg' (XLA's RngBitGenerator) instead of the default threefry: the
# values are just as random for these tests, and XLA:CPU compiles a model's init ~5x faster.
KEY = jax.random.key(0, impl="rbg")


def n_params(tree):
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def abstract_init(model, shape, **kw):
    return jax.eval_shape(lambda: model.init(KEY, jnp.zeros(shape), **kw))


def abstract_init_apply(model, x, init_kw, **apply_kw):
    """Shapes and dtypes of (variables, model.apply(variables, x, **apply_kw)); no compute."""
    def init_apply():
        variables = model.init(KEY, x, **init_kw)
        return variables, model.apply(variables, x, **apply_kw)
    return jax.eval_shape(init_apply)


def dtypes(tree):
    return {a.dtype for a in jax.tree.leaves(tree)}


# Tests run models eagerly: XLA:CPU compiles each op once per shape and reuses it across
# tests, which on a 2-core machine is cheaper than compiling a jitted program per call.
def init_vars(model, x, **kw):
    return model.init(KEY, x, **kw)


def run(model, variables, x, **kw):
    return model.apply(variables, x, **kw)


def tiny_resnet(**kw):
    return ResNet(stage_sizes=(1, 1), block_cls=BasicBlock, num_filters=4, stem="cifar", **kw)


def bn_batch():
    """[16, 6, 6, 3]; each device's 2 rows (of 8) get another offset, so per-device BN
    statistics differ clearly from global ones."""
    x = images((16, 6, 6, 3), seed=1)
    return x + (np.arange(16) // 2).reshape(16, 1, 1, 1).astype(np.float32)


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------------- ResNet

@pytest.mark.parametrize("ctor, expected", [
    # torchvision totals minus the fc layer (512*1000+1000 / 2048*1000+1000):
    (resnet18, 11_689_512 - 513_000),    # 11,176,512
    (resnet34, 21_797_672 - 513_000),    # 21,284,672
    (resnet50, 25_557_032 - 2_049_000),  # 23,508,032
])
def test_resnet_param_count_matches_torchvision(ctor, expected):
    variables = abstract_init(ctor(), (1, 64, 64, 3), train=False)
    assert n_params(variables["params"]) == expected


def test_resnet_names_map_onto_torchvision():
    params = abstract_init(resnet18(), (1, 32, 32, 3), train=False)["params"]
    blocks = [f"layer{s}_{b}" for s in range(1, 5) for b in range(2)]
    assert set(params) == {"conv1", "bn1", *blocks}
    assert set(params["layer1_0"]) == {"conv1", "bn1", "conv2", "bn2"}
    assert set(params["layer2_0"]) == {"conv1", "bn1", "conv2", "bn2",
                                       "downsample_conv", "downsample_bn"}
    assert params["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert set(params["bn1"]) == {"scale", "bias"}
    p50 = abstract_init(resnet50(), (1, 32, 32, 3), train=False)["params"]
    assert set(p50["layer1_0"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                                    "downsample_conv", "downsample_bn"}  # 64 -> 256 channels
    assert p50["layer1_0"]["conv3"]["kernel"].shape == (1, 1, 64, 256)


def intermediate_shapes(model, shape):
    out = jax.eval_shape(lambda: model.apply(
        model.init(KEY, jnp.zeros(shape), train=False), jnp.zeros(shape), train=False,
        capture_intermediates=True, mutable=["intermediates"]))
    inter = out[1]["intermediates"]
    return lambda *path: _get(inter, path)["__call__"][0].shape


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def test_resnet50_imagenet_stem_and_v15_stride_placement():
    shape_of = intermediate_shapes(resnet50(), (1, 224, 224, 3))
    assert shape_of("conv1") == (1, 112, 112, 64)          # 7x7/2, padding 3
    assert shape_of("layer1_0") == (1, 56, 56, 256)        # after the 3x3/2 max-pool
    # v1.5: in the first block of stage 2 the 1x1 conv1 keeps 56x56, the 3x3 conv2 strides.
    assert shape_of("layer2_0", "conv1") == (1, 56, 56, 128)
    assert shape_of("layer2_0", "conv2") == (1, 28, 28, 128)
    assert shape_of("layer4_2") == (1, 7, 7, 2048)


def test_cifar_stem_keeps_resolution_at_stage1():
    cifar = intermediate_shapes(resnet18(stem="cifar"), (2, 32, 32, 3))
    imnet = intermediate_shapes(resnet18(stem="imagenet"), (2, 32, 32, 3))
    assert cifar("layer1_1") == (2, 32, 32, 64)
    assert imnet("layer1_1") == (2, 8, 8, 64)
    assert cifar("layer4_1") == (2, 4, 4, 512)
    params = abstract_init(resnet18(stem="cifar"), (1, 32, 32, 3), train=False)["params"]
    assert params["conv1"]["kernel"].shape == (3, 3, 3, 64)


@pytest.mark.parametrize("ctor, width, dim", [(resnet18, 1, 512), (resnet34, 2, 1024),
                                              (resnet50, 1, 2048), (resnet50, 2, 4096)])
def test_resnet_output_shape_and_feature_dim(ctor, width, dim):
    model = ctor(width_multiplier=width, stem="cifar")
    assert model.feature_dim == dim
    x = jnp.zeros((2, 32, 32, 3))
    out = jax.eval_shape(lambda: model.apply(model.init(KEY, x, train=False), x, train=False))
    assert out.shape == (2, dim) and out.dtype == jnp.float32


def test_conv_init_is_kaiming_normal_fan_out():
    block = BasicBlock(filters=128, strides=2)  # the first block of ResNet-18's stage 4 / 8
    params = init_vars(block, jnp.zeros((1, 2, 2, 64)), train=False)["params"]
    kernel = np.asarray(params["downsample_conv"]["kernel"])
    assert kernel.shape == (1, 1, 64, 128)
    # fan_out = 128 -> std 0.125 (fan_in would give 0.177)
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / 128), rtol=0.05)
    assert abs(kernel.mean()) < 0.01
    kernel = np.asarray(params["conv1"]["kernel"])  # 3x3, fan_out = 9 * 128
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (9 * 128)), rtol=0.02)


@pytest.mark.parametrize("block", [BasicBlock(filters=8), Bottleneck(filters=2)])
@pytest.mark.parametrize("train", [True, False])
def test_zero_init_last_bn_makes_block_relu_of_shortcut(block, train):
    x = images((4, 5, 5, 8))  # 8 channels in and out: identity shortcut
    variables = init_vars(block, x, train=False)
    out, _ = run(block, variables, x, train=train, mutable=["batch_stats"])
    np.testing.assert_allclose(out, np.maximum(x, 0), atol=1e-6)
    other = block.clone(zero_init_last_bn=False)
    out2, _ = run(other, init_vars(other, x, train=False), x, train=train,
                  mutable=["batch_stats"])
    assert np.abs(np.asarray(out2) - np.maximum(x, 0)).max() > 1e-2


def test_train_updates_batch_stats_with_momentum_and_eval_does_not():
    model = tiny_resnet()
    x = bn_batch()
    variables = init_vars(model, x[:2], train=False)
    _, inter = run(model, variables, x, train=False, capture_intermediates=True,
                   mutable=["intermediates"])
    conv1_out = np.asarray(inter["intermediates"]["conv1"]["__call__"][0])

    _, new = run(model, variables, x, train=True, mutable=["batch_stats"])
    # ra = 0.9 * ra + 0.1 * batch statistic (init mean 0, var 1; biased variance)
    np.testing.assert_allclose(new["batch_stats"]["bn1"]["mean"],
                               0.1 * conv1_out.mean(axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(new["batch_stats"]["bn1"]["var"],
                               0.9 + 0.1 * conv1_out.var(axis=(0, 1, 2)), rtol=1e-5)

    out_eval, same = run(model, variables, x, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, same["batch_stats"], variables["batch_stats"])
    np.testing.assert_array_equal(out_eval, run(model, variables, x, train=False))


def test_bf16_activations_float32_params_and_stats():
    variables, (out, new) = abstract_init_apply(
        tiny_resnet(dtype=jnp.bfloat16), images((2, 8, 8, 3)), dict(train=False), train=True,
        mutable=["batch_stats"])
    assert out.dtype == jnp.bfloat16
    assert dtypes(variables["params"]) == dtypes(new["batch_stats"]) == {jnp.dtype("float32")}


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_conv_batch_chunk_gives_the_same_outputs_stats_and_gradients(block_cls):
    """Batch-chunked convs (a CPU speed lever) compute the same function: outputs, updated BN
    statistics and parameter gradients equal the one-piece model's (chunk 3 of 8 images: an
    uneven last slice)."""
    x = images((8, 8, 8, 3))
    plain = ResNet(stage_sizes=(1, 1), block_cls=block_cls, num_filters=4, stem="cifar")
    chunked = plain.clone(conv_batch_chunk=3)
    variables = init_vars(plain, x, train=False)
    assert jax.tree.structure(variables) == jax.tree.structure(init_vars(chunked, x, train=False))

    def loss(params, model):
        out, new = model.apply({**variables, "params": params}, x, train=True,
                               mutable=["batch_stats"])
        return jnp.sum(jnp.sin(out)), (out, new)

    results = [jax.value_and_grad(loss, has_aux=True)(variables["params"], m)
               for m in (plain, chunked)]
    (l0, (o0, s0)), g0 = results[0]
    (l1, (o1, s1)), g1 = results[1]
    np.testing.assert_allclose(o1, o0, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s1, s0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g1, g0)
    assert float(jnp.max(jnp.abs(o0))) > 0  # not a trivially zero output

@pytest.mark.parametrize("policy", ["full", "dots"])
@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_remat_keeps_parameter_names_outputs_and_gradients(kind, policy):
    """``remat`` only changes what the backward pass stores: same parameter tree, outputs,
    BN statistics and gradients as without it."""
    if kind == "resnet":
        plain, x = tiny_resnet(), images((4, 8, 8, 3))
    else:
        plain, x = VisionTransformer(patch_size=4, hidden_dim=16, depth=2, num_heads=2), images((2, 8, 8, 3))
    remat = plain.clone(remat=policy)
    variables = init_vars(plain, x, train=False)
    assert jax.tree.structure(variables) == jax.tree.structure(init_vars(remat, x, train=False))

    def loss(params, model):
        out, new = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(out)), new

    f = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (l0, s0), g0 = f(variables["params"], plain)
    (l1, s1), g1 = f(variables["params"], remat)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s1, s0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g1, g0)

def test_resnet_errors_name_the_field():
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="model.stem"):
        init_vars(tiny_resnet().clone(stem="tiny"), x, train=False)


# --------------------------------------------------------------- BN over a sharded batch

def test_bn_statistics_are_global_under_jit_on_a_sharded_batch():
    model = tiny_resnet()
    x = bn_batch()
    variables = init_vars(model, x[:2], train=False)
    step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
    results = {}
    for n in (1, 8):
        mesh = make_mesh(n)
        xs = jax.device_put(x, batch_sharding(mesh))
        assert len(xs.sharding.device_set) == n
        results[n] = step(replicate(variables, mesh), xs)
    (out1, st1), (out8, st8) = results[1], results[8]
    np.testing.assert_allclose(out8, out1, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), st8, st1)


def test_bn_axis_name_in_shard_map_global_vs_per_device():
    mesh = make_mesh(8)
    x = bn_batch()
    variables = init_vars(tiny_resnet(), x[:2], train=False)
    reference, ref_stats = run(tiny_resnet(), variables, x, train=True,
                                     mutable=["batch_stats"])

    synced = tiny_resnet(bn_axis_name="data")
    f = jax.shard_map(lambda v, x: synced.apply(v, x, train=True, mutable=["batch_stats"]),
                      mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P()))
    out, stats = jax.jit(f)(variables, x)
    np.testing.assert_allclose(out, reference, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), stats, ref_stats)

    local = tiny_resnet()  # bn_axis_name=None: each device normalises its own 2 rows
    g = jax.shard_map(lambda v, x: local.apply(v, x, train=True, mutable=["batch_stats"])[0],
                      mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"))
    per_device = jax.jit(g)(variables, x)
    per_shard = np.concatenate([
        run(local, variables, x[i:i + 2], train=True, mutable=["batch_stats"])[0]
        for i in range(0, 16, 2)])
    np.testing.assert_allclose(per_device, per_shard, atol=1e-5)
    assert np.abs(np.asarray(per_device) - np.asarray(reference)).max() > 1e-2


# --------------------------------------------------------------------------------- SmallCNN

@pytest.mark.parametrize("side", [8, 16])
def test_small_cnn_shapes_and_param_count(side):
    model = SmallCNN()
    variables, (out, _) = abstract_init_apply(model, jnp.zeros((3, side, side, 1)),
                                              dict(train=False), train=True,
                                              mutable=["batch_stats"])
    assert out.shape == (3, 128) == (3, model.feature_dim)
    widths = [1, 32, 64, 128]
    expected = sum(9 * a * b + 2 * b for a, b in zip(widths[:-1], widths[1:]))  # conv + BN
    assert n_params(variables["params"]) == expected == 92_896


# ------------------------------------------------------------------------------------ heads

def param_layout(head, in_dim=6):
    variables = abstract_init(head, (4, in_dim), train=False)
    params = {k: set(v) for k, v in variables["params"].items()}
    stats = set(variables.get("batch_stats", {}))
    return params, stats, variables


def test_simclr_v1_head_layout():
    # SimCLR v1 code (model_util.py projection_head): nl_1 = Dense + BN(center=False).
    params, stats, _ = param_layout(heads.simclr_v1_head(16, 8))
    assert params == {"dense_0": {"kernel"}, "bn_0": {"scale", "bias"},
                      "dense_1": {"kernel"}, "bn_1": {"scale"}}
    assert stats == {"bn_0", "bn_1"}


def test_simclr_v2_head_layout():
    params, stats, _ = param_layout(heads.simclr_v2_head(16, 8))
    assert params == {"dense_0": {"kernel"}, "bn_0": {"scale", "bias"},
                      "dense_1": {"kernel"}, "bn_1": {"scale", "bias"},
                      "dense_2": {"kernel"}, "bn_2": {"scale"}}  # last BN: gamma, no beta
    assert stats == {"bn_0", "bn_1", "bn_2"}


def test_mocov2_head_layout():
    params, stats, variables = param_layout(heads.mocov2_head(), in_dim=2048)
    assert params == {"dense_0": {"kernel", "bias"}, "dense_1": {"kernel", "bias"}}
    assert stats == set()
    assert variables["params"]["dense_0"]["kernel"].shape == (2048, 2048)
    assert variables["params"]["dense_1"]["kernel"].shape == (2048, 128)


@pytest.mark.parametrize("num_layers", [2, 3])
def test_mocov3_projector_layout(num_layers):
    params, stats, variables = param_layout(heads.mocov3_projector(32, 8, num_layers))
    last = num_layers - 1
    expected = {f"dense_{i}": {"kernel"} for i in range(num_layers)}
    expected.update({f"bn_{i}": {"scale", "bias"} for i in range(last)})
    assert params == expected  # last BN has no affine parameters ...
    assert stats == {f"bn_{i}" for i in range(num_layers)}  # ... but keeps running stats
    assert variables["params"][f"dense_{last}"]["kernel"].shape == (32, 8)


def test_mocov3_predictor_layout():
    params, stats, _ = param_layout(heads.mocov3_predictor(32, 8))
    assert params == {"dense_0": {"kernel"}, "bn_0": {"scale", "bias"}, "dense_1": {"kernel"}}
    assert stats == {"bn_0"}


def _np_bn(x, eps=1e-5):
    return (x - x.mean(0)) / np.sqrt(x.var(0) + eps)


def test_simclr_v2_head_matches_numpy_forward_in_train_mode():
    head = heads.simclr_v2_head(32, 8)
    x = images((8, 16))
    variables = init_vars(head, x, train=False)
    # non-trivial BN affine parameters
    variables = jax.tree.map(lambda a: a + 0.3 * jnp.arange(a.size).reshape(a.shape) / a.size,
                             variables)
    out, _ = run(head, variables, x, train=True, mutable=["batch_stats"])
    p = jax.tree.map(np.asarray, variables["params"])
    h = x.astype(np.float64)
    for i in range(3):
        h = _np_bn(h @ p[f"dense_{i}"]["kernel"]) * p[f"bn_{i}"]["scale"]
        if i < 2:
            h = np.maximum(h + p[f"bn_{i}"]["bias"], 0)
    np.testing.assert_allclose(out, h, rtol=1e-4, atol=1e-5)


def test_mocov2_head_matches_numpy_forward():
    head = heads.mocov2_head(32, 8)
    x = images((8, 16))
    variables = init_vars(head, x, train=False)
    variables = jax.tree.map(lambda a: a + 0.1, variables)  # non-zero biases
    p = jax.tree.map(np.asarray, variables["params"])
    hidden = np.maximum(x @ p["dense_0"]["kernel"] + p["dense_0"]["bias"], 0)
    expected = hidden @ p["dense_1"]["kernel"] + p["dense_1"]["bias"]
    np.testing.assert_allclose(run(head, variables, x, train=True), expected, rtol=1e-5,
                               atol=1e-6)


def test_mocov3_projector_output_is_batch_standardised():
    head = heads.mocov3_projector(32, 8, num_layers=3)
    x = images((8, 16))
    variables = init_vars(head, x, train=False)
    out, _ = run(head, variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.mean(out, 0), 0, atol=1e-5)
    np.testing.assert_allclose(np.var(out, 0), 1, atol=1e-3)


def test_head_kernel_inits():
    simclr = init_vars(heads.simclr_v1_head(128, 128), jnp.zeros((1, 256)), train=False)
    np.testing.assert_allclose(np.std(simclr["params"]["dense_0"]["kernel"]), 0.01, rtol=0.02)
    moco = init_vars(heads.mocov2_head(128, 128), jnp.zeros((1, 256)), train=False)
    kernel = np.asarray(moco["params"]["dense_0"]["kernel"])  # torch: U(+-1/sqrt(fan_in))
    bound = 1 / np.sqrt(256)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.99 * bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)


def test_head_bf16_and_errors():
    x = images((4, 6))
    variables, (out, new) = abstract_init_apply(
        heads.simclr_v2_head(8, 4, dtype=jnp.bfloat16), x, dict(train=False), train=True,
        mutable=["batch_stats"])
    assert out.dtype == jnp.bfloat16
    assert dtypes(variables) == dtypes(new) == {jnp.dtype("float32")}
    with pytest.raises(ValueError, match="num_layers=0"):
        init_vars(heads.ProjectionHead(8, 4, num_layers=0), x, train=False)


# -------------------------------------------------------------------------------------- ViT

def mae_get_2d_sincos_pos_embed(embed_dim, grid_size):
    """MAE util/pos_embed.py (facebookresearch/mae), verbatim up to np.float -> np.float64."""
    def from_grid_1d(embed_dim, pos):
        omega = np.arange(embed_dim // 2, dtype=np.float64)
        omega /= embed_dim / 2.
        omega = 1. / 10000 ** omega
        pos = pos.reshape(-1)
        out = np.einsum('m,d->md', pos, omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])
    emb_h = from_grid_1d(embed_dim // 2, grid[0])
    emb_w = from_grid_1d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


@pytest.mark.parametrize("grid, dim", [(4, 16), (14, 768)])
def test_sincos_matches_mae(grid, dim):
    np.testing.assert_allclose(sincos_2d_position_embedding(grid, grid, dim),
                               mae_get_2d_sincos_pos_embed(dim, grid), atol=1e-6)


def tiny_vit(**kw):
    return VisionTransformer(patch_size=4, hidden_dim=16, depth=2, num_heads=2, **kw)


def test_embed_patches_is_row_major_linear_patch_projection_plus_sincos():
    model = tiny_vit()
    variables = init_vars(model, images((2, 8, 8, 3)))
    x = images((2, 8, 12, 3))  # 2 x 3 patches, non-square (sincos: no grid-sized params)
    tokens = run(model, variables, x, method="embed_patches")
    p = jax.tree.map(np.asarray, variables["params"]["patch_embed"])
    patches = x.reshape(2, 2, 4, 3, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 48)
    expected = patches @ p["kernel"].reshape(48, 16) + p["bias"]
    rows, cols = np.divmod(np.arange(6), 3)
    omega = 1.0 / 10000 ** (np.arange(4) / 4)
    pos = np.concatenate([np.sin(cols[:, None] * omega), np.cos(cols[:, None] * omega),
                          np.sin(rows[:, None] * omega), np.cos(rows[:, None] * omega)], 1)
    np.testing.assert_allclose(tokens, expected + pos, rtol=1e-5, atol=1e-5)


def timm_block_numpy(p, x, num_heads, eps=1e-6):
    """timm Block.forward (pre-LN, fused qkv, exact GELU) in numpy, torch layout converted."""
    from math import erf

    def ln(h, q):
        return (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + eps) * \
            q["scale"] + q["bias"]
    B, N, C = x.shape
    hd = C // num_heads
    h = ln(x, p["norm1"])
    qkv = (h @ p["attn"]["qkv"]["kernel"] + p["attn"]["qkv"]["bias"])
    qkv = qkv.reshape(B, N, 3, num_heads, hd).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = q @ k.transpose(0, 1, 3, 2) * hd ** -0.5
    attn = np.exp(attn - attn.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    h = (attn @ v).transpose(0, 2, 1, 3).reshape(B, N, C)
    x = x + h @ p["attn"]["proj"]["kernel"] + p["attn"]["proj"]["bias"]
    h = ln(x, p["norm2"]) @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"]
    h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
    return x + h @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]


def test_encoder_block_matches_timm_numpy_reference():
    block = EncoderBlock(num_heads=2, mlp_dim=64)  # the shapes of tiny_vit's blocks
    x = images((2, 5, 16))
    variables = init_vars(block, x)
    variables = jax.tree.map(lambda a: a + 0.05 * jnp.cos(jnp.arange(a.size)).reshape(a.shape),
                             variables)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    np.testing.assert_allclose(run(block, variables, x), timm_block_numpy(p, x, 2),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("posemb", ["sincos2d", "learned"])
def test_vit_entry_points_and_pooling(posemb):
    x = images((2, 8, 8, 3))
    cls_model, gap_model = tiny_vit(posemb=posemb), tiny_vit(posemb=posemb, pool="gap")
    variables = init_vars(cls_model, x)
    tokens = run(cls_model, variables, x, method="embed_patches")
    assert tokens.shape == (2, 4, 16)
    encoded = run(cls_model, variables, tokens, method="encode_tokens")
    assert encoded.shape == (2, 5, 16)
    # MAE-style: encode a subset of the patch tokens
    visible = run(cls_model, variables, tokens[:, 1:3], method="encode_tokens")
    assert visible.shape == (2, 3, 16)
    cls_out = run(cls_model, variables, x, train=True)
    gap_out = run(gap_model, variables, x, train=True)
    assert cls_out.shape == gap_out.shape == (2, cls_model.feature_dim)
    np.testing.assert_allclose(cls_out, encoded[:, 0], atol=1e-6)
    np.testing.assert_allclose(gap_out, encoded[:, 1:].mean(1), atol=1e-6)
    if posemb == "learned":
        assert variables["params"]["pos_embed"].shape == (1, 5, 16)
    else:
        assert "pos_embed" not in variables["params"]


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_patch_embed_zeroes_exactly_its_gradients(freeze):
    model = tiny_vit(posemb="learned", freeze_patch_embed=freeze)
    x = images((2, 8, 8, 3))
    params = init_vars(model, x)["params"]
    loss = lambda p: jnp.sum(model.apply({"params": p}, x, train=True) ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    patch = jax.tree.leaves(grads["patch_embed"])
    assert len(patch) == 2  # kernel and bias
    if freeze:
        assert all(np.all(np.asarray(g) == 0) for g in patch)
    else:
        assert all(np.abs(np.asarray(g)).max() > 0 for g in patch)
    others = {k: v for k, v in grads.items() if k != "patch_embed"}
    for path, g in jax.tree_util.tree_leaves_with_path(others):
        assert np.abs(np.asarray(g)).max() > 0, path


def test_vit_base_param_count_matches_timm():
    # timm vit_base_patch16_224 without head, from the architecture:
    D, M, L, N = 768, 3072, 12, 196
    per_block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)
    expected = (16 * 16 * 3 * D + D) + D + (N + 1) * D + L * per_block + 2 * D
    assert expected == 85_798_656  # = timm's 86,567,656 minus the 768*1000+1000 head
    learned = abstract_init(vit_base(posemb="learned"), (1, 224, 224, 3))["params"]
    assert n_params(learned) == expected
    sincos = abstract_init(vit_base(), (1, 224, 224, 3))["params"]
    assert n_params(sincos) == expected - (N + 1) * D
    assert learned["blocks_11"]["attn"]["qkv"]["kernel"].shape == (D, 3 * D)
    assert learned["patch_embed"]["kernel"].shape == (16, 16, 3, D)


@pytest.mark.parametrize("ctor, dim, heads_, timm_total", [
    (vit_tiny, 192, 3, 5_717_416), (vit_small, 384, 6, 22_050_664)])
def test_vit_sizes(ctor, dim, heads_, timm_total):
    model = ctor(posemb="learned")
    assert (model.hidden_dim, model.num_heads, model.feature_dim) == (dim, heads_, dim)
    params = abstract_init(model, (1, 224, 224, 3))["params"]
    assert n_params(params) == timm_total - (dim * 1000 + 1000)


def test_vit_bf16_and_errors():
    model = tiny_vit(dtype=jnp.bfloat16, posemb="learned")
    x = images((2, 8, 8, 3))
    variables, out = abstract_init_apply(model, x, {})
    assert out.dtype == jnp.bfloat16
    assert dtypes(variables) == {jnp.dtype("float32")}
    _, tokens = abstract_init_apply(model, x, {}, method="embed_patches")
    assert tokens.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="model.pool"):
        init_vars(tiny_vit(pool="max"), x)
    with pytest.raises(ValueError, match="model.patch_size"):
        init_vars(tiny_vit(), images((1, 10, 10, 3)))


# --------------------------------------------------------------------------------- registry

@pytest.mark.parametrize("name, kwargs, cls, dim", [
    ("small_cnn", {}, SmallCNN, 128),
    ("resnet18", {"stem": "cifar"}, ResNet, 512),
    ("resnet34", {}, ResNet, 512),
    ("resnet50", {"width_multiplier": 2}, ResNet, 4096),
    ("vit_tiny", {"patch_size": 4, "pool": "gap"}, VisionTransformer, 192),
    ("vit_small", {"freeze_patch_embed": True}, VisionTransformer, 384),
    ("vit_base", {"posemb": "learned"}, VisionTransformer, 768),
])
def test_registry_creates_configured_backbones(name, kwargs, cls, dim):
    model = registry.create_backbone(name, **kwargs)
    assert type(model) is cls
    assert all(getattr(model, k) == v for k, v in kwargs.items())
    assert model.feature_dim == dim


def test_registry_dtype_by_name_and_errors():
    assert registry.create_backbone("resnet18", dtype="bfloat16").dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"model\.backbone.*resnet18.*vit_base"):
        registry.create_backbone("resnet101")
    with pytest.raises(ValueError, match=r"model\.backbone"):
        registry.create_backbone("vgg16")
    with pytest.raises(ValueError, match="patch_size"):
        registry.create_backbone("resnet50", patch_size=16)
    with pytest.raises(ValueError, match="model.dtype"):
        registry.create_backbone("small_cnn", dtype="bf15")
