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
# One folder per test session (made by the first process to import this file, so pytest-xdist's
# workers and every subprocess of a test share it; removed at exit):
# * the trained WordPiece vocabularies (JAXSSL_CACHE_DIR), not ~/.cache/jaxssl: no result may
#   depend on what an earlier run left on the machine;
# * JAX's persistent compilation cache: many tests compile the same step (the same tiny preset
#   trained by several tests and files, a run and its resume, a subprocess of jaxssl.main), and
#   a compile of over half a second is then read back instead of compiled again.
if "JAXSSL_TEST_SESSION_DIR" not in os.environ:
    os.environ["JAXSSL_TEST_SESSION_DIR"] = tempfile.mkdtemp(prefix="jaxssl_test_session_")
    atexit.register(shutil.rmtree, os.environ["JAXSSL_TEST_SESSION_DIR"], ignore_errors=True)
os.environ.setdefault("JAXSSL_CACHE_DIR", os.path.join(os.environ["JAXSSL_TEST_SESSION_DIR"], "jaxssl"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.environ["JAXSSL_TEST_SESSION_DIR"], "xla"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# torch and timm (the reference libraries of the import / export parity tests; timm loads
# torch's triton extension) are loaded once, here, before any test starts threads: loading
# triton later, in a worker where gcsfs's background threads run (tests/test_remote_storage.py),
# crashed the process.
try:
    import torch  # noqa: E402,F401
    import timm  # noqa: E402,F401
except ImportError:
    pass

import jax  # noqa: E402  (after the environment is set)

assert jax.device_count() >= 8, f"expected 8 fake CPU devices, got {jax.devices()}"

import pytest  # noqa: E402

# Library code broadcasts explicitly ([:, None], jnp.broadcast_to): an implicit rank promotion
# is a shape bug waiting to happen, so the tests refuse it.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
    """After each test file: drop JAX's in-memory caches of compiled programs and traced
    functions (a pytest-xdist worker runs many files, and without this held every file's
    programs to the end: GBs per worker). A later file that compiles the same program again
    reads it from the session's persistent compilation cache."""
    yield
    jax.clear_caches()


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
