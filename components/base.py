"""What every pad component shares: the decorator, the resumable work folder and the run parameters' check."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from kfp import dsl

RUN_ENV = "PAD_RUN"  # the run's Argo Workflow name, given to a step by the pipeline (Kubernetes' downward API)
KEEP_DAYS = 7  # a run folder on the checkpoint volume untouched this long is an abandoned run's


def unbuilt(target: str) -> str:
    """The reference of an image nothing built: it names what it is, and no registry has it."""
    from importlib.metadata import version

    return f"pad-{target}:{version('pad-rec')}-unbuilt"


def pad_component(kind: str) -> Callable:
    """`dsl.component` in image `kind` (a docker/build.py target) with no kfp install (the images carry kfp).

    The pipeline sets each task's image from the image record; this one stands in when a component is
    compiled on its own.
    """
    def wrap(func: Callable):
        return dsl.component(func, base_image=unbuilt(kind), install_kfp_package=False)

    return wrap


@contextlib.contextmanager
def work_folder(out: str, checkpoint_root: str, step: str) -> Iterator[str]:
    """The folder a training step writes into.

    Without a checkpoint volume that is the output artifact itself. With one
    (`checkpoint_root` is its mount path) it is `<root>/<run>/<step>` on the
    volume, `<run>` the run's Workflow name from $PAD_RUN: a retried pod gets a
    fresh output folder, but finds the previous attempt's checkpoints on the
    volume and resumes from them. The run is not a step input (the run id in an
    input would be in KFP's cache key and defeat the cache on every resubmission).
    On success the folder is copied to the output and removed, and run folders
    abandoned for KEEP_DAYS are removed, so a schedule does not fill the volume.
    """
    if not checkpoint_root:
        yield out
        return
    root = Path(checkpoint_root)
    now = time.time()
    for old in root.glob("*") if root.is_dir() else []:
        if old.is_dir() and now - old.stat().st_mtime > KEEP_DAYS * 86400:
            shutil.rmtree(old, ignore_errors=True)
    work = root / (os.environ.get(RUN_ENV) or "local") / step
    work.mkdir(parents=True, exist_ok=True)
    yield str(work)
    shutil.copytree(work, out, dirs_exist_ok=True)
    shutil.rmtree(work)
    with contextlib.suppress(OSError):
        work.parent.rmdir()  # the run's last step to finish removes its folder


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
                     train_options: dict, analyze_options: dict, baselines: list, as_of: str = "", store: str = "",
                     min_gain: float = 0.0, top_k: int = 10, encoders: str = "", store_root: str = "*") -> None:
    """Every run parameter a later step uses, checked as that step will check it, before any of them runs.

    The three phases of a run train with these same options (the later ones on
    top of the earlier phase's, which these made), so one whole check covers them.
    `encoders`: the encoder families the package's embed step is sized for ("" = any).
    `store_root`: where a folder store may lie: "*" anywhere (a local run), a path (a
    claim mounted there in compare and publish), "" nowhere (a store must be gs://).
    """
    import math

    from padcore.analysis import AnalysisConfig
    from padcore.config import TrainConfig
    from padcore.dataset import parse_as_of
    from padcore.download import split_gs
    from padcore.encoders import check_name
    from padcore.errors import PadError
    from padcore.training import check_baselines

    check_name(encoder)
    family = encoder.partition(":")[0]
    if encoders and family not in encoders.split(","):
        raise PadError(f"parameter 'encoder' is {encoder!r}, but this package's embed step is sized for "
                       f"{encoders.replace(',', ', ')} only; compile it with a placement whose `encoders:` lists "
                       f"{family} (pipelines/placement.yaml, GKE: every encoder)")
    if not isinstance(analyze_options, dict):
        raise PadError(f"parameter 'analyze_options' is {analyze_options!r}; expected a mapping of analysis options")
    TrainConfig.from_options(**training_options(train_options, backbone=backbone, loss=loss, epochs=epochs,
                                                gamma=gamma, seed=seed, device=device))
    AnalysisConfig.from_options(**analyze_options)
    check_baselines(baselines)  # what baselines_plan checks too, here before any GPU step
    if as_of:
        parse_as_of(as_of)
    if isinstance(top_k, float) and top_k.is_integer():
        top_k = int(top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise PadError(f"parameter 'top_k' is {top_k!r}; expected a whole number, 1 or more")
    if isinstance(min_gain, bool) or not isinstance(min_gain, (int, float)) or not math.isfinite(min_gain) \
            or min_gain < 0:
        raise PadError(f"parameter 'min_gain' is {min_gain!r}; expected a number, 0 or more (0.02 = 2 %)")
    if store.startswith("gs://"):
        split_gs(store)
    elif store and store_root != "*":
        if not store_root:
            raise PadError(f"parameter 'store' is the folder {store!r}, but compare and publish run in pods of "
                           "their own on a cluster: each would write into its own throwaway file system. Use "
                           "gs://bucket/prefix, or a placement whose volumes.store_pvc mounts a claim for stores")
        if not store.startswith(store_root.rstrip("/") + "/"):
            raise PadError(f"parameter 'store' is the folder {store!r}; this package mounts the store claim at "
                           f"{store_root}, so a folder store must lie under it (e.g. {store_root}/models)")
