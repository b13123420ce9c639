"""Wrong inputs a new user tries end in one line naming the field or path, the value and the fix,
exit code 1, no traceback, before any device work (no workdir is created).

Each case runs ``python -m jaxssl.main`` (or ``scripts/evaluate.py``) in a subprocess as a user
would. The one-line rule for the rest (bad values of each field, missing packages) is in
tests/test_first_contact.py and tests/test_reliability_config.py.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import drill_helpers

ROOT = drill_helpers.ROOT


def run(args: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    env = drill_helpers.child_env(1)
    env.pop("JAXSSL_TRACEBACK", None)
    target = [os.path.join(ROOT, "scripts", script)] if script else ["-m", "jaxssl.main"]
    return subprocess.run([sys.executable, *target, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def assert_one_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, no traceback, and exactly one non-empty line of output: ``error: ...``."""
    out = r.stdout + r.stderr
    assert r.returncode == 1, (r.returncode, out[-3000:])
    assert "Traceback" not in out, out[-3000:]
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


DIGITS = "--config=configs/simclr_digits.py"

# id -> (arguments after --workdir, the needles of the one line)
CASES = {
    "misspelt_section": ([DIGITS, "--config.trian.num_steps=1"],
                         ("--config.trian.num_steps=1", "no section 'trian'",
                          "did you mean 'train'?")),
    "section_the_preset_lacks": ([DIGITS, "--config.simclr.online_probe=True"],
                                 ("--config.simclr.online_probe=True", "no section 'simclr'",
                                  "use one of [", "'optim'", "'train'")),
    "field_without_a_close_name": ([DIGITS, "--config.train.bogus=1"],
                                   ("--config.train.bogus=1", "section 'train' has no field 'bogus'",
                                    "'batch_size'", "'num_steps'")),
    "variant_on_a_preset_without_variants": (
        ["--config=configs/simclr_digits.py:v2"],
        ("--config=configs/simclr_digits.py:v2", "'v2'", "configs/simclr_digits.py has no variants",
         "without ':v2'")),
    "unknown_variant": (["--config=configs/simclr_imagenet.py:v3"],
                        ("--config=configs/simclr_imagenet.py:v3", "'v3'",
                         "['readme', 'v1', 'v2']", ":v1, the default")),
    "negative_prefetch": ([DIGITS, "--config.data.prefetch=-1"],
                          ("config field data.prefetch=-1 is invalid", "use 0 (off)")),
    "misspelt_linear_protocol": ([DIGITS, "--config.eval.linear_protocol=lbfsg"],
                                 ("config field eval.linear_protocol='lbfsg' is invalid",
                                  "'lbfgs'", "'simclr'")),
    "unknown_evaluator": ([DIGITS, "--config.eval.evaluators=('knn',)"],
                          ("eval.evaluators", "'knn'", "'representation'")),
    "unknown_baseline": ([DIGITS, "--config.eval.baselines=('random',)"],
                         ("config field eval.baselines=('random',) is invalid", "'random_init'")),
    "protocol_preset_without_init_from": (
        ["--config=configs/simclr_imagenet_linear.py"],
        ("config field init_from=None is invalid", "--config.init_from=PRETRAIN_WORKDIR",
         "--config.init_from=random")),
    "protocol_preset_init_from_missing": (
        ["--config=configs/simclr_digits_finetune.py", "--config.init_from=runs/no_such_run"],
        ("config field init_from='runs/no_such_run' is invalid", "no such file or folder")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_command_line_is_one_line_before_any_work(case, tmp_path):
    args, needles = CASES[case]
    workdir = tmp_path / "w"
    line = assert_one_line(run([f"--workdir={workdir}", *args]), *needles)
    assert "FILE.py" not in line
    assert not workdir.exists()  # refused before the run started


def test_workdir_that_is_a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    assert_one_line(run([DIGITS, f"--workdir={f}"]),
                    f"--workdir={f} is a file, not a folder", "use a new or existing folder")
    assert_one_line(run([DIGITS, f"--workdir={f}/run"]),
                    f"--workdir={f}/run is inside {f}, which is a file")
    assert f.read_text() == "not a folder"


def test_workdir_with_a_scheme_that_cannot_hold_checkpoints():
    line = assert_one_line(run([DIGITS, "--workdir=http://example.com/runs/x"]),
                           "--workdir=http://example.com/runs/x", "http://", "gs://BUCKET")
    assert "s3://" not in line  # not suggested: a workdir cannot be there either


def test_evaluate_script_on_a_workdir_without_checkpoints(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line(run([DIGITS, f"--workdir={empty}"], script="evaluate.py"),
                    f"--workdir={empty}: no checkpoint in {empty}/checkpoints", "train first")
    assert os.listdir(empty) == []  # nothing created in it
