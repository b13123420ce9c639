"""Every command line in README.md and docs/*.md runs as documented (or is excluded, with a reason).

Commands are read from the fenced ``bash``/``sh``/``shell`` blocks of the files (lines joined
at a trailing backslash, comments dropped), so a new documented command is run by default.
Each runs with ``bash -c`` in a scratch directory that links ``configs/`` and ``scripts/`` of
this checkout (relative outputs such as ``runs/...`` land there; absolute ``/tmp/...`` paths
are moved into it), with ``python`` on PATH being this interpreter. The test may append
:data:`SMALL` to a ``jaxssl.main`` command that does not set its own length (a short run
proves the command line; the presets' full runs are the presets' business). A command passes
when it exits with 0 (or the code the docs promise, :data:`EXPECTED_EXIT`).

:data:`EXCLUDED` lists the commands that cannot run here (a TPU pod, a SLURM cluster, network
downloads, ImageNet, packages this environment lacks), each with its reason; a stale entry
(matching no documented command) fails :func:`test_every_exclusion_matches_a_documented_command`.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC_FILES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
SHELL_FENCES = ("bash", "sh", "shell")

# Appended to a jaxssl.main command that sets neither train.num_steps nor train.num_epochs.
SMALL = ("--config.train.num_steps=2", "--config.optim.warmup_epochs=0.0", "--config.eval.enabled=False")

# regex (searched in the one-line command) -> why it is not run here.
EXCLUDED = {
    r"^bash scripts/quickstart\.sh$": "pip-installs jaxssl (into .venv outside a virtual "
                                      "environment) and trains for minutes; checked on a fresh clone",
    r"^bash scripts/test\.sh$": "runs this test suite",
    r"configs/FILE\.py\[:VARIANT\]": "a template: FILE, VARIANT, DIR and KEY=VALUE are placeholders",
    r"launch_tpu_pod\.sh": "needs a Cloud TPU pod slice and gcloud",
    r"^sbatch ": "needs a SLURM cluster with GPUs",
    r"JAX_COORDINATOR_ADDRESS=hostA": "needs two GPU hosts named hostA and hostB",
    r"prepare_data\.py (cifar10|lm1b|wikipedia)": "downloads the dataset (network)",
    r"configs/simclr_cifar10\.py --workdir=runs/simclr_c10": "needs CIFAR-10 prepared (network)",
    r"--config\.data\.name=lm1b": "needs lm1b prepared (network)",
    r"export\.py --config=configs/simclr_cifar10\.py": "needs a CIFAR-10 run and torch "
                                                       "(tests/test_export.py checks the conversion)",
    r"export\.py --config=configs/mae_vit_base_imagenet\.py": "needs an ImageNet MAE run",
    r"export\.py --config=configs/bert_pydoc\.py": "needs safetensors, not installed by the test "
                                                   "extra (tests/test_export.py checks the conversion)",
    r"scripts/setup_peers\.sh": "builds the PyTorch and Flax peers' environments (~3-6 GB download)",
    r"scripts/benchmark\.py": "minutes to hours; tests/test_benchmark_script.py runs its plumbing",
    r"--config\.init_from=": "starts from a pretraining run the docs make first (minutes); "
                             "tests/test_classifier.py and tests/test_text_classifier.py run "
                             "the same commands on tiny pretraining runs",
    r"import_weights\.py \S+\.pth": "needs the released checkpoint file (no network here); "
                                    "tests/test_import_cli.py runs the same commands on randomly "
                                    "initialised models saved the way those files are",
    r"evaluate\.py --config=configs/mocov2_imagenet\.py": "needs an ImageNet run; "
                                                          "tests/test_streamed_eval.py evaluates "
                                                          "every ImageNet preset under mock data",
}

# regex -> the exit code the docs promise for it here.
EXPECTED_EXIT = {
    r"prepare_data\.py imagenet2012": 2,  # "Without the archives the script exits with code 2"
}

SLOW_PATTERNS = (r"launch_multigpu\.sh", r"jaxssl\.main", r"plot_run\.py")


def documented_commands() -> list[tuple[str, int, str]]:
    """``(file, line, command)`` for every command line of the shell code blocks of the docs."""
    out = []
    for rel in DOC_FILES:
        with open(os.path.join(ROOT, rel)) as f:
            lines = f.read().splitlines()
        fence, pending, start = None, "", 0
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = None if fence is not None else (stripped[3:].strip() or "text")
                continue
            if fence not in SHELL_FENCES:
                continue
            text = _drop_comment(line).rstrip()
            if not pending:
                start = number
            if text.endswith("\\"):
                pending += text[:-1].strip() + " "
                continue
            command = (pending + text.strip()).strip()
            pending = ""
            if command:
                out.append((rel, start, command))
    return out


def _drop_comment(line: str) -> str:
    """``line`` without a shell comment (a ``#`` at a word start, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def excluded_reason(command: str) -> str | None:
    for pattern, reason in EXCLUDED.items():
        if re.search(pattern, command):
            return reason
    return None


COMMANDS = documented_commands()
# The same command in several files is run once.
RUN = {}
for _file, _line, _cmd in COMMANDS:
    if excluded_reason(_cmd) is None:
        RUN.setdefault(_cmd, f"{_file}:{_line}")


def test_commands_are_found_in_readme_and_docs():
    files = {f for f, _, _ in COMMANDS}
    assert {"README.md", "docs/ecosystem.md"} <= files, files
    assert any("launch_multigpu.sh --local 2 --cpu" in c for c in RUN), "README's 2-process example"
    assert all("\\" not in c and not c.startswith("#") for _, _, c in COMMANDS)


def test_every_exclusion_matches_a_documented_command():
    for pattern in EXCLUDED:
        assert any(re.search(pattern, c) for _, _, c in COMMANDS), f"stale exclusion {pattern!r}"


# ----------------------------------------------------------------------------- running them

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """The directory commands run in: configs/ and scripts/ of the checkout, `python` on PATH."""
    d = tmp_path_factory.mktemp("doc_commands")
    for name in ("configs", "scripts"):
        os.symlink(os.path.join(ROOT, name), d / name)
    bin_dir = d / "_bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):  # a wrapper, not a symlink: a venv's python stays in its venv
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        wrapper.chmod(0o755)
    return d


def command_env(scratch) -> dict:
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env.update(XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               PATH=f"{scratch / '_bin'}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("JAX_NUM_CPU_DEVICES", None)
    for name in ("VIRTUAL_ENV", "JAXSSL_TRACEBACK"):
        env.pop(name, None)
    return env


def prepared(command: str, scratch) -> str:
    """The command as run: /tmp/... moved into ``scratch``, :data:`SMALL` appended if needed."""
    command = re.sub(r"(?<![\w./-])/tmp/", f"{scratch}/abs_tmp/", command)
    runs_main = "jaxssl.main" in command or "launch_multigpu.sh" in command
    if runs_main and "train.num_steps" not in command and "train.num_epochs" not in command:
        command += " " + " ".join(SMALL)
    return command


def run_in(scratch, command: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=scratch, env=command_env(scratch),
                          capture_output=True, text=True, timeout=timeout)


def make_photos(scratch) -> None:
    """``my_photos/{cat,dog}/*.png``: 45 small images per class (the image-folder example)."""
    from PIL import Image
    root = scratch / "my_photos"
    if root.exists():
        return
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for k in range(45):
            pixels = rng.integers(0, 128, (20, 24, 3), dtype=np.uint8) + 100 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{k:03d}.png")


def ensure_prerequisites(command: str, scratch) -> None:
    """What a documented command assumes was done before it (an earlier command or a run)."""
    if "--src my_photos" in command:
        make_photos(scratch)
    if "--config.data.data_dir=data/my_photos" in command and not (scratch / "data" / "my_photos").exists():
        make_photos(scratch)
        r = run_in(scratch, "python scripts/prepare_data.py image_folder --src my_photos "
                            "--data_dir data/my_photos --image_size 64")
        assert r.returncode == 0, r.stderr[-3000:]
    if "plot_run.py runs/simclr_digits" in command and not (scratch / "runs" / "simclr_digits" / "metrics.jsonl").exists():
        r = run_in(scratch, "python -m jaxssl.main --config=configs/simclr_digits.py "
                            "--workdir=runs/simclr_digits --config.train.num_steps=4 "
                            "--config.train.log_every_steps=1 --config.optim.warmup_epochs=0.0 "
                            "--config.eval.enabled=False")
        assert r.returncode == 0, r.stderr[-3000:]


def _params():
    for command, where in RUN.items():
        marks = [pytest.mark.slow] if any(re.search(p, command) for p in SLOW_PATTERNS) else []
        yield pytest.param(command, id=where, marks=marks)


@pytest.mark.parametrize("command", list(_params()))
def test_documented_command_runs(command, scratch):
    if "plot_run.py" in command:
        pytest.importorskip("matplotlib", reason="plot_run.py needs matplotlib ('.[plots]')")
    ensure_prerequisites(command, scratch)
    run = prepared(command, scratch)
    want = next((rc for p, rc in EXPECTED_EXIT.items() if re.search(p, command)), 0)
    r = run_in(scratch, run)
    assert r.returncode == want, (f"{RUN[command]}: `{run}` exited {r.returncode} (want {want})\n"
                                  f"{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    assert "Traceback" not in r.stderr, r.stderr[-3000:]


# ----------------------------------------------------------------------------- names in the docs
# Every preset, variant, config field, script, module and test file README.md and docs/*.md
# name must exist: the prose and tables as well as the commands. Placeholders are written in
# capitals (FILE, VARIANT, KEY) or with <angle brackets> and are not names.

SECTIONS = ("data", "augment", "model", "loss", "optim", "train", "eval", "mesh", "monitor",
            "classifier", "mae", "mlm", "moco", "simclr", "byol", "simsiam", "barlow", "vicreg",
            "dino", "teacher")
PRESET_MENTION = re.compile(r"(?<![\w/.-])configs/([a-z0-9_]+)\.py(?::([a-z0-9_]+))?")
BARE_PRESET = re.compile(r"`([a-z0-9_]+)\.py(?::([a-z0-9_]+))?`((?: \((?:`:[a-z0-9_]+`(?:, )?|\.\.\.(?:, )?)+\))?)")
PRESET_PREFIX = r"(simclr|moco|mocov2|mocov3|byol|simsiam|barlow|vicreg|dino|mae|bert)_"
# Wrong on purpose: the docs show them as inputs that are refused.
WRONG_ON_PURPOSE = {"train.batch_szie", "trian.num_steps"}
FIELD_FLAG = re.compile(r"--config\.([a-z0-9_.]+)=")
FIELD_NAME = re.compile(rf"`((?:{'|'.join(SECTIONS)})\.[a-z0-9_]+(?:\.[a-z0-9_]+)*)(?:=[^`]*)?`")
SCRIPT = re.compile(r"(?<![\w/.-])scripts/([A-Za-z0-9_.-]+\.(?:py|sh))")
MODULE = re.compile(r"python3? -m (jaxssl(?:\.[a-z0-9_]+)*)")
TEST_FILE = re.compile(r"tests/(test_[a-z0-9_]+\.py)")


def _doc_texts() -> dict[str, str]:
    out = {}
    for rel in DOC_FILES:
        with open(os.path.join(ROOT, rel)) as f:
            out[rel] = f.read()
    return out


def _preset_names() -> set[str]:
    return {f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py")}


def _leaf_paths(node, prefix="") -> set[str]:
    out = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        out.add(path)
        if hasattr(value, "items"):
            out |= _leaf_paths(value, path + ".")
    return out


@pytest.fixture(scope="module")
def preset_fields():
    """Every dotted field path of every preset (loaded with its default argument)."""
    from jaxssl.config import load_preset
    return {name: _leaf_paths(load_preset(name)) for name in _preset_names()}


def _is_code_name(name: str) -> bool:
    """``train.run``, ``augment.py``: a jaxssl module, function or file, not a config field."""
    import importlib
    if name.endswith((".py", ".sh", ".md", ".json", ".jsonl")):
        return True
    module, _, attr = f"jaxssl.{name}".rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def _mentions() -> list[tuple[str, int, str, str | None, str]]:
    """``(file, line, preset, variant, the line's text)`` for every preset the docs name."""
    presets, out = _preset_names(), []
    for rel, text in _doc_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for m in PRESET_MENTION.finditer(line):
                out.append((rel, number, m.group(1), m.group(2), line))
            for m in BARE_PRESET.finditer(line):
                name = m.group(1)
                if name not in presets and not re.match(PRESET_PREFIX, name):
                    continue  # a reference repository's file (main_lincls.py, run.py, ...)
                out.append((rel, number, name, m.group(2), line))
                for variant in re.findall(r"`:([a-z0-9_]+)`", m.group(3)):
                    out.append((rel, number, name, variant, line))
    return out


def test_every_preset_and_variant_the_docs_name_exists():
    from jaxssl.config import load_preset
    presets, bad, seen = _preset_names(), [], set()
    for rel, number, name, variant, _ in _mentions():
        if (name, variant) in seen:
            continue
        seen.add((name, variant))
        if name not in presets:
            bad.append(f"{rel}:{number}: configs/{name}.py does not exist")
            continue
        try:
            load_preset(name, variant)
        except ValueError as e:
            bad.append(f"{rel}:{number}: configs/{name}.py:{variant}: {e}")
    assert not bad, "\n".join(bad)
    assert len(seen) > 40  # the parser still finds the presets


def test_every_config_field_the_docs_name_exists(preset_fields):
    every = set().union(*preset_fields.values())
    bad, checked = [], 0
    for rel, text in _doc_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            named = [m.group(1) for m in PRESET_MENTION.finditer(line)
                     if m.group(1) in preset_fields]
            for m in FIELD_FLAG.finditer(line):
                checked += 1
                field = m.group(1)
                if field in WRONG_ON_PURPOSE:
                    continue
                # a field set on a command line must be a field of that command's preset
                if named and not any(field in preset_fields[n] for n in named):
                    bad.append(f"{rel}:{number}: --config.{field} is not a field of {named}")
                elif field not in every:
                    bad.append(f"{rel}:{number}: --config.{field} is not a field of any preset")
            for m in FIELD_NAME.finditer(line):
                checked += 1
                if m.group(1) not in every and not _is_code_name(m.group(1)):
                    bad.append(f"{rel}:{number}: `{m.group(1)}` is not a field of any preset")
    assert not bad, "\n".join(bad)
    assert checked > 50  # the parser still finds the fields


def test_every_script_module_and_test_file_the_docs_name_exists():
    import importlib.util
    bad = []
    for rel, text in _doc_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for m in SCRIPT.finditer(line):
                if not os.path.isfile(os.path.join(ROOT, "scripts", m.group(1))):
                    bad.append(f"{rel}:{number}: scripts/{m.group(1)} does not exist")
            for m in TEST_FILE.finditer(line):
                if not os.path.isfile(os.path.join(ROOT, "tests", m.group(1))):
                    bad.append(f"{rel}:{number}: tests/{m.group(1)} does not exist")
            for m in MODULE.finditer(line):
                if importlib.util.find_spec(m.group(1)) is None:
                    bad.append(f"{rel}:{number}: python -m {m.group(1)}: no such module")
    assert not bad, "\n".join(bad)


def test_the_name_checks_catch_a_wrong_name(preset_fields):
    """The parsers above do see a wrong name (a guard against a check that cannot fail)."""
    assert PRESET_MENTION.search("run configs/simclr_digitz.py:v2").groups() == ("simclr_digitz", "v2")
    assert "simclr_digitz" not in _preset_names()
    m = BARE_PRESET.search("| `moco_digits.py` (`:v2`, `:v9`) |")
    assert re.findall(r"`:([a-z0-9_]+)`", m.group(3)) == ["v2", "v9"]
    assert FIELD_NAME.search("set `train.batch_szie=4`").group(1) not in set().union(*preset_fields.values())
    assert FIELD_FLAG.search("--config.trian.num_steps=1").group(1) == "trian.num_steps"


def test_every_preset_docstring_gives_command_hardware_runtime_and_expected():
    """README: "Each file's docstring gives the command, hardware, runtime and its source"."""
    import ast
    bad = []
    for name in sorted(_preset_names()):
        with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        missing = [k for k in ("Command:", "Hardware:", "Runtime:", "Expected")
                   if not re.search(rf"^{k}", doc, re.M)]
        if missing or f"configs/{name}.py" not in doc:
            bad.append(f"configs/{name}.py: its docstring lacks {missing or 'its own command'}")
    assert not bad, "\n".join(bad)
