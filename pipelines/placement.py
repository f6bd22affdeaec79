"""Where each pipeline step runs: images, resources, GPU pool, retries, caching.

One YAML file (`placement.yaml` beside this module by default) holds it all, so
moving the pipeline to another cluster or GPU pool is a configuration change.
`docker/build.py` rewrites only its `images:` map.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from padcore.errors import PadError
from padcore.options import check_options, option

DEFAULT_PATH = Path(__file__).with_name("placement.yaml")
PLACEMENT_ENV = "PAD_PLACEMENT"
STEPS = ("check", "preprocess", "embed", "embed_merge", "pretrain", "align", "finetune", "analyze", "baselines_plan",
         "train", "leaderboard", "compare", "publish", "recommend")
# Steps whose result depends on the model store, not only on their inputs: a cached answer would be stale.
UNCACHEABLE = ("compare", "publish")


# Kubernetes spellings, as KFP checks them when it compiles (kfp.dsl.PipelineTask, kfp.dsl.structures)
CPU = (r"([0-9]*[.])?[0-9]+m?", "a number of cores, or millicores as e.g. 500m")
MEMORY = (r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?", "bytes, or a number with a unit as e.g. 16Gi")
DURATION = (r"[0-9]+[smhdw]", "a whole number and a unit s, m, h, d or w, e.g. 60s")
NAME = (r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?", "a Kubernetes object name (lower case, digits, '-', '.'), or empty")
# the k8s spelling of a toleration field -> kfp.kubernetes.add_toleration's argument
TOLERATION_ARGS = {"key": "key", "operator": "operator", "value": "value", "effect": "effect",
                   "tolerationSeconds": "toleration_seconds", "toleration_seconds": "toleration_seconds"}
TOLERATION_CHOICES = {"operator": ("Exists", "Equal"), "effect": ("NoSchedule", "PreferNoSchedule", "NoExecute")}


@dataclass
class StepPlacement:
    """Resources and policies of one step."""

    image: str = option("cpu", "a key of the `images:` map")
    cpu: str = option("1", "CPU request", pattern=CPU)
    memory: str = option("4Gi", "memory request", pattern=MEMORY)
    gpus: int = option(0, "accelerators on the GPU pool; 0 = a CPU step", low=0)
    retries: int = option(0, "retries after a failure (a preempted GPU node, say)", low=0)
    backoff: str = option("60s", "wait before the first retry", pattern=DURATION)
    backoff_factor: float = option(2.0, "each later wait is this many times longer", low=1)
    backoff_max: str = option("3600s", "retries stop after this long", pattern=DURATION)
    caching: bool = option(True, "reuse the outputs of an identical earlier task")


@dataclass
class GpuPool:
    """How a GPU step reaches the GPU nodes (kfp-kubernetes settings)."""

    accelerator: str = option("nvidia.com/gpu", "resource name of the device plugin",
                              pattern=(r"\S+", "a resource name, e.g. nvidia.com/gpu"))
    node_selector: dict[str, str] = option({"pad.dev/pool": "gpu"}, "node labels a GPU step asks for")
    tolerations: list[dict[str, Any]] = option(
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], "taints a GPU step tolerates")


@dataclass
class Volumes:
    """Cluster storage the steps use; empty names switch a feature off."""

    checkpoint_pvc: str = option("", "PVC where GPU steps keep checkpoints, so a retry resumes", pattern=NAME)
    checkpoint_path: str = option("/mnt/pad", "where that PVC is mounted", pattern=(r"/.*", "an absolute path"))
    gcs_secret: str = option("", "Secret with a GCS service-account key (`key.json`) for gs:// sources",
                             pattern=NAME)


@dataclass
class Placement:
    images: dict[str, str]
    steps: dict[str, StepPlacement]
    gpu_pool: GpuPool = field(default_factory=GpuPool)
    volumes: Volumes = field(default_factory=Volumes)
    pipeline_root: str = ""  # "" = the cluster's default artifact store
    source: str = ""  # the file it was read from, for messages

    def image(self, step: str) -> str:
        return self.images[self.steps[step].image]

    def gpu_steps(self) -> list[str]:
        return [s for s in STEPS if self.steps[s].gpus > 0]


def _typed(cls, raw: Any, where: str):
    """Build option dataclass `cls` from a mapping; errors name the file, the section and the field."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise PadError(f"{where}: expected a mapping, got {type(raw).__name__}")
    kinds = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(raw) - set(kinds))
    if unknown:
        raise PadError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(kinds)}")
    # `cpu: 2` means "2": YAML reads numbers where Kubernetes wants quantities as text
    obj = cls(**{k: str(v) if kinds[k] == "str" and isinstance(v, (int, float)) and not isinstance(v, bool) else v
                 for k, v in raw.items()})
    check_options(obj, where)
    return obj


