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

DEFAULT_PATH = Path(__file__).with_name("placement.yaml")
PLACEMENT_ENV = "PAD_PLACEMENT"
STEPS = ("preprocess", "embed", "embed_merge", "pretrain", "align", "finetune", "analyze", "baselines_plan", "train",
         "leaderboard", "compare", "publish", "recommend")
# Steps whose result depends on the model store, not only on their inputs: a cached answer would be stale.
UNCACHEABLE = ("compare", "publish")


@dataclass
class StepPlacement:
    """Resources and policies of one step."""

    image: str = "cpu"  # a key of the `images:` map
    cpu: str = "1"  # CPU request
    memory: str = "4Gi"  # memory request
    gpus: int = 0  # accelerators on the GPU pool; 0 = a CPU step
    retries: int = 0  # retries after a failure (a preempted GPU node, say)
    backoff: str = "60s"  # wait before the first retry
    backoff_factor: float = 2.0  # each later wait is this many times longer
    backoff_max: str = "3600s"  # retries stop after this long
    caching: bool = True  # reuse the outputs of an identical earlier task


@dataclass
class GpuPool:
    """How a GPU step reaches the GPU nodes (kfp-kubernetes settings)."""

    accelerator: str = "nvidia.com/gpu"  # resource name of the device plugin
    node_selector: dict[str, str] = field(default_factory=lambda: {"pad.dev/pool": "gpu"})
    tolerations: list[dict[str, Any]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )


@dataclass
class Volumes:
    """Cluster storage the steps use; empty names switch a feature off."""

    checkpoint_pvc: str = ""  # PVC where GPU steps keep checkpoints, so a retry resumes
    checkpoint_path: str = "/mnt/pad"  # where that PVC is mounted
    gcs_secret: str = ""  # Secret with a GCS service-account key (`key.json`) for gs:// sources


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
    """Build dataclass `cls` from a mapping, naming unknown or mistyped fields."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise PadError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise PadError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(known)}")
    values = {}
    for name, value in raw.items():
        default = getattr(cls(), name)
        if isinstance(default, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # `cpu: 2` means "2"
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(value, bool) and isinstance(default, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise PadError(f"{where}.{name}: expected {type(default).__name__}, got {value!r}")
        values[name] = value
    return cls(**values)


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
    return Placement(
        images=dict(images),
        steps=steps,
        gpu_pool=_typed(GpuPool, raw.get("gpu_pool"), f"{path}: gpu_pool"),
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
