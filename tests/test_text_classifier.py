"""BERT text classification in the trainer: the masked-language encoder loads, the run
resumes like pretraining, GLUE presets run under tfds mock data."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from jaxssl import checkpoint, train
from jaxssl.config import load_preset

TINY_MLM = dict(train__batch_size=16, train__num_steps=2, train__num_epochs=0.0,
                train__checkpoint_every_steps=2, train__log_every_steps=2,
                eval__enabled=False, mesh__num_devices=1, data__seq_len=32,
                mlm__max_predictions=5, optim__warmup_fraction=0.0)
TINY_CLS = dict(train__batch_size=16, train__num_steps=3, train__num_epochs=0.0,
                train__checkpoint_every_steps=3, train__log_every_steps=3,
                mesh__num_devices=1, data__seq_len=32, optim__warmup_fraction=0.0)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("mlm"))
    train.run(load_preset("bert_pydoc", **TINY_MLM), workdir)
    return workdir


def test_pydoc_classify_loads_the_encoder_and_reports_baselines(mlm_run, tmp_path):
    config = load_preset("bert_pydoc_classify", init_from=mlm_run, **TINY_CLS)
    setup = train.Setup(config)
    state0 = train.state_lib.create(setup.init_fn, setup.tx, setup.mesh)
    loaded, names = setup.method.init_from(mlm_run, state0, setup.mesh)
    ckpt = checkpoint.Checkpointer(mlm_run, async_save=False)
    pre = checkpoint.load_tree(mlm_run)[0]
    ckpt.close()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(loaded.params["bert"]),
                 jax.device_get(pre["params"]["bert"]))
    assert names == ["params/bert"]

    workdir = str(tmp_path / "cls")
    train.run(config, workdir)
    with open(os.path.join(workdir, "eval_results.json")) as f:
        results = json.load(f)
    assert set(results) == {"pretrained", "random_init", "majority_class"}
    for group in results.values():
        assert set(group) == {"accuracy"} and 0.0 <= group["accuracy"] <= 1.0
    # The vocabulary of the pretraining run is the one used (and copied next to the run).
    assert open(os.path.join(workdir, "vocab.txt")).read() == \
        open(os.path.join(mlm_run, "vocab.txt")).read()


def test_missing_vocabulary_is_a_one_line_config_error(tmp_path):
    config = load_preset("bert_pydoc_classify", init_from="random", **TINY_CLS)
    with pytest.raises(ValueError, match=r"data\.vocab_file=''.*init_from"):
        train.run(config, str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "mnli"])
def test_glue_preset_runs_under_mock_data(task, mlm_run, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    config = load_preset("bert_glue", task, model__backbone="bert_tiny", init_from="random",
                         data__vocab_file=os.path.join(mlm_run, "vocab.txt"), **TINY_CLS)
    with tfds.testing.mock_data(num_examples=24):
        results = train.run(config, str(tmp_path))
    assert 0.0 <= results["random_init"]["accuracy"] <= 1.0
