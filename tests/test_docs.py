"""The documentation site builds with ``mkdocs build --strict`` (no broken links, no bad nav).

Also checks the facts the user pages state in code blocks where that is cheap: the YAML training
config of ``docs/training.md`` is a valid :class:`TrainConfig`, and every ``matminer-clasp``
subcommand the pages use exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
USER_PAGES = ["featurizers.md", "zeroshot.md", "scaling.md", "training.md"]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    exe = shutil.which("mkdocs")
    cmd = [exe] if exe else [sys.executable, "-m", "mkdocs"]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [*cmd, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    for page in USER_PAGES:
        assert (tmp_path / "site" / page.removesuffix(".md") / "index.html").is_file()


def test_training_page_yaml_is_a_valid_config():
    yaml = pytest.importorskip("yaml")
    from matminer_clasp.train.config import TrainConfig

    text = (DOCS / "training.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        TrainConfig.from_dict(yaml.safe_load(block))


def test_cli_commands_in_pages_exist():
    from matminer_clasp.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    known = set(sub.choices)
    used = set()
    for page in USER_PAGES:
        used |= set(re.findall(r"matminer-clasp ([\w-]+)", (DOCS / page).read_text()))
    assert used, "the pages show no commands"
    assert used <= known, f"unknown commands in the docs: {sorted(used - known)}"


def test_user_pages_name_only_existing_public_functions():
    import matminer_clasp

    names = set()
    for page in USER_PAGES:
        names |= set(re.findall(r"from matminer_clasp import ([\w, ]+)", (DOCS / page).read_text()))
    for group in names:
        for name in (n.strip() for n in group.split(",")):
            assert hasattr(matminer_clasp, name), name
