"""Protocol presets against their reference scripts: the GLUE fine-tuning schedule.

google-research/bert ``run_classifier.py``: ``num_train_steps = len(train) / 32 * 3``,
``num_warmup_steps = 0.1 * num_train_steps``; ``optimization.create_optimizer``: linear
warm-up to ``init_lr`` then linear decay to 0 at ``num_train_steps`` -- over the fine-tuning
run's own steps, whatever schedule the pretraining checkpoint was trained with.
"""
import numpy as np
import pytest

from jaxssl import config as config_lib
from jaxssl import optim
from jaxssl.config import load_preset
from jaxssl.data import batching

# tfds glue/<task> train-split sizes (GLUE; tfds catalog)
GLUE_TRAIN = {"sst2": 67_349, "mnli": 392_702}


@pytest.mark.parametrize("task", sorted(GLUE_TRAIN))
def test_bert_glue_schedule_spans_its_own_run(task):
    c = load_preset("bert_glue", task)
    batch = int(c.train.batch_size)
    per_epoch = batching.steps_per_epoch(GLUE_TRAIN[task], batch)
    total = config_lib.total_steps(c.train, per_epoch)
    assert total == 3 * (GLUE_TRAIN[task] // 32)
    _, lr = optim.build_optimizer(c.optim, global_batch=batch, total_steps=total,
                                  steps_per_epoch=per_epoch)
    steps = np.arange(total)
    rates = np.asarray(lr(steps))
    warmup = int(round(0.1 * total))
    assert int(np.argmax(rates)) == warmup
    np.testing.assert_allclose(rates.max(), 2e-5, rtol=1e-6)
    np.testing.assert_allclose(rates[warmup // 2], 2e-5 * (warmup // 2) / warmup, rtol=1e-5)
    assert rates[0] == 0.0
    assert rates[-1] < 2e-5 * 2.0 / (total - warmup)                      # ~0 at the end
    mid = (warmup + total) // 2                                            # linear decay
    np.testing.assert_allclose(rates[mid], 2e-5 * (total - mid) / (total - warmup), rtol=1e-5)
