"""Imported reference models give the reference forward pass (torchvision, timm, transformers).

Each reference model is randomly initialised by its own library (BN running statistics and
LayerScale made non-trivial), saved as its authors save it, imported with
:func:`jaxssl.imports.load_source` and run by jaxssl's model: features / logits agree to 1e-4
relative (fp32). Import then export returns the same tensors.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
transformers = pytest.importorskip("transformers")

from jaxssl import export, imports  # noqa: E402
from jaxssl.models.bert import BertConfig, BertForMLM, BertPooler  # noqa: E402
from jaxssl.models.registry import create_backbone  # noqa: E402
from jaxssl.models.vit import VisionTransformer  # noqa: E402


def _close(got, want, rtol=1e-4):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.abs(want).max(), 1e-6)
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    _randomise_bn(model)
    model.fc = torch.nn.Identity()
    return model.eval()


def test_resnet50_from_a_moco_v2_checkpoint_matches_torchvision(resnet50, tmp_path):
    sd = {f"module.encoder_q.{k}": v for k, v in resnet50.state_dict().items()}
    sd.update({f"module.encoder_k.{k}": v + 1 for k, v in resnet50.state_dict().items()
               if v.dtype == torch.float32})
    sd["module.encoder_q.fc.0.weight"] = torch.zeros(2048, 2048)  # MoCo v2's MLP head: an extra
    path = tmp_path / "checkpoint_0199.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": sd}, path)
    imported = imports.load_source(str(path))
    assert imported.format == "resnet" and imported.entries["online"] == "state_dict/module.encoder_q."
    assert imported.teacher_params is not None  # encoder_k comes along as the momentum teacher
    np.testing.assert_array_equal(imported.teacher_params["conv1"]["kernel"],
                                  imported.params["conv1"]["kernel"] + 1)
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = resnet50(torch.from_numpy(x)).numpy()
    model = create_backbone("resnet50", stem="imagenet")
    got = model.apply({"params": imported.params, "batch_stats": imported.batch_stats},
                      jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
    _close(got, want)
    # Import then export returns the same tensors (BN statistics included).
    back = export.torchvision.resnet_state_dict(imported.params, imported.batch_stats)
    for key, value in resnet50.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)


def _timm_vit(name, **kwargs):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()
    with torch.no_grad():  # non-trivial LayerScale / positions / tokens
        for n, p in model.named_parameters():
            if n.endswith("gamma") or "token" in n or "pos_embed" in n:
                p.copy_(torch.randn_like(p) * 0.5)
    return model


@pytest.mark.parametrize("name,kwargs,heads", [
    ("vit_small_patch16_224", dict(img_size=64, depth=3), 6),
    ("vit_base_patch16_224", dict(img_size=32, depth=2), 12),
    ("vit_small_patch14_reg4_dinov2", dict(img_size=56, depth=2), 6),
])
def test_timm_vits_match_the_reference_forward(name, kwargs, heads, tmp_path):
    from safetensors.torch import save_file

    model = _timm_vit(name, **kwargs)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    imported = imports.load_source(str(path))
    f = imported.fields
    vit = VisionTransformer(patch_size=f["patch_size"], hidden_dim=f["hidden_dim"],
                            depth=f["depth"], num_heads=heads, posemb=f["posemb"],
                            layerscale_init=f["layerscale_init"],
                            num_registers=f["num_registers"], mlp_type=f["mlp_type"])
    if "dinov2" in name:
        assert f["layerscale_init"] > 0 and f["num_registers"] == 4
    size = kwargs["img_size"]
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        tokens = model.forward_features(torch.from_numpy(x)).numpy()
    got = vit.apply({"params": imported.params}, jnp.asarray(x.transpose(0, 2, 3, 1)),
                    method=VisionTransformer.forward_features)
    start = 1 + f["num_registers"]
    _close(got["cls"], tokens[:, 0])
    _close(got["patches"], tokens[:, start:])
    if f["num_registers"]:
        _close(got["registers"], tokens[:, 1:start])


def _hf_bert(tmp_path, cls, vocab=97):
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=40, hidden_act="gelu")
    torch.manual_seed(0)
    model = cls(config).eval()
    out = tmp_path / cls.__name__
    model.save_pretrained(str(out))
    (out / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(vocab)) + "\n")
    return model, out, config


def test_bert_mlm_logits_and_pooler_match_transformers(tmp_path):
    model, folder, hf = _hf_bert(tmp_path, transformers.BertForMaskedLM)
    imported = imports.load_source(str(folder))
    assert imported.format == "bert" and imported.vocab_file.endswith("vocab.txt")
    config = BertConfig(vocab_size=hf.vocab_size, hidden_size=32, num_layers=2, num_heads=4,
                        intermediate_size=64, max_position=40)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, hf.vocab_size, (2, 11)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    segments = np.zeros_like(ids)
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     token_type_ids=torch.from_numpy(segments)).logits.numpy()
    params = {"bert": imported.params["bert"], "cls": imported.extra["cls"]}
    got = BertForMLM(config).apply({"params": params}, jnp.asarray(ids, jnp.int32),
                                   jnp.asarray(segments, jnp.int32), jnp.asarray(mask, jnp.int32))
    _close(np.asarray(got)[mask == 1], want[mask == 1])
    # BertModel: the [CLS] pooler.
    base, folder, _ = _hf_bert(tmp_path, transformers.BertModel)
    imported = imports.load_source(str(folder))
    with torch.no_grad():
        want = base(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    token_type_ids=torch.from_numpy(segments)).pooler_output.numpy()
    from jaxssl.models.bert import BertEncoder
    hidden = BertEncoder(config).apply({"params": imported.params["bert"]},
                                       jnp.asarray(ids, jnp.int32), jnp.asarray(segments, jnp.int32),
                                       jnp.asarray(mask, jnp.int32), False)
    pooled = BertPooler(config).apply({"params": imported.extra["pooler"]}, hidden)
    _close(pooled, want)


def test_safetensors_import_needs_no_torch(tmp_path):
    """A .safetensors file is read with safetensors.numpy: torch is never imported."""
    from safetensors.numpy import save_file

    vit = VisionTransformer(patch_size=4, hidden_dim=16, depth=1, num_heads=2, posemb="learned")
    params = vit.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    sd = export.timm.vit_state_dict(jax.tree.map(np.asarray, params), image_size=16)
    path = tmp_path / "vit.safetensors"
    save_file(sd, str(path))
    code = ("import sys; sys.modules['torch'] = None\n"
            "from jaxssl import imports\n"
            f"print(imports.load_source({str(path)!r}).format)")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "vit", out.stderr[-2000:]


class _TorchDINOHead(torch.nn.Module):
    """facebookresearch/dino ``vision_transformer.py`` ``DINOHead`` (transcribed)."""

    def __init__(self, in_dim, out_dim, use_bn=False, nlayers=3, hidden_dim=64,
                 bottleneck_dim=16):
        super().__init__()
        layers = [torch.nn.Linear(in_dim, hidden_dim)]
        if use_bn:
            layers.append(torch.nn.BatchNorm1d(hidden_dim))
        layers.append(torch.nn.GELU())
        for _ in range(nlayers - 2):
            layers.append(torch.nn.Linear(hidden_dim, hidden_dim))
            if use_bn:
                layers.append(torch.nn.BatchNorm1d(hidden_dim))
            layers.append(torch.nn.GELU())
        layers.append(torch.nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = torch.nn.Sequential(*layers)
        self.last_layer = torch.nn.utils.weight_norm(
            torch.nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)

    def forward(self, x):
        x = torch.nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


@pytest.mark.parametrize("use_bn", [False, True])
def test_dino_full_checkpoint_brings_its_heads_and_teacher(use_bn, tmp_path):
    from jaxssl.models.dino_head import DINOHead

    vit = _timm_vit("vit_small_patch16_224", img_size=32, depth=1)
    torch.manual_seed(1)
    heads = {role: _TorchDINOHead(384, 40, use_bn=use_bn).eval() for role in ("student", "teacher")}
    if use_bn:
        _randomise_bn(heads["teacher"])
    ckpt = {"student": {**{f"module.backbone.{k}": v for k, v in vit.state_dict().items()},
                        **{f"module.head.{k}": v for k, v in heads["student"].state_dict().items()}},
            "teacher": {**{f"backbone.{k}": v + 1 for k, v in vit.state_dict().items()},
                        **{f"head.{k}": v for k, v in heads["teacher"].state_dict().items()}},
            "epoch": 100}
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    imported = imports.load_source(str(path))
    assert imported.entries == {"online": "student/module.backbone.", "teacher": "teacher/backbone."}
    assert not [k for k in imported.dropped if "head" in k], imported.dropped
    x = np.random.default_rng(0).normal(size=(3, 384)).astype(np.float32)
    with torch.no_grad():
        want = heads["teacher"](torch.from_numpy(x)).numpy()
    module = DINOHead(out_dim=40, hidden_dim=64, bottleneck_dim=16, use_bn=use_bn)
    variables = {"params": imported.teacher_extra["head"]}
    if use_bn:
        variables["batch_stats"] = imported.teacher_extra_stats["head"]
    _close(module.apply(variables, jnp.asarray(x), train=False), want)
    np.testing.assert_array_equal(imported.teacher_params["cls_token"],
                                  imported.params["cls_token"] + 1)


# --------------------------------------------------------------------- MAE's decoder

def _mae_sincos_with_cls(embed_dim, grid_size):
    """MAE util/pos_embed.py ``get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=True)``."""
    from test_recipes_v3_mae_bert import mae_get_2d_sincos_pos_embed
    return np.concatenate([np.zeros([1, embed_dim]),
                           mae_get_2d_sincos_pos_embed(embed_dim, grid_size)], axis=0)


class _TorchMAEDecoder(torch.nn.Module):
    """facebookresearch/mae ``models_mae.py`` MaskedAutoencoderViT's decoder half
    (``decoder_embed`` .. ``decoder_pred`` and ``forward_decoder``), with timm's ``Block``."""

    def __init__(self, num_patches, embed_dim, dim, depth, heads, patch_dim):
        super().__init__()
        from functools import partial

        from timm.models.vision_transformer import Block
        self.decoder_embed = torch.nn.Linear(embed_dim, dim, bias=True)
        self.mask_token = torch.nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        grid = int(num_patches ** 0.5)
        self.decoder_pos_embed = torch.nn.Parameter(
            torch.from_numpy(_mae_sincos_with_cls(dim, grid)).float().unsqueeze(0),
            requires_grad=False)
        self.decoder_blocks = torch.nn.ModuleList([
            Block(dim, heads, 4.0, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
            for _ in range(depth)])
        self.decoder_norm = torch.nn.LayerNorm(dim, eps=1e-6)
        self.decoder_pred = torch.nn.Linear(dim, patch_dim, bias=True)

    def forward(self, x, ids_restore):
        x = self.decoder_embed(x)
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]


