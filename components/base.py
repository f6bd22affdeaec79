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

    if isinstance(shards, float) and shards.is_integer():
        shards = int(shards)  # a KFP package's defaults carry every number as a float
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise PadError(f"parameter 'embed_shards' is {shards!r}; expected a whole number, 1 or more")
    return [f"{i}/{shards}" for i in range(shards)]


def training_options(options: dict, **named) -> dict:
    """The step's `**options`: the named run parameters plus free-form `options` (TrainConfig fields).

    `epochs` 0 means the training default (the rate schedule's length; early stopping may end sooner).
    """
    from padcore.errors import PadError

    if not isinstance(options, dict):
        raise PadError(f"parameter 'options' is {options!r}; expected a mapping of training options, e.g. {{\"dim\": 128}}")
    epochs = named.get("epochs")
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs <= 0:
        if epochs < 0:
            raise PadError(f"parameter 'epochs' is {epochs}; allowed: 0 (the training default) or more")
        named.pop("epochs")
    clash = sorted(k for k in set(options) & set(named) if options[k] != named[k])
    if clash:
        raise PadError(f"parameter 'options' sets {clash}, which are run parameters of their own; set those instead")
    return {**options, **named}


def check_parameters(*, encoder: str, backbone: str, loss: str, epochs: int, gamma: float, seed: int, device: str,
                     train_options: dict, analyze_options: dict, baselines: list) -> None:
    """Every run parameter a GPU step or the analysis uses, checked as those steps will check it.

    The three phases of a run train with these same options (the later ones on
    top of the earlier phase's, which these made), so one whole check covers them.
    """
    from padcore.analysis import AnalysisConfig
    from padcore.config import TrainConfig
    from padcore.encoders import check_name
    from padcore.errors import PadError
    from padcore.training import check_baselines

    check_name(encoder)
    if not isinstance(analyze_options, dict):
        raise PadError(f"parameter 'analyze_options' is {analyze_options!r}; expected a mapping of analysis options")
    TrainConfig.from_options(**training_options(train_options, backbone=backbone, loss=loss, epochs=epochs,
                                                gamma=gamma, seed=seed, device=device))
    AnalysisConfig.from_options(**analyze_options)
    check_baselines(baselines)  # what baselines_plan checks too, here before any GPU step
