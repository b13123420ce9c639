"""What a new user meets first: missing optional packages, bad flags, the training length, Ctrl-C.

* Every path that needs an optional package (TensorFlow, matplotlib, torch, safetensors,
  Pillow) is run in a subprocess where that package is hidden from the import system (as if
  it were not installed: ``importlib.util.find_spec`` returns None for it) and must end with
  one line naming the package and the install command, exit code 1, no traceback.
* A tfds dataset prepared as ArrayRecord is read with TensorFlow hidden.
* A bad config or flag ends with one line (field, value, fix) and exit 1; ``JAXSSL_TRACEBACK=1``
  shows the traceback.
* ``--config.train.num_steps`` alone replaces a preset's ``train.num_epochs`` (and back).
* Ctrl-C during training saves the current step and exits 130; the rerun resumes bit for bit.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

import drill_helpers

ROOT = drill_helpers.ROOT

# Run as `python -c HIDER MODULE_OR_SCRIPT ARGS...`: hide the modules named in JAXSSL_TEST_HIDE
# from every finder (so they look uninstalled), then run the module (-m) or the script.
HIDER = textwrap.dedent("""
    import os, runpy, sys
    hidden = set(filter(None, os.environ["JAXSSL_TEST_HIDE"].split(",")))
    class Hidden:
        def __init__(self, finder): self.finder = finder
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in hidden:
                return None
            return self.finder.find_spec(name, path, target)
        def __getattr__(self, attr): return getattr(self.finder, attr)
    sys.meta_path[:] = [Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
    target, sys.argv = sys.argv[1], sys.argv[1:]
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
""")


def run_hidden(hidden: list[str], target: str, *args: str, timeout: float = 180, **env_extra):
    env = drill_helpers.child_env(1, JAXSSL_TEST_HIDE=",".join(hidden))
    env.pop("JAXSSL_TRACEBACK", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", HIDER, target, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, *needles: str) -> str:
    """Exit code 1, no traceback, and stderr's only line is ``error: ...`` holding ``needles``."""
    assert result.returncode == 1, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- optional packages

def test_hidden_module_looks_uninstalled(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text("import importlib.util\n"
                      "assert importlib.util.find_spec('matplotlib') is None\n"
                      "try:\n    import matplotlib\n"
                      "except ModuleNotFoundError as e:\n    print('hidden', e.name)\n")
    r = run_hidden(["matplotlib"], str(script))
    assert r.returncode == 0 and r.stdout.strip() == "hidden matplotlib", r.stderr[-2000:]


def test_cifar_preset_without_tensorflow(tmp_path):
    r = run_hidden(["tensorflow"], "jaxssl.main", "--config=configs/simclr_cifar10.py",
                   f"--workdir={tmp_path}/w", f"--config.data.data_dir={tmp_path}/tfds")
    line = assert_one_line_error(r, "tensorflow is not installed", "pip install -e",
                                 "[data]'", "python scripts/prepare_data.py cifar10")
    assert not os.path.exists(tmp_path / "w" / "checkpoints"), line


def test_prepare_data_without_tensorflow(tmp_path):
    r = run_hidden(["tensorflow"], "scripts/prepare_data.py", "cifar10", "--data_dir", str(tmp_path))
    assert_one_line_error(r, "tensorflow is not installed", "preparing cifar10", "pip install -e", "[data]'")


def test_text_corpus_without_tensorflow(tmp_path):
    r = run_hidden(["tensorflow"], "jaxssl.main", "--config=configs/bert_pydoc.py",
                   f"--workdir={tmp_path}/w", "--config.data.name=lm1b",
                   f"--config.data.data_dir={tmp_path}/tfds")
    assert_one_line_error(r, "tensorflow is not installed", "'lm1b'", "pip install -e", "[data]'")


def test_plot_run_without_matplotlib(tmp_path):
    r = run_hidden(["matplotlib"], "scripts/plot_run.py", str(tmp_path))
    assert_one_line_error(r, "matplotlib is not installed", "plot_run", "pip install -e", "[plots]'")


@pytest.mark.parametrize("out,module", [("resnet.pt", "torch"), ("resnet.safetensors", "safetensors")])
def test_export_without_torch_or_safetensors(tmp_path, out, module):
    r = run_hidden([module], "scripts/export.py", "--config=configs/simclr_digits.py",
                   f"--workdir={tmp_path}/no_run", "--format=torchvision", f"--out={tmp_path}/{out}")
    assert_one_line_error(r, f"{module} is not installed", f"pip install {module}")


def test_imagenet_preset_without_pillow(tmp_path):
    r = run_hidden(["PIL"], "jaxssl.main", "--config=configs/simclr_imagenet.py",
                   f"--workdir={tmp_path}/w", f"--config.data.data_dir={tmp_path}/tfds")
    assert_one_line_error(r, "PIL is not installed", "imagenet2012", "pip install Pillow")


def test_pillow_is_a_declared_dependency():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    requires = [ln.split(">")[0].split(";")[0].strip().lower()
                for ln in cfg["options"]["install_requires"].splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
    assert "pillow" in requires


def test_install_command_names_the_extra_or_the_package(tmp_path, monkeypatch):
    from jaxssl import optional
    monkeypatch.chdir(ROOT)
    assert optional.install_command("tensorflow") == "pip install -e '.[data]'"
    assert optional.install_command("matplotlib") == "pip install -e '.[plots]'"
    assert optional.install_command("torch") == "pip install torch"
    monkeypatch.chdir(tmp_path)
    assert optional.install_command("matplotlib") == f"pip install -e '{ROOT}[plots]'"
    with pytest.raises(optional.MissingDependencyError, match=r"^no_such_mod_xyz is not installed: "
                       r"testing needs it; install it with: pip install no_such_mod_xyz$"):
        optional.require("no_such_mod_xyz", "testing")
    assert optional.require("json", "testing").dumps([1]) == "[1]"


# ----------------------------------------------------------------------------- ArrayRecord without TF

TINY_BUILDER = textwrap.dedent('''
    """A 32x32 RGB, 10-class dataset like cifar10, for the ArrayRecord reading test."""
    import numpy as np
    import tensorflow_datasets as tfds

    SIZES = {"train": 12, "test": 5}

    def examples(split):
        rng = np.random.default_rng(SIZES[split])
        return [(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (3 * i) % 10)
                for i in range(SIZES[split])]

    class JaxsslTinyImages(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=10)}))

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in SIZES}

        def _generate_examples(self, split):
            for i, (image, label) in enumerate(examples(split)):
                yield i, {"image": image, "label": label}
''')

READ_WITHOUT_TF = textwrap.dedent("""
    import sys
    import numpy as np
    import tiny_images_builder as tib
    from jaxssl.data import tfds_images
    tfds_images.SPLITS["jaxssl_tiny_images"] = ("train", "test")
    tfds_images.IN_MEMORY = tfds_images.IN_MEMORY + ("jaxssl_tiny_images",)
    data_dir = sys.argv[1]
    tfds_images.check_readable("jaxssl_tiny_images", "train", data_dir)
    for split in ("train", "test"):
        src = tfds_images.load_in_memory("jaxssl_tiny_images", split, data_dir)
        got = sorted((img.tobytes(), int(lab)) for img, lab in zip(src.images, src.labels))
        want = sorted((img.tobytes(), lab) for img, lab in tib.examples(split))
        assert src.images.shape == (tib.SIZES[split], 32, 32, 3) and src.num_classes == 10
        assert got == want, split
    assert "tensorflow" not in sys.modules
    print("read without tensorflow")
""")


@pytest.mark.slow
def test_array_record_dataset_is_read_in_memory_without_tensorflow(tmp_path):
    """Prepared with TensorFlow (here, by tfds' own builder) as ArrayRecord, then read in a
    process where TensorFlow is not importable; the pixels and labels are the generated ones."""
    pytest.importorskip("tensorflow")
    (tmp_path / "tiny_images_builder.py").write_text(TINY_BUILDER)
    build = ("import sys; sys.path.insert(0, sys.argv[1]); import tiny_images_builder\n"
             "import tensorflow_datasets as tfds\n"
             "tfds.builder('jaxssl_tiny_images', data_dir=sys.argv[2], "
             "file_format='array_record').download_and_prepare()\n")
    env = drill_helpers.child_env(1)
    data_dir = str(tmp_path / "tfds")
    r = subprocess.run([sys.executable, "-c", build, str(tmp_path), data_dir], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    script = tmp_path / "read.py"
    script.write_text(READ_WITHOUT_TF)
    r = run_hidden(["tensorflow"], str(script), data_dir, PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    assert r.returncode == 0 and "read without tensorflow" in r.stdout, r.stderr[-3000:]


# ----------------------------------------------------------------------------- bad config / flag

@pytest.mark.parametrize("flag,needles", [
    ("--config.train.num_stepz=5", ("--config.train.num_stepz=5", "'num_stepz'", "did you mean 'num_steps'")),
    ("--config.model.dtype=float16", ("model.dtype='float16'", "use 'float32' or 'bfloat16'")),
    ("--config=configs/no_such_preset.py", ("--config=configs/no_such_preset.py", "no such config file")),
    ("--config.train.num_steps=abc", ("--config.train.num_steps=abc", "invalid literal")),
])
def test_bad_config_or_flag_is_one_line(tmp_path, flag, needles):
    r = run_hidden([], "jaxssl.main", "--config=configs/simclr_digits.py", f"--workdir={tmp_path}/w",
                   "--config.train.num_steps=2", flag)
    assert_one_line_error(r, *needles)


def test_bad_config_argument_is_one_line(tmp_path):
    r = run_hidden([], "jaxssl.main", "--config=configs/moco_digits.py:v9", f"--workdir={tmp_path}/w")
    assert_one_line_error(r, "--config=configs/moco_digits.py:v9", "'v9'", "'v2'")


def test_traceback_on_request(tmp_path):
    args = ("jaxssl.main", "--config=configs/simclr_digits.py", f"--workdir={tmp_path}/w",
            "--config.model.dtype=float16")
    r = run_hidden([], *args, JAXSSL_TRACEBACK="1")
    assert r.returncode == 1 and "Traceback" in r.stderr and "model.dtype='float16'" in r.stderr
    r = run_hidden([], *args, "--debug_traceback")
    assert r.returncode == 1 and "Traceback" in r.stderr


# ----------------------------------------------------------------------------- training length

def test_num_steps_alone_on_the_command_line_replaces_num_epochs(preset):
    from jaxssl import config as config_lib
    from jaxssl.main import apply_length_override
    c = preset("simclr_digits")
    assert c.train.num_epochs > 0 and c.train.num_steps == 0
    c.train.num_steps = 20
    with pytest.raises(ValueError, match="set exactly one"):  # the rule for Python-built configs
        config_lib.validate(c)
    note = apply_length_override(c, {"train.num_steps": 20, "eval.enabled": False})
    assert (c.train.num_steps, c.train.num_epochs) == (20, 0.0)
    assert note == ("train.num_steps=20 from the command line replaces the preset's "
                    "train.num_epochs=300.0 (set to 0)")
    config_lib.validate(c)

    c = preset("simclr_digits")  # and back: num_epochs alone over a num_steps preset
    c.train.num_epochs, c.train.num_steps = 0.0, 100
    c.train.num_epochs = 2.0
    assert apply_length_override(c, {"train.num_epochs": 2.0}) is not None
    assert (c.train.num_steps, c.train.num_epochs) == (0, 2.0)

    c = preset("simclr_digits")  # both given: left for validate to refuse
    c.train.num_steps = 20
    assert apply_length_override(c, {"train.num_steps": 20, "train.num_epochs": 300.0}) is None
    assert (c.train.num_steps, c.train.num_epochs) == (20, 300.0)


@pytest.mark.slow
def test_first_log_line_says_num_steps_replaced_num_epochs(tmp_path):
    r = run_hidden([], "jaxssl.main", "--config=configs/simclr_digits.py", f"--workdir={tmp_path}/w",
                   "--config.train.num_steps=2", "--config.train.batch_size=64",
                   "--config.optim.warmup_epochs=0.0", "--config.eval.enabled=False", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    first = r.stdout.splitlines()[0]
    assert first == ("train.num_steps=2 from the command line replaces the preset's "
                     "train.num_epochs=300.0 (set to 0)"), r.stdout[:2000]
    assert "2 steps" in r.stdout.splitlines()[1]


# ----------------------------------------------------------------------------- Ctrl-C

def test_second_ctrl_c_stops_at_once():
    """The watch's handlers in a bare process: the first SIGINT is a stop request, the second
    ends the process by SIGINT's default action."""
    code = textwrap.dedent("""
        import os, signal
        from jaxssl import train
        watch = train.PreemptionWatch()
        os.kill(os.getpid(), signal.SIGINT)
        print("stop", watch.should_stop(0), train.PreemptionWatch.stop_signal == signal.SIGINT, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        print("still running", flush=True)
    """)
    r = subprocess.run([sys.executable, "-c", code], env=drill_helpers.child_env(1), cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGINT, (r.returncode, r.stdout, r.stderr[-2000:])
    assert r.stdout.splitlines() == ["stop True True"], r.stdout
    assert "Ctrl-C again: stopping now" in r.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "first_contact_jax_cache"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.mark.slow
def test_ctrl_c_saves_the_step_exits_130_and_the_rerun_is_bit_identical(tmp_path, cache):
    env = drill_helpers.child_env(2, cache)
    ref, split = str(tmp_path / "uninterrupted"), str(tmp_path / "interrupted")
    rc, out = drill_helpers.run_main(ref, env, str(tmp_path / "ref.log"))
    assert rc == 0, drill_helpers.tail(out)

    proc = drill_helpers.Proc(drill_helpers.main_argv(split), env, str(tmp_path / "int.log"))
    try:
        proc.wait_for(r"step 6/40 ", 300)
        os.kill(proc.pid, signal.SIGINT)
        rc = proc.wait(120)
        text = proc.text()
    finally:
        proc.kill()
    assert rc == 130, drill_helpers.tail(text)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, drill_helpers.tail(text)
    m = re.search(r"SIGINT \(Ctrl-C\): saving step (\d+) and exiting with code 130", text)
    assert m, drill_helpers.tail(text)
    step = int(m.group(1))
    assert step >= 6 and step in drill_helpers.finished_steps(split)
    assert (f"SIGINT (Ctrl-C): checkpoint {split}/checkpoints/{step} written; rerun the same "
            "command to resume") in text

    # Twice: the process stops at once (or, if the save finished first, exits 130); either
    # way the checkpoints left are complete and the rerun ends bit-identical.
    proc = drill_helpers.Proc(drill_helpers.main_argv(split), env, str(tmp_path / "int2.log"))
    try:
        proc.wait_for(rf"resuming from \S+/{step}\n", 300)
        proc.wait_for(rf"step {step + 3}/40 ", 300)
        os.kill(proc.pid, signal.SIGINT)
        proc.wait_for(r"Ctrl-C: finishing the current step", 60)
        os.kill(proc.pid, signal.SIGINT)
        rc2 = proc.wait(120)
    finally:
        proc.kill()
    assert rc2 in (-signal.SIGINT, 130), drill_helpers.tail(proc.text())

    rc, out = drill_helpers.run_main(split, env, str(tmp_path / "final.log"))
    assert rc == 0, drill_helpers.tail(out)
    assert drill_helpers.state_hashes(split) == drill_helpers.state_hashes(ref)
