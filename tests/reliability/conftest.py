"""Fixtures of the reliability suite: one tiny model shared by every reliability test."""

from __future__ import annotations

import pytest

from tests.conftest import make_tiny_model


@pytest.fixture(scope="session")
def rel_model_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reliability")
    folder = tmp / "model"
    make_tiny_model(tmp, seed=3).save_pretrained(folder)
    return folder
