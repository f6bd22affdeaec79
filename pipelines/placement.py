"""Where each pipeline step runs: the cluster it is sized for, images, resources, GPU pool, timeouts, retries, caching.

One YAML file holds it all, so moving the pipeline to another cluster shape or
GPU pool is a configuration change: `placement.yaml` beside this module (the
default: GKE, a CPU pool and an L4 GPU pool) and `placements/` (kind on a
laptop, minikube with a GPU node). Its `cluster:` section describes the nodes
(`pipelines/shapes.py`), and loading refuses a step whose pod fits none of the
nodes it may land on. Image references are not written here: `docker/build.py`
records what it built (`pipelines/images.py`), and compiling takes them from there.
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
from pipelines.shapes import Cluster, cpu_cores, effective_request, gib, memory_bytes, parse_cluster

DEFAULT_PATH = Path(__file__).with_name("placement.yaml")
PLACEMENTS = Path(__file__).with_name("placements")  # the other documented cluster shapes, by name
PLACEMENT_ENV = "PAD_PLACEMENT"
STEPS = ("check", "fingerprint", "preprocess", "embed", "embed_merge", "pretrain", "align", "finetune", "analyze",
         "baselines_plan", "train", "leaderboard", "compare", "publish", "recommend")
# Steps whose result depends on more than their inputs (the source's files now, the model store): a cached
# answer would be stale.
UNCACHEABLE = ("fingerprint", "compare", "publish")
# Steps that read or write the model store (run parameter `store`).
STORE_STEPS = ("compare", "publish")
TARGETS = ("cpu", "gpu", "llm2vec")  # the images docker/build.py makes for the pipeline's steps
# Encoder families (the part of an `encoder` parameter before ':'); the LLM ones download weights when they run.
ENCODERS = ("minilm", "llm2vec", "hf")
DOWNLOADING_ENCODERS = ("llm2vec", "hf")


# Kubernetes spellings, as KFP checks them when it compiles (kfp.dsl.PipelineTask, kfp.dsl.structures)
CPU = (r"([0-9]*[.])?[0-9]+m?", "a number of cores, or millicores as e.g. 500m")
MEMORY = (r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?", "bytes, or a number with a unit as e.g. 16Gi")
DURATION = (r"[0-9]+[smhdw]", "a whole number and a unit s, m, h, d or w, e.g. 60s")
NAME = (r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?", "a Kubernetes object name (lower case, digits, '-', '.'), or empty")
# the k8s spelling of a toleration field -> kfp.kubernetes.add_toleration's argument
TOLERATION_ARGS = {"key": "key", "operator": "operator", "value": "value", "effect": "effect",
                   "tolerationSeconds": "toleration_seconds", "toleration_seconds": "toleration_seconds"}
TOLERATION_CHOICES = {"operator": ("Exists", "Equal"), "effect": ("NoSchedule", "PreferNoSchedule", "NoExecute")}
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(duration: str) -> int:
    """A DURATION (`90s`, `2h`) in seconds."""
    return int(duration[:-1]) * SECONDS[duration[-1]]


@dataclass
class StepPlacement:
    """Resources and policies of one step."""

    image: str = option("cpu", "the image it runs in: a docker/build.py target", choices=TARGETS)
    cpu: str = option("1", "CPU request", pattern=CPU)
    memory: str = option("4Gi", "memory request", pattern=MEMORY)
    gpus: int = option(0, "accelerators on the GPU pool; 0 = a CPU step", low=0)
    timeout: str = option("1h", "the longest one attempt may run (the pod's activeDeadlineSeconds)",
                          pattern=DURATION)
    retries: int = option(2, "attempts after a failed one (a preempted or lost node); an input error (exit 2) "
                          "is never retried", low=0)
    backoff: str = option("30s", "wait before the first retry", pattern=DURATION)
    # Argo takes whole factors only: a fractional one fails the step at its first retry (Backoff.Factor is an
    # IntOrString, read with strconv.Atoi; argo-workflows v4.0.5 workflow/controller/operator.go processNodeRetries).
    backoff_factor: int = option(2, "each later wait is this many times longer (a whole number: Argo's rule)", low=1)
    caching: bool = option(True, "reuse the outputs of an identical earlier task")

    def retry_window(self) -> int:
        """Seconds from the first attempt's start to the last attempt's deadline: every attempt's timeout and the
        waits between them. Argo counts `backoff.maxDuration` from the first attempt's start (operator.go
        processNodeRetries: firstChildNode.StartedAt.Add(maxDuration)), so this is the least that lets every
        retry run whole."""
        waits = sum(seconds(self.backoff) * self.backoff_factor ** k for k in range(self.retries))
        return (self.retries + 1) * seconds(self.timeout) + waits


@dataclass
class GpuPool:
    """How a GPU step reaches the GPU nodes (kfp-kubernetes settings)."""

    accelerator: str = option("nvidia.com/gpu", "resource name of the device plugin",
                              pattern=(r"\S+", "a resource name, e.g. nvidia.com/gpu"))
    node_selector: dict[str, str] = option({}, "node labels a GPU step asks for (besides the accelerator)")
    tolerations: list[dict[str, Any]] = option(
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}], "taints a GPU step tolerates")


@dataclass
class Volumes:
    """Cluster storage and secrets the steps use; empty names switch a feature off."""

    checkpoint_pvc: str = option("", "PVC where GPU steps keep checkpoints, so a retry resumes", pattern=NAME)
    checkpoint_path: str = option("/mnt/pad", "where that PVC is mounted", pattern=(r"/.*", "an absolute path"))
    store_pvc: str = option("", "PVC holding folder model stores, mounted where compare and publish run "
                            "(without it a store must be gs://)", pattern=NAME)
    store_path: str = option("/mnt/pad-store", "where that PVC is mounted: a folder store lies under it",
                             pattern=(r"/.*", "an absolute path"))
    gcs_secret: str = option("", "Secret with a GCS service-account key (`key.json`) for gs:// sources without "
                             "Workload Identity", pattern=NAME)
    hf_token_secret: str = option("", "Secret with a Hugging Face token (key `token`) for gated encoder models, "
                                  "given to the embed step as HF_TOKEN when it exists", pattern=NAME)
    model_cache: str = option("", "size of the volume each embed pod downloads encoder weights into (a generic "
                              "ephemeral volume, e.g. 60Gi); \"\" = none: placements without LLM encoders",
                              pattern=(r"(" + MEMORY[0] + r")?", "a size such as 60Gi, or empty"))
    model_cache_class: str = option("", "its storage class (\"\" = the cluster's default)", pattern=NAME)


@dataclass
class Placement:
    steps: dict[str, StepPlacement]
    cluster: Cluster
    encoders: tuple[str, ...] = ENCODERS  # what the embed step is sized to run
    gpu_pool: GpuPool = field(default_factory=GpuPool)
    volumes: Volumes = field(default_factory=Volumes)
    pipeline_root: str = ""  # "" = the cluster's default artifact store
    run_timeout: str = "3d"  # the whole run's deadline: it also ends a pod that can never be scheduled
    source: str = ""  # the file it was read from, for messages

    def targets(self) -> list[str]:
        """The images (docker/build.py targets) its steps run in."""
        return sorted({p.image for p in self.steps.values()})

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


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """A placement file: `path` (a file, or a shipped shape's name: kind, minikube, gke), else $PAD_PLACEMENT,
    else the packaged default (gke)."""
    name = str(path or os.environ.get(PLACEMENT_ENV) or DEFAULT_PATH)
    shipped = {"gke": DEFAULT_PATH, **{p.stem: p for p in sorted(PLACEMENTS.glob("*.yaml"))}}
    return shipped.get(name, Path(name))


def load_placement(path: str | os.PathLike | None = None) -> Placement:
    """Read and check a placement file (see `resolve_path`): every field, and that every step fits its nodes."""
    path = resolve_path(path)
    if not path.is_file():
        raise PadError(f"{path}: placement file not found (or name a shipped one: gke, "
                       f"{', '.join(p.stem for p in sorted(PLACEMENTS.glob('*.yaml')))})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PadError(f"{path}: not valid YAML ({exc})") from exc
    known = {"cluster", "encoders", "defaults", "steps", "gpu_pool", "volumes", "pipeline_root", "run_timeout"}
    unknown = sorted(set(raw) - known)
    if unknown:
        hint = " (image references now come from docker/build.py's record, not the placement)" \
            if "images" in unknown else ""
        raise PadError(f"{path}: unknown top-level field(s) {unknown}{hint}; expected some of {sorted(known)}")
    if "cluster" not in raw:
        raise PadError(f"{path}: no 'cluster:' section; it describes the nodes the steps are sized for "
                       "(see pipelines/placement.yaml)")
    cluster = parse_cluster(raw["cluster"], f"{path}: cluster")
    encoders = raw.get("encoders", list(ENCODERS))
    if not isinstance(encoders, list) or not encoders or not set(encoders) <= set(ENCODERS):
        raise PadError(f"{path}: encoders is {encoders!r}; expected a list of some of {', '.join(ENCODERS)}")
    defaults = raw.get("defaults") or {}
    steps_raw = raw.get("steps") or {}
    unknown = sorted(set(steps_raw) - set(STEPS))
    if unknown:
        raise PadError(f"{path}: steps {unknown} are not pipeline steps; expected some of {list(STEPS)}")
    steps = {s: _typed(StepPlacement, {**defaults, **({"caching": False} if s in UNCACHEABLE else {}),
                                       **(steps_raw.get(s) or {})}, f"{path}: steps.{s}") for s in STEPS}
    for s, p in steps.items():
        if s in UNCACHEABLE and p.caching:
            raise PadError(f"{path}: steps.{s}.caching is true; {s}'s result depends on more than its inputs "
                           "(the source's files, the model store), so a cached one would be stale: set caching: false")
    gpu_pool = _typed(GpuPool, raw.get("gpu_pool"), f"{path}: gpu_pool")
    _check_tolerations(gpu_pool.tolerations, f"{path}: gpu_pool")
    volumes = _typed(Volumes, raw.get("volumes"), f"{path}: volumes")
    downloading = sorted(set(encoders) & set(DOWNLOADING_ENCODERS))
    if downloading and not volumes.model_cache:
        raise PadError(f"{path}: encoders include {', '.join(downloading)}, which download their weights when they "
                       "run (llm2vec: about 16 GB), but volumes.model_cache is empty: give embed a volume for them "
                       "(e.g. model_cache: 60Gi) or leave those encoders out")
    run_timeout = str(raw.get("run_timeout", "3d"))
    placement = Placement(steps=steps, cluster=cluster, encoders=tuple(encoders), gpu_pool=gpu_pool, volumes=volumes,
                          pipeline_root=str(raw.get("pipeline_root") or ""), run_timeout=run_timeout, source=str(path))
    _check_fit(placement, path)
    return placement


def _check_fit(placement: Placement, path: Path) -> None:
    """Every step's pod fits some node it may be scheduled on, and the run's deadline outlasts every step's
    retries: a pod that fits no node stays Pending with no error (nothing in Kubernetes or Argo ends it)."""
    if not re.fullmatch(DURATION[0], placement.run_timeout):
        raise PadError(f"{path}: run_timeout is {placement.run_timeout!r}; allowed: {DURATION[1]}")
    for step, p in placement.steps.items():
        request = effective_request(cpu_cores(p.cpu), memory_bytes(p.memory))
        gpu = p.gpus > 0
        selector = placement.gpu_pool.node_selector if gpu else {}
        tolerations = placement.gpu_pool.tolerations if gpu else []
        if not placement.cluster.fits(request, selector, tolerations, p.gpus):
            admitting = [q for q in placement.cluster.pools if q.admits(selector, tolerations, p.gpus)]
            rooms = "; ".join(f"pool {q.name}: {placement.cluster.room(q)[0]:.2f} CPU, "
                              f"{gib(placement.cluster.room(q)[1])}" for q in admitting) or "none admits it"
            raise PadError(
                f"{path}: steps.{step} asks {request[0]:g} CPU, {gib(request[1])}{f', {p.gpus} GPU' if gpu else ''} "
                f"(with KFP's launcher); no node of its cluster ({placement.cluster.shape}) has that room after "
                f"the {placement.cluster.shape} reservation and system pods ({rooms}): lower the request or "
                "describe the nodes under cluster:")
        if p.retry_window() > seconds(placement.run_timeout):
            raise PadError(f"{path}: steps.{step} may take {p.retry_window()} s with its retries, longer than "
                           f"run_timeout {placement.run_timeout}")
