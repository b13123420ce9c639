"""README's layout section names every module and package of the tree (issue: the layout
drifted from the code once; this keeps them together)."""
from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def layout_block() -> str:
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Layout", 1)[1]
    return section.split("```", 2)[1]


def test_readme_layout_names_every_jaxssl_module_and_package():
    block = layout_block()
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", block))
    missing = []
    for entry in sorted(os.listdir(os.path.join(ROOT, "jaxssl"))):
        path = os.path.join(ROOT, "jaxssl", entry)
        name = entry[:-3] if entry.endswith(".py") else entry
        if entry.startswith("_") or entry == "__pycache__":
            continue
        if (entry.endswith(".py") or os.path.isdir(path)) and name not in words:
            missing.append(entry)
    assert not missing, f"README.md '## Layout' does not mention jaxssl/{missing}"


def test_readme_layout_names_every_top_level_folder():
    block = layout_block()
    for folder in ("configs", "scripts", "jaxssl", "tests"):
        assert f"{folder}/" in block
