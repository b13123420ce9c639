"""Golden numbers: the first three training losses of each method on a tiny CPU run.

Every other test compares jaxssl with a reference or with itself on another device count;
none would notice a change of initialisation, augmentation order, view wiring or head
layout that keeps a method self-consistent. These do: each method runs three jitted train
steps of its digits (or pydoc) preset on one device at batch 16 and the losses must equal
the pinned values to 1e-4 relative. A deliberate change of a recipe re-pins them, and the
commit says why (last: the SimCLR v1 head's output BN; MoCo v3's ViT predictor BN, sin-cos
layout and input normalisation; MAE's encoder init and token decay; BERT's num_to_predict
count -- each value reproduced on the branch that made only that recipe change; BERT's
WordPiece vocabulary, now trained deterministically: Hugging Face's trainer numbered its pieces
in a per-process random order, so the pinned BERT losses held only on a machine whose vocabulary
cache happened to hold the vocabulary they were pinned with).
"""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from jaxssl import train
from jaxssl.config import load_preset
from jaxssl import train_state as state_lib

SMALL = {"train.batch_size": 16, "train.num_steps": 3, "train.num_epochs": 0.0,
         "mesh.num_devices": 1, "optim.warmup_epochs": 0.0, "eval.enabled": False}

# name -> (config file, config arg, extra overrides, the three losses).
PINNED = {
    "simclr_digits": ("configs/simclr_digits.py", None, {}, [3.2598815, 3.2368565, 3.4859178]),
    "moco_digits_v2": ("configs/moco_digits.py", "v2", {"moco.queue_size": 64}, [0.94761336, 2.6250296, 3.5237217]),
    "moco_digits_v3_vit": ("configs/moco_digits.py", "v3_vit", {}, [2.4525859, 2.3857594, 2.3406475]),
    "mae_digits": ("configs/mae_digits.py", None, {}, [2.6226463, 2.0617716, 1.5749570]),
    "byol_digits": ("configs/byol_digits.py", None, {}, [3.9051137, 4.1616182, 3.9715509]),
    "simsiam_digits": ("configs/simsiam_digits.py", None, {}, [0.015032947, 0.0054291189, -0.0010240078]),
    "barlow_digits": ("configs/barlow_digits.py", None, {}, [23.530727, 23.687370, 24.621408]),
    "vicreg_digits": ("configs/vicreg_digits.py", None, {}, [21.995983, 22.180042, 22.474590]),
    "dino_digits": ("configs/dino_digits.py", None, {}, [6.9276695, 6.8541269, 7.0460219]),
    "bert_pydoc": ("configs/bert_pydoc.py", None, {"data.seq_len": 32,
                                                   "mlm.max_predictions": 5}, [7.5905180, 7.4238486, 7.4992952]),
}


def three_losses(path: str, arg, overrides: dict) -> list[float]:
    name = os.path.splitext(os.path.basename(path))[0]
    config = load_preset(name, arg, **{k.replace(".", "__"): v
                                       for k, v in dict(SMALL, **overrides).items()})
    setup = train.Setup(config)
    state = state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    step_fn = jax.jit(train.make_train_step(setup.method, setup.tx, setup.lr_fn))
    out = []
    for step in range(3):
        with jax.transfer_guard("disallow"):  # no implicit host-to-device copy in a step
            state, metrics = step_fn(state, setup.feeder(step))
        out.append(float(metrics["loss"]))
    return out


@pytest.mark.parametrize("name", sorted(PINNED))
def test_first_three_losses_are_pinned(name, tmp_path, monkeypatch):
    path, arg, overrides, pinned = PINNED[name]
    if name == "bert_pydoc":
        # The vocabulary and token arrays from this test's own build, not from the session's
        # vocabulary cache or the in-process text-data cache that other test files fill. (The
        # losses once differed with torch imported: it replaces inspect.getfile, whose docstring
        # was part of the corpus; the corpus is now read in a clean interpreter.)
        from jaxssl.data import text_source
        monkeypatch.setenv("JAXSSL_CACHE_DIR", str(tmp_path))
        text_source._load_cached.cache_clear()  # noqa: SLF001
    got = three_losses(path, arg, overrides)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, pinned, rtol=1e-4, err_msg=name)
