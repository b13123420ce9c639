"""scripts/import_weights.py and --config.init_from=SRC end to end: round trips through the
CLIs, a protocol preset from an imported BERT, a probe of an imported ViT, continued DINO
pretraining that resumes bit for bit after SIGKILL, and the one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import drill_helpers

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

ROOT = drill_helpers.ROOT


def _run(args, tmp_path, devices=1, timeout=900, **env):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, capture_output=True, text=True,
                          env=drill_helpers.child_env(devices, **env), timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _save_timm_vit(path, **kwargs):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **kwargs)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


@pytest.mark.slow
def test_timm_vit_safetensors_round_trip_through_import_and_export(tmp_path):
    from safetensors.numpy import load_file
    src = tmp_path / "vit_small_patch16_224.safetensors"
    _save_timm_vit(src)
    rc, out = _run(["scripts/import_weights.py", str(src), "--config=configs/dino_imagenet.py:vit_s16",
                    f"--workdir={tmp_path / 'w'}"], tmp_path, devices=8)
    assert rc == 0, out[-3000:]
    summary = json.loads((tmp_path / "w" / "import.json").read_text())
    assert summary["format"] == "vit" and "model.posemb='learned'" in summary["overrides"]
    rc, out = _run(["scripts/export.py", "--config=configs/dino_imagenet.py:vit_s16",
                    f"--workdir={tmp_path / 'w'}", "--format=timm",
                    f"--out={tmp_path / 'back.safetensors'}"], tmp_path)
    assert rc == 0, out[-3000:]
    a, b = load_file(str(src)), load_file(str(tmp_path / "back.safetensors"))
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_moco_v2_resnet50_round_trip_through_import_and_export(tmp_path):
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 1.5)
    sd = {f"module.encoder_q.{k}": v for k, v in model.state_dict().items()}
    src = tmp_path / "checkpoint_0199.pth.tar"
    torch.save({"epoch": 200, "arch": "resnet50", "state_dict": sd}, src)
    rc, out = _run(["scripts/import_weights.py", str(src), "--config=configs/mocov2_imagenet.py",
                    f"--workdir={tmp_path / 'w'}"], tmp_path, devices=8)
    assert rc == 0, out[-3000:]
    rc, out = _run(["scripts/export.py", "--config=configs/mocov2_imagenet.py",
                    f"--workdir={tmp_path / 'w'}", "--format=torchvision",
                    f"--out={tmp_path / 'back.pth'}"], tmp_path)
    assert rc == 0, out[-3000:]
    back = torch.load(tmp_path / "back.pth")
    original = model.state_dict()
    # fc (torchvision's 1000-way classifier) has no place in an SSL backbone: import.json names it.
    assert set(original) - set(back) == {"fc.weight", "fc.bias"}
    for key, value in back.items():
        assert torch.equal(value, original[key]), key


def _pydoc_vocab(tmp_path) -> str:
    from jaxssl import config as config_lib
    from jaxssl.data import text_source
    c = config_lib.load_preset("bert_pydoc")
    docs = text_source.read_documents(c.data, "train")
    c.data.cache_dir = str(tmp_path / "cache")
    _, path = text_source.obtain_vocabulary(c.data, docs)
    return path


@pytest.mark.slow
def test_bert_pydoc_classify_fine_tunes_from_an_imported_hf_bert(tmp_path):
    vocab = _pydoc_vocab(tmp_path)
    size = sum(1 for _ in open(vocab))
    config = transformers.BertConfig(vocab_size=size, hidden_size=128, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=512,
                                     max_position_embeddings=128, hidden_act="gelu")
    torch.manual_seed(0)
    folder = tmp_path / "hf_bert"
    transformers.BertForMaskedLM(config).save_pretrained(str(folder))
    (folder / "vocab.txt").write_text(open(vocab).read())
    work = tmp_path / "cls"
    rc, out = _run(["-m", "jaxssl.main", "--config=configs/bert_pydoc_classify.py",
                    f"--workdir={work}", f"--config.init_from={folder}",
                    "--config.train.num_steps=3", "--config.train.num_epochs=0"], tmp_path)
    assert rc == 0, out[-3000:]
    assert "loaded" in out and "(bert," in out
    results = json.loads((work / "eval_results.json").read_text())
    assert "pretrained" in results and 0.0 <= results["pretrained"]["accuracy"] <= 1.0


@pytest.mark.slow
def test_imported_timm_vit_is_probed_with_mae_digits_evaluation(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, in_chans=1, embed_dim=128, depth=4, num_heads=4,
        num_classes=0)
    src = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
    rc, out = _run(["scripts/import_weights.py", str(src), "--config=configs/mae_digits.py",
                    f"--workdir={tmp_path / 'w'}"], tmp_path)
    assert rc == 0, out[-3000:]
    rc, out = _run(["scripts/evaluate.py", "--config=configs/mae_digits.py",
                    "--config.model.posemb=learned", f"--workdir={tmp_path / 'w'}"], tmp_path)
    assert rc == 0, out[-3000:]
    results = json.loads((tmp_path / "w" / "eval_results_step0.json").read_text())
    assert 0.0 <= results["mae"]["linear_10"] <= 1.0, results


DINO_TINY = {"model.backbone": "vit_tiny", "model.patch_size": 4, "model.vit_hidden_dim": 32,
             "model.vit_depth": 1, "model.vit_num_heads": 2, "train.num_epochs": 0.0,
             "train.num_steps": 8, "train.batch_size": 32, "train.log_every_steps": 1,
             "train.checkpoint_every_steps": 2, "eval.enabled": False,
             "dino.out_dim": 64, "dino.head_hidden_dim": 32, "dino.head_bottleneck_dim": 16,
             "dino.local_crops_number": 2, "optim.warmup_epochs": 0.0,
             "dino.warmup_teacher_temp_epochs": 0}


@pytest.mark.slow
def test_continued_dino_pretraining_from_an_import_resumes_bit_for_bit(tmp_path):
    from safetensors.torch import save_file
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2, num_classes=0)
    src = tmp_path / "dino_vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
    cache = str(tmp_path / "jax_cache")

    def argv(workdir):
        return ([sys.executable, "-m", "jaxssl.main", "--config=configs/dino_digits.py",
                 f"--workdir={workdir}", f"--config.train.init_from={src}"]
                + [f"--config.{k}={v}" for k, v in DINO_TINY.items()])

    env = drill_helpers.child_env(2, cache)
    straight = str(tmp_path / "straight")
    ref = drill_helpers.Proc(argv(straight), env, str(tmp_path / "straight.log"))
    assert ref.wait(600) == 0, drill_helpers.tail(ref.text())
    ref.kill()
    assert "init_from" in ref.text() and "(vit," in ref.text()
    killed = str(tmp_path / "killed")
    proc = drill_helpers.Proc(argv(killed), env, str(tmp_path / "killed.log"))
    proc.wait_for(r"step\s+5\b", 600)
    proc.kill()
    assert 8 not in drill_helpers.finished_steps(killed)
    again = drill_helpers.Proc(argv(killed), env, str(tmp_path / "again.log"))
    assert again.wait(600) == 0, drill_helpers.tail(again.text())
    again.kill()
    assert "resuming from" in again.text()
    assert (drill_helpers.state_hashes(os.path.join(straight, "checkpoints", "8"))
            == drill_helpers.state_hashes(os.path.join(killed, "checkpoints", "8")))


@pytest.mark.slow
def test_import_errors_are_one_line(tmp_path):
    from safetensors.numpy import save_file
    bad = tmp_path / "odd.safetensors"
    save_file({"foo.weight": np.zeros((2, 2), np.float32)}, str(bad))
    vit = tmp_path / "vit.safetensors"
    _save_timm_vit(vit, img_size=32, depth=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        ([str(bad), "--config=configs/simclr_digits.py", f"--workdir={tmp_path / 'a'}"],
         "cannot tell the format"),
        ([str(tmp_path / "missing.pth"), "--config=configs/simclr_digits.py",
          f"--workdir={tmp_path / 'b'}"], "does not exist"),
        ([str(vit), "--config=configs/simclr_digits.py", f"--workdir={tmp_path / 'full'}"],
         "is not empty"),
        ([str(vit), "--config=configs/simclr_digits.py", f"--workdir={tmp_path / 'c'}"],
         "has no vit encoder"),
    ]
    for args, expected in cases:
        rc, out = _run(["scripts/import_weights.py"] + args, tmp_path)
        lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(("W1", "I1"))]
        assert rc == 1 and expected in out and "Traceback" not in out, out[-2000:]
        assert len([ln for ln in lines if ln.startswith("error:")]) == 1, out[-2000:]