def test_mae_decoder_from_a_pretraining_checkpoint_matches_models_mae(tmp_path):
    """An MAE pretraining checkpoint (``{"model": encoder + decoder}``, as main_pretrain.py
    saves it): the imported decoder predicts what MAE's ``forward_decoder`` predicts."""
    from jaxssl.models.mae import MAEDecoder

    vit = _timm_vit("vit_small_patch16_224", img_size=64, depth=1)   # 4 x 4 patches
    torch.manual_seed(2)
    decoder = _TorchMAEDecoder(16, 384, 32, 2, 4, 16 * 16 * 3).eval()
    with torch.no_grad():
        for m in decoder.modules():
            if isinstance(m, torch.nn.LayerNorm):   # non-trivial norms
                m.weight.copy_(torch.rand_like(m.weight) + 0.5)
                m.bias.copy_(torch.randn_like(m.bias) * 0.1)
    state = {**vit.state_dict(), **decoder.state_dict()}
    torch.save({"model": state, "epoch": 1599}, tmp_path / "mae_pretrain.pth")
    imported = imports.load_source(str(tmp_path / "mae_pretrain.pth"))
    assert "decoder" in imported.extra
    assert not [k for k in imported.dropped if k.startswith("decoder") or k == "mask_token"]
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(3, 1 + 4, 384)).astype(np.float32)     # class token + 4 visible
    ids_restore = np.stack([rng.permutation(16) for _ in range(3)]).astype(np.int64)
    with torch.no_grad():
        want = decoder(torch.from_numpy(latent), torch.from_numpy(ids_restore)).numpy()
    module = MAEDecoder(grid_hw=(4, 4), patch_dim=16 * 16 * 3, hidden_dim=32, depth=2, num_heads=4)
    got = module.apply({"params": imported.extra["decoder"]}, jnp.asarray(latent),
                       jnp.asarray(ids_restore.astype(np.int32)))
    _close(got, want)


