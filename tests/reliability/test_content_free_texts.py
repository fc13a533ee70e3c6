"""Texts with no content (zero-width, control, emoji-only) are refused like empty texts."""

from __future__ import annotations

import numpy as np
import pytest

from matminer_clasp.errors import InvalidTextError
from matminer_clasp.model import ClaspModel
from matminer_clasp.model.text_model import ClaspTextModel

CONTENT_FREE = {
    "zero_width": ("\u200b\u200c\u200d\ufeff", "no visible character"),
    "control": ("\x00\x07\x1b", "no visible character"),
    "bidi_marks": ("\u200e \u200f \u2060", "no visible character"),
    "emoji_only": ("💎🔥 ✨", "knows none of its characters"),
    "unknown_script_only": ("\U00012000\U00012001", "knows none of its characters"),
}


@pytest.fixture(scope="module", params=[ClaspModel, ClaspTextModel], ids=["full", "text"])
def model(request, rel_model_dir):
    return request.param.from_pretrained(rel_model_dir)


@pytest.mark.parametrize("name", list(CONTENT_FREE))
def test_content_free_text_names_its_row(model, name):
    text, words = CONTENT_FREE[name]
    for position in (0, 2):
        texts = ["garnet", "spinel oxide"]
        texts.insert(position, text)
        with pytest.raises(InvalidTextError, match=f"text {position}: .*{words}"):
            model.encode_texts(texts, batch_size=2)


def test_emoji_with_words_still_embeds(model):
    emb = model.encode_texts(["💎 garnet", "garnet\u200b"])
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_zero_shot_label_without_content(rel_model_dir):
    from matminer_clasp.zeroshot import ZeroShotClassifier

    with pytest.raises(InvalidTextError, match="knows none of its characters"):
        ZeroShotClassifier(["garnet", "🔥"], model=str(rel_model_dir)).fit()


def test_cli_query_without_content(rel_model_dir, tmp_path, capsys):
    from matminer_clasp.cli import main
    from matminer_clasp.index import EmbeddingIndex

    EmbeddingIndex(np.eye(32)[:4]).save(tmp_path / "ix")
    code = main(["screen", "\u200b", "--index", str(tmp_path / "ix"), "--model",
                 str(rel_model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: text 0: the text has no visible character")
