"""What every pad component shares: the decorator and the resumable work folder."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import yaml
from kfp import dsl

PLACEMENT = Path(__file__).resolve().parents[1] / "pipelines" / "placement.yaml"


def default_image(kind: str) -> str:
    """Image `kind` (cpu | gpu | llm2vec) of the placement file ($PAD_PLACEMENT or the packaged one).

    The pipeline sets each task's image from its own placement file; this is
    the image a component carries when it is compiled or run on its own.
    """
    path = Path(os.environ.get("PAD_PLACEMENT") or PLACEMENT)
    return yaml.safe_load(path.read_text())["images"][kind]


def pad_component(kind: str) -> Callable:
    """`dsl.component` with the image from configuration and no kfp install (the images carry kfp)."""

    def wrap(func: Callable):
        return dsl.component(func, base_image=default_image(kind), install_kfp_package=False)

    return wrap


@contextlib.contextmanager
def work_folder(out: str, checkpoint_root: str, run_id: str, step: str) -> Iterator[str]:
    """The folder a training step writes into.

    Without a checkpoint volume that is the output artifact itself. With one
    (`checkpoint_root` is its mount path) it is `<root>/<run_id>/<step>` on the
    volume, copied to the output artifact on success: a retried pod gets a fresh
    output folder, but finds the previous attempt's checkpoints on the volume and
    resumes from them instead of starting over.
    """
    if not checkpoint_root:
        yield out
        return
    work = Path(checkpoint_root) / (run_id or "local") / step
    work.parent.mkdir(parents=True, exist_ok=True)
    yield str(work)
    shutil.copytree(work, out, dirs_exist_ok=True)


def shard_specs(shards: int) -> list[str]:
    """The `I/N` shard names the embedding fan-out iterates over."""
    from padcore.errors import PadError

    if shards < 1:
        raise PadError(f"parameter 'embed_shards' is {shards}; expected 1 or more")
    return [f"{i}/{shards}" for i in range(shards)]


def typed_options(options: dict, config) -> dict:
    """Free-form options with KFP's JSON numbers turned back into ints where `config`'s field is an int.

    A dict parameter travels as a protobuf Struct, where every number is a float.
    """
    defaults = {name: getattr(config, name) for name in options if hasattr(config, name)}
    return {
        k: int(v) if isinstance(v, float) and v.is_integer() and type(defaults.get(k)) is int else v
        for k, v in options.items()
    }


def training_options(options: dict, **named) -> dict:
    """The step's `**options`: the named run parameters plus free-form `options` (TrainConfig fields).

    `epochs` <= 0 means the training default (the rate schedule's length; early stopping may end sooner).
    """
    from padcore.config import TrainConfig
    from padcore.errors import PadError

    if named.get("epochs", 1) <= 0:
        named.pop("epochs")
    options = typed_options(options, TrainConfig())
    clash = sorted(k for k in set(options) & set(named) if options[k] != named[k])
    if clash:
        raise PadError(f"parameter 'options' sets {clash}, which are run parameters of their own; set those instead")
    return {**options, **named}
