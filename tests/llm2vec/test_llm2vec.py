"""The llm2vec encoder for real, offline: a tiny random Llama saved to disk, loaded the way users load theirs.

Needs the `[llm2vec]` extra (transformers 4.44), so it runs in its own
environment: `bash tests/llm2vec/run.sh`. Elsewhere the whole module is skipped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

try:  # not importorskip: under pytest this very folder is an importable namespace package `llm2vec`
    from llm2vec import LLM2Vec  # noqa: F401
except ImportError:
    pytest.skip('needs the [llm2vec] extra: run `bash tests/llm2vec/run.sh`', allow_module_level=True)

import torch
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel, PreTrainedTokenizerFast

from padcore.dataset import Protocol, RawData, build_dataset, write_dataset
from padcore.encoders import EncoderOptions, resolve
from padcore.errors import PadError
from padcore.steps import embed, embed_merge
from padcore.text import load_text

pytestmark = pytest.mark.llm2vec

WORDS = "creamy peanut butter jar crunchy laundry detergent liquid soap green tea bags organic honey oats".split()
TEXTS = ["creamy peanut butter jar", "laundry detergent", "organic green tea bags honey oats crunchy", "soap"]
INSTRUCTION = "retrieve similar products"
HIDDEN = 64


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A 2-layer Llama (hidden 64) with random weights and a word-level tokenizer (left padding, eos as pad)."""
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS, *INSTRUCTION.split()])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>", padding_side="left",
        model_input_names=["input_ids", "attention_mask"], clean_up_tokenization_spaces=False,  # as Llama's tokenizer
    )
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


@pytest.fixture(scope="module")
def encoder(llama):
    folder, _ = llama
    return resolve("llm2vec", EncoderOptions(base_model=str(folder), adapter="none")).load("cpu")


def test_loads_a_bidirectional_llama_and_returns_float32_vectors(encoder):
    assert type(encoder.l2v.model).__name__ == "LlamaBiModel"
    out = encoder.encode(TEXTS)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), HIDDEN) and encoder.dim == HIDDEN
    assert np.isfinite(out).all()


def _ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt")["input_ids"]


def test_attention_is_bidirectional(llama, encoder):
    folder, tokenizer = llama
    a, b = _ids(tokenizer, "creamy peanut butter jar"), _ids(tokenizer, "creamy peanut butter soap")
    with torch.no_grad():
        first = [encoder.l2v.model(input_ids=x).last_hidden_state[0, 0] for x in (a, b)]
        causal = LlamaModel.from_pretrained(folder).eval()
        causal_first = [causal(input_ids=x).last_hidden_state[0, 0] for x in (a, b)]
    assert not torch.allclose(first[0], first[1], atol=1e-4)  # the last token reaches the first
    torch.testing.assert_close(causal_first[0], causal_first[1])  # control: the same weights, causal, do not


def _reference_mean(model, tokenizer, text: str, n_pooled: int) -> np.ndarray:
    """Mean of the last hidden states over the last `n_pooled` tokens of `text` encoded alone (no padding)."""
    with torch.no_grad():
        hidden = model(input_ids=_ids(tokenizer, text)).last_hidden_state[0]
    return hidden[-n_pooled:].mean(0).numpy()


def test_mean_pooling_over_the_text_tokens_despite_left_padding(llama, encoder):
    _, tokenizer = llama
    out = encoder.encode(TEXTS)  # one batch of very different lengths
    reference = np.stack([_reference_mean(encoder.l2v.model, tokenizer, t, len(t.split())) for t in TEXTS])
    np.testing.assert_allclose(out, reference, atol=1e-4)


def test_instruction_tokens_are_left_out_of_the_pooling(llama):
    folder, tokenizer = llama
    enc = resolve("llm2vec", EncoderOptions(base_model=str(folder), adapter="none", instruction=INSTRUCTION)).load("cpu")
    out = enc.encode(TEXTS)
    reference = np.stack(
        [_reference_mean(enc.l2v.model, tokenizer, f"{INSTRUCTION} {t}", len(t.split())) for t in TEXTS]
    )
    np.testing.assert_allclose(out, reference, atol=1e-4)


def _save_lora(base_folder, out_folder, seed: int) -> None:
    torch.manual_seed(seed)
    base = LlamaModel.from_pretrained(base_folder)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(out_folder)


def test_the_default_adapter_is_the_unsup_simcse_lora_beside_the_base(llama, encoder):
    folder, _ = llama
    with pytest.raises(PadError, match="unsup-simcse"):
        resolve("llm2vec", EncoderOptions(base_model=str(folder)))
    _save_lora(folder, f"{folder}-unsup-simcse", seed=1)
    _save_lora(folder, f"{folder}-supervised", seed=2)
    unsup = resolve("llm2vec", EncoderOptions(base_model=str(folder))).load("cpu").encode(TEXTS)
    sup = resolve("llm2vec", EncoderOptions(base_model=str(folder), adapter="supervised")).load("cpu").encode(TEXTS)
    by_path = resolve("llm2vec", EncoderOptions(base_model=str(folder), adapter=f"{folder}-supervised")).load("cpu")
    plain = encoder.encode(TEXTS)
    assert not np.allclose(unsup, plain, atol=1e-3) and not np.allclose(unsup, sup, atol=1e-3)
    np.testing.assert_allclose(by_path.encode(TEXTS), sup, atol=1e-5)


def test_embed_step_with_llm2vec_shards_and_merge(llama, tmp_path, monkeypatch):
    folder, _ = llama
    monkeypatch.setenv("PAD_DATA_HOME", str(tmp_path / "home"))
    n = 9
    texts = [" ".join(WORDS[k : k + 1 + k % 4]) for k in range(n)]
    users = [f"u{k}" for k in range(n) for _ in range(5)]
    items = [f"i{(k + j) % n}" for k in range(n) for j in range(5)]
    raw = RawData(
        pd.DataFrame({"user": users, "item": items, "timestamp": np.arange(len(users))}),
        pd.DataFrame({"item": [f"i{k}" for k in range(n)], "text": texts}),
        "inter.csv", "items.csv", "test",
    )
    ds = build_dataset(raw, Protocol(min_len=5))
    write_dataset(ds, tmp_path / "ds")
    opts = dict(encoder="llm2vec", base_model=str(folder), adapter="none", device="cpu", dtype="float32", batch_size=4)
    meta = embed(tmp_path / "ds", tmp_path / "text", **opts)
    assert meta["dim"] == HIDDEN and meta["encoder"] == "llm2vec" and meta["model"] == str(folder)
    table = load_text(tmp_path / "text", ds)
    assert table.shape == (n + 1, HIDDEN) and not table[0].any()
    for i in range(2):
        embed(tmp_path / "ds", tmp_path / f"p{i}", shard=f"{i}/2", **opts)
    embed_merge([tmp_path / "p0", tmp_path / "p1"], tmp_path / "merged", cache=False)
    np.testing.assert_allclose(load_text(tmp_path / "merged", ds), table, atol=1e-5)