def _check_tolerations(tolerations: list, where: str) -> None:
    for i, t in enumerate(tolerations):
        if not isinstance(t, dict):
            raise PadError(f"{where}.tolerations[{i}] is {t!r}; expected a mapping")
        unknown = sorted(set(t) - set(TOLERATION_ARGS))
        if unknown:
            raise PadError(f"{where}.tolerations[{i}]: unknown field(s) {unknown}; known: {', '.join(TOLERATION_ARGS)}")
        for name, allowed in TOLERATION_CHOICES.items():
            if name in t and t[name] not in allowed:
                raise PadError(f"{where}.tolerations[{i}].{name} is {t[name]!r}; allowed: {', '.join(allowed)}")


def load_placement(path: str | os.PathLike | None = None) -> Placement:
    """Read a placement file: `path`, else $PAD_PLACEMENT, else the packaged default."""
    path = Path(path or os.environ.get(PLACEMENT_ENV) or DEFAULT_PATH)
    if not path.is_file():
        raise PadError(f"{path}: placement file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PadError(f"{path}: not valid YAML ({exc})") from exc
    unknown = sorted(set(raw) - {"images", "defaults", "steps", "gpu_pool", "volumes", "pipeline_root"})
    if unknown:
        raise PadError(f"{path}: unknown top-level field(s) {unknown}")
    images = raw.get("images") or {}
    if not images or not all(isinstance(v, str) and v for v in images.values()):
        raise PadError(f"{path}: field 'images' must map names to image references")
    defaults = raw.get("defaults") or {}
    steps_raw = raw.get("steps") or {}
    unknown = sorted(set(steps_raw) - set(STEPS))
    if unknown:
        raise PadError(f"{path}: steps {unknown} are not pipeline steps; expected some of {list(STEPS)}")
    steps = {s: _typed(StepPlacement, {**defaults, **({"caching": False} if s in UNCACHEABLE else {}),
                                       **(steps_raw.get(s) or {})}, f"{path}: steps.{s}") for s in STEPS}
    for s, p in steps.items():
        if p.image not in images:
            raise PadError(f"{path}: steps.{s}.image is {p.image!r}; expected one of {sorted(images)}")
        if s in UNCACHEABLE and p.caching:
            raise PadError(f"{path}: steps.{s}.caching is true; {s} reads the model store, so a cached result would "
                           "be stale: set caching: false")
    pipeline_root = raw.get("pipeline_root") or ""
    gpu_pool = _typed(GpuPool, raw.get("gpu_pool"), f"{path}: gpu_pool")
    _check_tolerations(gpu_pool.tolerations, f"{path}: gpu_pool")
    return Placement(
        images=dict(images),
        steps=steps,
        gpu_pool=gpu_pool,
        volumes=_typed(Volumes, raw.get("volumes"), f"{path}: volumes"),
        pipeline_root=str(pipeline_root),
        source=str(path),
    )


def set_images(path: str | os.PathLike, refs: dict[str, str]) -> None:
    """Rewrite entries of the `images:` map in place, keeping the file's comments."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True)
    in_images, done = False, set()
    for i, line in enumerate(lines):
        if re.match(r"^images:\s*(#.*)?$", line):
            in_images = True
            continue
        if in_images and re.match(r"^\S", line):
            in_images = False
        m = re.match(r"^(\s+)([\w.-]+):\s*\S+(\s*#.*)?$", line) if in_images else None
        if m and m.group(2) in refs:
            lines[i] = f"{m.group(1)}{m.group(2)}: {refs[m.group(2)]}{m.group(3) or ''}\n"
            done.add(m.group(2))
    missing = sorted(set(refs) - done)
    if missing:
        raise PadError(f"{path}: no entry {missing} under 'images:' to rewrite")
    path.write_text("".join(lines))
