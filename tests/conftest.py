"""Test setup: 8 fake CPU devices, forced before jax is imported anywhere.

Sharding tests build meshes over the first 1, 2, 4 or 8 of these devices.
"""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # keep TensorFlow off any GPU
# Trained WordPiece vocabularies go to a cache of this test session, not ~/.cache/jaxssl: no
# result may depend on what an earlier run left on the machine.
if "JAXSSL_CACHE_DIR" not in os.environ:
    os.environ["JAXSSL_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxssl_test_cache_")
    atexit.register(shutil.rmtree, os.environ["JAXSSL_CACHE_DIR"], ignore_errors=True)

import jax  # noqa: E402  (after the environment is set)

assert jax.device_count() >= 8, f"expected 8 fake CPU devices, got {jax.devices()}"

import pytest  # noqa: E402

# Library code broadcasts explicitly ([:, None], jnp.broadcast_to): an implicit rank promotion
# is a shape bug waiting to happen, so the tests refuse it.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def preset():
    """:func:`jaxssl.config.load_preset`: ``preset('simclr_digits', arg, train__num_steps=3)``."""
    from jaxssl.config import load_preset
    return load_preset


@pytest.fixture
def step_transfer_guard(monkeypatch):
    """``jaxssl.train.run`` feeds and dispatches every step under
    ``jax.transfer_guard('disallow')``: an implicit host-to-device copy in the loop fails the
    test (explicit ``jax.device_put`` in the feeders stays allowed). Subprocesses inherit it."""
    monkeypatch.setenv("JAXSSL_STEP_TRANSFER_GUARD", "disallow")
