"""Captions: title cleanup, placeholder detection, keyword parsing, extractors and their cache."""

from __future__ import annotations

import json

import pytest
import torch

from matminer_clasp.train.captions import (
    decode_cif_markup,
    filter_keywords,
    get_keyword_extractor,
    is_placeholder_title,
    keyword_captions,
    parse_keyword_answer,
    parse_notes,
    placeholder_caption,
    split_title_notes,
    title_caption,
)
from tests.conftest import make_tiny_bert, make_tokenizer

TITLES = [
    "Superconductivity in the layered cuprate YBa2Cu3O7",
    "Ferroelectric domains in BaTiO3 thin films studied by X-ray diffraction",
    "High-pressure behaviour of pyrope garnet and its elastic properties",
]


def test_decode_markup():
    assert decode_cif_markup("Na~2~SO~4~ and Fe^3+^ in <i>situ</i>") == "Na2SO4 and Fe3+ in situ"
    assert decode_cif_markup("\\a-quartz and \\b-Sn, Cr\\'eme \\\\times 2") == \
        "α-quartz and β-Sn, Crème × 2".replace("è", "é")
    assert decode_cif_markup("  many\n   spaces\t here ") == "many spaces here"


def test_split_title_notes_amcsd_examples():
    raw = (" The crystal structures of gillespite I and II: A structure determination at\n"
           " high pressure\n P = 26 kbar, known as gillespite II")
    title, notes = split_title_notes(raw)
    assert title == ("The crystal structures of gillespite I and II: A structure determination "
                     "at high pressure")
    assert notes == ["P = 26 kbar, known as gillespite II"]
    title, notes = split_title_notes(
        " The crystal structures of pyrope and grossularite at elevated temperatures\n"
        " T = 350 deg C\n garnet")
    assert notes == ["T = 350 deg C", "garnet"]
    title, notes = split_title_notes(" Die Kristallstruktur des Thallofluorids\n"
                                     " _cod_database_code 1010462")
    assert title == "Die Kristallstruktur des Thallofluorids" and len(notes) == 1
    meta = parse_notes(["Note: P = 3.5 GPa, refinement", "Locality: Kola, Russia", "T = 20 C"])
    assert meta["pressure"] == "3.5 GPa" and meta["locality"] == "Kola, Russia"
    assert meta["temperature"] == "20 C"
    assert title_caption(" Effects of pressure on forsterite\n Note: P = 1 atm\n olivine") == \
        "Effects of pressure on forsterite"


def test_placeholders():
    wyckoff = ("Second edition. Interscience Publishers, New York, New York\n"
               " Note: wurtzite structure")
    assert is_placeholder_title(wyckoff)
    assert is_placeholder_title("Copper-gold alloy, Cu3Au", source="Crystal Structures")
    assert not is_placeholder_title("The crystal structures of some metallic sulfides",
                                    source="American Mineralogist")
    assert not is_placeholder_title("A second edition of the garnet story")
    assert placeholder_caption(wyckoff) == "wurtzite structure"


def test_keyword_filter_and_parser():
    assert filter_keywords(["Superconductor", "crystal structure", "X-Ray Diffraction",
                            "superconductor", " cuprate. ", ""]) == ["Superconductor", "cuprate"]
    assert len(filter_keywords([f"k{i}" for i in range(20)])) == 10
    official = ('```json\n[{"ID": 7, "Keywords": ["Cuprate", "Superconductor", '
                '"Powder Diffraction"]}]\n```')
    assert parse_keyword_answer(official) == ["Cuprate", "Superconductor"]
    assert parse_keyword_answer('["garnet", "high pressure"]') == ["garnet", "high pressure"]
    assert parse_keyword_answer(" Keywords: garnet, elastic moduli; mantle\n\nExplanation")\
        == ["garnet", "elastic moduli", "mantle"]
    assert parse_keyword_answer("1. ferroelectric\n2. thin film\n- BaTiO3") == \
        ["ferroelectric", "thin film", "BaTiO3"]
    assert parse_keyword_answer("") == []


def test_yake_extractor():
    extractor = get_keyword_extractor("yake")
    out = extractor(TITLES + [""])
    assert len(out) == 4 and out[3] == []
    assert all(0 < len(kws) <= 10 for kws in out[:3])
    joined = " ".join(out[1]).lower()
    assert "ferroelectric" in joined and "x-ray diffraction" not in [k.lower() for k in out[1]]
    with pytest.raises(ValueError, match="unknown keyword extractor"):
        get_keyword_extractor("gpt-magic")


def test_keyword_captions_cache(tmp_path):
    calls: list[list[str]] = []

    def extractor(texts):
        calls.append(list(texts))
        return [t.lower().split()[:3] + ["crystal structure"] for t in texts]

    cache = tmp_path / "kw" / "cache.json"
    titles = ["Garnet At Pressure", "Spinel ferrite", "Garnet At Pressure"]
    caps = keyword_captions(titles, extractor, cache)
    assert caps == ["garnet, at, pressure", "spinel, ferrite", "garnet, at, pressure"]
    assert calls == [["Garnet At Pressure", "Spinel ferrite"]]  # duplicates computed once
    assert len(json.loads(cache.read_text())) == 2
    caps2 = keyword_captions(titles + ["New one"], extractor, cache)
    assert caps2[:3] == caps and caps2[3] == "new, one"
    assert calls[1] == ["New one"]  # only the missing title


@pytest.mark.slow
def test_keybert_with_tiny_encoder(tmp_path):
    folder = tmp_path / "enc"
    make_tokenizer(folder).save_pretrained(folder)
    make_tiny_bert().save_pretrained(folder)
    extractor = get_keyword_extractor("keybert", model=str(folder))
    out = extractor(["high pressure garnet oxide", "ferroelectric perovskite oxide crystal", ""])
    assert out[2] == [] and all(out[:2])
    assert set(" ".join(out[0]).split()) <= {"high", "pressure", "garnet", "oxide"}
    captions = keyword_captions(["ferroelectric perovskite oxide crystal"], extractor,
                                tmp_path / "c.json")
    assert "ferroelectric" in captions[0] or "perovskite" in captions[0]


def _tiny_gpt2(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["superconductor, ferroelectric, garnet, oxide. Title: Keywords:"],
                            trainer)
    fast = GPT2TokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                             bos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_layer=1, n_embd=16, n_head=2,
                                       n_positions=512, bos_token_id=0, eos_token_id=0))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)


@pytest.mark.slow
def test_llm_extractor_plumbing(tmp_path):
    folder = tmp_path / "gpt"
    _tiny_gpt2(folder)
    extractor = get_keyword_extractor("llm", model=str(folder), max_new_tokens=6)
    answers = extractor.generate(["A garnet oxide", "Ferroelectric BaTiO3 films"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    out = extractor(["A garnet oxide"])
    assert len(out) == 1 and all(isinstance(k, str) and k for k in out[0])
    assert out[0] == parse_keyword_answer(answers[0])  # greedy decoding: reproducible
    with pytest.raises(ValueError, match="needs a model"):
        get_keyword_extractor("llm")