# --------------------------------------------------------------- MoCo v3's projector and predictor

def _moco_v3_mlp(num_layers, input_dim, mlp_dim, output_dim, last_bn=True):
    """facebookresearch/moco-v3 ``moco/builder.py`` ``MoCo._build_mlp``."""
    mlp = []
    for layer in range(num_layers):
        dim1 = input_dim if layer == 0 else mlp_dim
        dim2 = output_dim if layer == num_layers - 1 else mlp_dim
        mlp.append(torch.nn.Linear(dim1, dim2, bias=False))
        if layer < num_layers - 1:
            mlp.append(torch.nn.BatchNorm1d(dim2))
            mlp.append(torch.nn.ReLU(inplace=True))
        elif last_bn:
            mlp.append(torch.nn.BatchNorm1d(dim2, affine=False))
    return torch.nn.Sequential(*mlp)


def _randomise_bn1d(module, seed):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_moco_v3_checkpoint_brings_projector_predictor_and_key_projector(tmp_path):
    """A moco-v3 ResNet checkpoint (``MoCo_ResNet``: ``base_encoder.fc`` = projector,
    ``predictor``, ``momentum_encoder``): the imported heads compute what the torch heads do, and
    :func:`jaxssl.imports.place` lays them where MoCo v3's state keeps them."""
    from jaxssl import train
    from jaxssl.config import load_preset
    from jaxssl.models import heads

    torch.manual_seed(0)
    base = torchvision.models.resnet18(weights=None)
    base.fc = _moco_v3_mlp(2, 512, 64, 16)                  # MoCo_ResNet._build_projector_and_predictor_mlps
    predictor = _moco_v3_mlp(2, 16, 64, 16, last_bn=False)
    momentum = torchvision.models.resnet18(weights=None)
    momentum.fc = _moco_v3_mlp(2, 512, 64, 16)
    for resnet in (base, momentum):   # digits have one channel
        resnet.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    for i, module in enumerate((base, predictor, momentum)):
        _randomise_bn(module, i)
        _randomise_bn1d(module, 10 + i)
    sd = {**{f"module.base_encoder.{k}": v for k, v in base.state_dict().items()},
          **{f"module.momentum_encoder.{k}": v for k, v in momentum.state_dict().items()},
          **{f"module.predictor.{k}": v for k, v in predictor.state_dict().items()}}
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": sd}, tmp_path / "r18.pth.tar")
    imported = imports.load_source(str(tmp_path / "r18.pth.tar"))
    assert imported.entries == {"online": "state_dict/module.base_encoder.",
                                "teacher": "module.momentum_encoder."}
    assert set(imported.extra) == {"projector", "predictor"} and set(imported.teacher_extra) == {"projector"}
    assert not [k for k in imported.dropped if ".fc." in k or "predictor" in k], imported.dropped

    x = np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    for name, torch_head, jax_head, extra, stats, inp in (
            ("projector", base.fc.eval(), heads.mocov3_projector(64, 16), imported.extra,
             imported.extra_stats, x),
            ("predictor", predictor.eval(), heads.mocov3_predictor(64, 16, last_bn=False),
             imported.extra, imported.extra_stats, y),
            ("projector", momentum.fc.eval(), heads.mocov3_projector(64, 16),
             imported.teacher_extra, imported.teacher_extra_stats, x)):
        with torch.no_grad():
            want = torch_head(torch.from_numpy(inp)).numpy()
        got = jax_head.apply({"params": extra[name], "batch_stats": stats[name]},
                             jnp.asarray(inp), train=False)
        _close(got, want)

    config = load_preset("moco_digits", "v3", model__backbone="resnet18", model__stem="imagenet",
                         model__head_hidden_dim=64, model__head_output_dim=16,
                         moco__predictor_hidden_dim=64,
                         mesh__num_devices=1, eval__enabled=False)
    setup = train.Setup(config)
    params, model_state = jax.jit(setup.method.init)(jax.random.key(0))
    params, model_state, report = imports.place(imported, jax.device_get(params),
                                                jax.device_get(model_state))
    assert report["not_placed"] == [] and report["initialised"] == [], report
    np.testing.assert_array_equal(params["predictor"]["dense_1"]["kernel"],
                                  imported.extra["predictor"]["dense_1"]["kernel"])
    np.testing.assert_array_equal(params["encoder"]["projector"]["dense_0"]["kernel"],
                                  imported.extra["projector"]["dense_0"]["kernel"])
    np.testing.assert_array_equal(
        model_state["teacher"]["params"]["projector"]["dense_0"]["kernel"],
        imported.teacher_extra["projector"]["dense_0"]["kernel"])
    np.testing.assert_array_equal(
        model_state["teacher"]["batch_stats"]["projector"]["bn_1"]["var"],
        imported.teacher_extra_stats["projector"]["bn_1"]["var"])
