"""The text-only path: ``ClaspTextModel`` (plain-torch BERT, ``tokenizers``) = transformers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from matminer_clasp.model import ClaspModel, ClaspTextModel
from matminer_clasp.model.bert import QueryBert, load_query_tokenizer, supports
from matminer_clasp.model.registry import ModelRegistry

TEXTS = [
    "garnet",
    "The crystal structure of a high-pressure ferroelectric perovskite oxide",
    "spinel " * 200,  # truncated
    "Überstruktur des Feldspats: é, ñ, ü and 水晶",
    "a",
    "  the   spinel   structure  ",  # runs of spaces
]


def _bert(seed: int = 0, **overrides) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=60, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=40, max_position_embeddings=80, **overrides)
    return BertModel(cfg).eval()


def test_query_bert_equals_transformers_bert():
    ref = _bert()
    fast = QueryBert(ref.config.to_dict())
    fast.load_state_dict(ref.state_dict(), strict=False)
    fast.eval()
    torch.manual_seed(1)
    ids = torch.randint(5, 60, (4, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # padded rows: their pad positions must not change the real tokens
    mask[3, 2:] = 0
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask)
        b = fast(ids, mask)
    real = mask.bool()
    assert torch.allclose(a.last_hidden_state[real], b.last_hidden_state[real], atol=1e-5)
    assert torch.allclose(a.pooler_output, b.pooler_output, atol=1e-5)


def test_query_bert_state_dict_keys_are_transformers_keys():
    ref = _bert()
    fast = QueryBert(ref.config.to_dict())
    extra = set(ref.state_dict()) - set(fast.state_dict())
    assert extra <= {"embeddings.position_ids", "embeddings.token_type_ids"}
    assert set(fast.state_dict()) <= set(ref.state_dict())


@pytest.mark.parametrize("override", [{"hidden_act": "relu"},
                                      {"position_embedding_type": "relative_key"},
                                      {"model_type": "roberta"}])
def test_unsupported_configs_fall_back(override):
    cfg = {**_bert().config.to_dict(), **override}
    assert not supports(cfg)


def test_query_tokenizer_equals_transformers_fast_tokenizer(tiny_model_dir):
    folder = tiny_model_dir / "tokenizer"
    ref = AutoTokenizer.from_pretrained(str(folder))
    fast = load_query_tokenizer(folder, max_length=16)
    assert fast is not None
    a = ref(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    b = fast(TEXTS)
    assert torch.equal(a["input_ids"], b["input_ids"])
    assert torch.equal(a["attention_mask"], b["attention_mask"])


def test_text_model_equals_full_model_on_a_saved_folder(tiny_model_dir):
    text_model = ClaspTextModel.from_pretrained(tiny_model_dir)
    assert isinstance(text_model.text_tower.bert, QueryBert)  # the fast path was taken
    full = ClaspModel.from_pretrained(tiny_model_dir)
    np.testing.assert_allclose(text_model.encode_texts(TEXTS), full.encode_texts(TEXTS),
                               atol=1e-5)


def test_text_model_of_the_bundled_model_equals_the_full_model():
    text_model = ClaspTextModel.from_pretrained()
    assert isinstance(text_model.text_tower.bert, QueryBert)
    full = ClaspModel.from_pretrained()
    np.testing.assert_allclose(text_model.encode_texts(TEXTS), full.encode_texts(TEXTS),
                               atol=1e-5)


def test_text_model_loads_only_the_text_tensors(tiny_model_dir):
    text_model = ClaspTextModel.from_pretrained(tiny_model_dir)
    assert all(k.startswith("text_tower.") for k in text_model.state_dict())
    assert not hasattr(text_model, "crystal_tower")


def test_text_model_rejects_blank_texts(tiny_model_dir):
    from matminer_clasp.errors import InvalidTextError

    with pytest.raises(InvalidTextError, match="text 1"):
        ClaspTextModel.from_pretrained(tiny_model_dir).encode_texts(["garnet", "   "])


def test_registry_prefers_a_loaded_full_model(tiny_model_dir):
    registry = ModelRegistry()
    text_model = registry.get_text_model(tiny_model_dir)
    assert isinstance(text_model, ClaspTextModel)
    assert registry.get_text_model(tiny_model_dir) is text_model  # cached
    full = registry.get_model(tiny_model_dir)
    assert isinstance(full, ClaspModel)
    assert registry.get_text_model(tiny_model_dir) is full  # no second text copy needed
    assert registry.get_text_model(full) is full
