"""The rules a KFP 2.17 cluster applies to a compiled pad package, each as a check on the package itself.

`kfp.local` applies none of them. Each rule reads the compiled IR (and its
kfp-kubernetes document), the cluster shape it is placed for, the image record
and the manifests in k8s/, and returns what breaks it, one line each; its
docstring cites where the rule comes from (kubeflow/pipelines at tag 2.17.0,
argo-workflows at v4.0.5 (the Argo that KFP 2.17.0 pins), Kubernetes' docs).
`violations` runs them all; tests/test_cluster_rules.py runs it over every
package variant and shipped placement, and shows each rule catching a breach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.client import longest_chain, retry_window
from pipelines.shapes import DRIVER, LAUNCHER, Cluster, cpu_cores, memory_bytes

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
# Placeholders the KFP driver resolves per run (backend/src/v2/driver/resolve.go resolveInputParameter).
PER_RUN = ("{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}", "{{$.pipeline_job_create_time_utc}}",
           "{{$.pipeline_job_schedule_time_utc}}", "{{$.pipeline_task_uuid}}", "{{$.pipeline_task_name}}")
STORE_STEPS = ("compare", "publish")


@dataclass
class Package:
    """A compiled package and what it is placed for."""

    spec: dict
    platform: dict  # executor name -> kfp-kubernetes config
    pipeline_config: dict
    cluster: Cluster
    record: dict[str, str] = field(default_factory=dict)  # image ref -> how it was delivered
    shape: str = ""

    @classmethod
    def read(cls, path: Path, cluster: Cluster, record: dict[str, str]) -> "Package":
        spec, platform = list(yaml.safe_load_all(path.read_text()))
        kubernetes = platform["platforms"]["kubernetes"]
        return cls(spec, kubernetes["deploymentSpec"]["executors"], kubernetes.get("pipelineConfig", {}), cluster,
                   record, cluster.shape)

    def dags(self) -> dict[str, dict]:
        """DAG name -> its tasks, the root and every group."""
        out = {"root": self.spec["root"]["dag"]["tasks"]}
        out.update({n: c["dag"]["tasks"] for n, c in self.spec["components"].items() if "dag" in c})
        return out

    def tasks(self) -> dict[str, dict]:
        """Every container task of every DAG, by task name."""
        return {name: t for dag in self.dags().values() for name, t in dag.items()
                if "dag" not in self.spec["components"][t["componentRef"]["name"]]}

    def executor_of(self, task: dict) -> str:
        return self.spec["components"][task["componentRef"]["name"]]["executorLabel"]

    def container(self, executor: str) -> dict:
        return self.spec["deploymentSpec"]["executors"][executor]["container"]


def seconds(duration: str) -> int:
    return int(str(duration).rstrip("s"))


def rule_pods_fit_their_nodes(p: Package) -> list[str]:
    """A pod that fits no node it may land on is Pending for ever, with no error and no timeout (Kubernetes'
    scheduler filters nodes by free allocatable and taints, kubernetes.io/docs/concepts/scheduling-eviction/
    kube-scheduler; activeDeadlineSeconds counts from the pod's start, which never comes). A step's pod requests
    what the IR says (KFP backend/src/v2/driver/driver.go initPodSpecPatch) beside the `kfp-launcher` init
    container (argocompiler/argo.go launcherResources); the driver pods request 100m / 64Mi with no tolerations
    (driverResources), so some untainted node must hold them."""
    out = []
    for name, executor in p.spec["deploymentSpec"]["executors"].items():
        res = executor["container"].get("resources", {})
        request = (max(cpu_cores(res.get("resourceCpuRequest", "0")), LAUNCHER[0]),
                   max(memory_bytes(res.get("resourceMemoryRequest", "0")), LAUNCHER[1]))
        gpus = int(res.get("accelerator", {}).get("resourceCount", 0))
        cfg = p.platform.get(name, {})
        selector = cfg.get("nodeSelector", {}).get("labels", {})
        if not p.cluster.fits(request, selector, cfg.get("tolerations", []), gpus):
            out.append(f"{name}: requests {request[0]:g} CPU, {request[1] / 2**30:.1f} GiB, {gpus} GPU; no node of "
                       f"the {p.shape} shape has that room")
    if not p.cluster.fits(DRIVER, {}, [], 0):
        out.append(f"no untainted node of the {p.shape} shape holds KFP's driver pods")
    return out


def rule_every_step_has_a_timeout(p: Package) -> list[str]:
    """Every step's pod has an activeDeadlineSeconds (kfp-kubernetes set_timeout; KFP driver/k8s.go
    extendPodSpecPatch): without one a hung step holds its node, and a schedule's one concurrent run, for ever."""
    return [f"{name}: no timeout" for name in p.spec["deploymentSpec"]["executors"]
            if int(p.platform.get(name, {}).get("activeDeadlineSeconds", 0)) <= 0]


def rule_retries_cover_whole_steps(p: Package) -> list[str]:
    """Every task has its own retry policy (else it takes the install's templateDefaults: KFP's argocompiler
    container.go adds a retryStrategy only for a task with one), a whole backoff factor (Argo reads
    Backoff.Factor with strconv.Atoi and errors the node on "1.5": argo-workflows v4.0.5 operator.go
    processNodeRetries; KFP passes the float as "%v"), and a maxDuration that lets every attempt run whole:
    Argo counts it from the first attempt's start and starts no retry past it."""
    out = []
    for name, task in p.tasks().items():
        policy = task.get("retryPolicy")
        if policy is None:
            out.append(f"{name}: no retry policy of its own")
            continue
        if not float(policy.get("backoffFactor", 2)).is_integer():
            out.append(f"{name}: backoff factor {policy['backoffFactor']} is not a whole number")
        deadline = int(p.platform.get(p.executor_of(task), {}).get("activeDeadlineSeconds", 0))
        need = retry_window(policy, deadline)
        if seconds(policy.get("backoffMaxDuration", "3600s")) < need:
            out.append(f"{name}: retry window {policy.get('backoffMaxDuration')} < {need}s its attempts may take")
    return out


def rule_the_run_deadline_outlasts_its_longest_path(p: Package) -> list[str]:
    """The run's deadline (the Workflow's activeDeadlineSeconds, KFP argocompiler/argo.go
    buildActiveDeadlineSeconds) ends a pod that can never be scheduled (Argo fails Pending pods past it:
    workflow/controller/exec_control.go); it must outlast the slowest chain of steps with all their retries."""
    deadline = int(p.pipeline_config.get("activeDeadlineSeconds", 0))
    if deadline <= 0:
        return ["the run has no deadline"]
    longest = longest_chain(p.spec, {"platforms": {"kubernetes": {"deploymentSpec": {"executors": p.platform}}}})
    return [] if deadline >= longest else [f"run deadline {deadline}s < its longest chain {longest}s"]


def rule_no_per_run_value_in_a_cached_step(p: Package) -> list[str]:
    """KFP's cache key is a hash of a task's resolved input values, its input artifacts' ids, its image, command
    and claim names (backend/src/v2/cacheutils/cache.go GenerateCacheKey; driver/cache.go getFingerPrint): a
    per-run placeholder in a cached task's inputs, or a claim named per run, misses the cache on every submit,
    and so does every step after it."""
    out = []
    for name, task in p.tasks().items():
        if not task.get("cachingOptions", {}).get("enableCache"):
            continue
        for key, value in task.get("inputs", {}).get("parameters", {}).items():
            constant = str(value.get("runtimeValue", {}).get("constant", ""))
            if any(ph in constant for ph in PER_RUN):
                out.append(f"{name}: input {key} is {constant}, a per-run value")
        for mount in p.platform.get(p.executor_of(task), {}).get("pvcMount", []):
            if "constant" not in mount:
                out.append(f"{name}: mounts a claim named at run time")
    return out


def rule_images_were_built_and_can_be_pulled(p: Package) -> list[str]:
    """Every image is one docker/build.py recorded, delivered where this shape's nodes can pull it (a registry,
    or loaded into kind / minikube); any other reference ends in ImagePullBackOff on every step
    (kubernetes.io/docs/concepts/containers/images)."""
    allowed = {"gke": ("pushed",), "kind": ("pushed", "kind:"), "minikube": ("pushed", "minikube:")}[p.shape]
    out = []
    for name, executor in p.spec["deploymentSpec"]["executors"].items():
        image = executor["container"]["image"]
        how = p.record.get(image)
        if how is None:
            out.append(f"{name}: image {image} was never built by docker/build.py")
        elif not how.startswith(allowed):
            out.append(f"{name}: image {image} was {how}, not where a {p.shape} cluster pulls from")
    return out


def _claims() -> dict[str, list[str]]:
    """Every PersistentVolumeClaim of k8s/pad: name -> access modes."""
    found = {}
    for path in (K8S / "pad").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "PersistentVolumeClaim":
                found[doc["metadata"]["name"]] = doc["spec"]["accessModes"]
    return found


def rule_the_store_is_where_compare_and_publish_run(p: Package) -> list[str]:
    """Each task is a pod of its own with its own file system: a folder store only holds if compare and publish
    mount one claim at the folder the run's `check` step lets a store lie in (store_root); without a claim the
    check must refuse folders ("" = gs:// only). "*" (any folder) is for kfp.local alone."""
    check = p.spec["root"]["dag"]["tasks"]["check"]["inputs"]["parameters"]
    root = check["store_root"]["runtimeValue"]["constant"]
    tasks = p.tasks()
    out = []
    if root == "*":
        return ["the check step lets a store be any folder: a local package"]
    for step in STORE_STEPS:
        mounts = [m["mountPath"] for m in p.platform.get(p.executor_of(tasks[step]), {}).get("pvcMount", [])]
        if root and root not in mounts:
            out.append(f"{step}: folder stores lie under {root}, which it does not mount")
    return out


def rule_a_one_node_claim_is_mounted_on_one_node(p: Package) -> list[str]:
    """A ReadWriteOnce claim attaches to one node at a time (kubernetes.io/docs/concepts/storage/
    persistent-volumes#access-modes): pods on another node wait on a Multi-Attach error. Every task mounting one
    must be able to land on one node only."""
    claims, out = _claims(), []
    for name, cfg in p.platform.items():
        for mount in cfg.get("pvcMount", []):
            claim = mount.get("constant")
            modes = claims.get(claim)
            if modes is None:
                out.append(f"{name}: mounts claim {claim}, which k8s/pad does not declare")
                continue
            if "ReadWriteMany" in modes:
                continue
            res = p.spec["deploymentSpec"]["executors"][name]["container"].get("resources", {})
            gpus = int(res.get("accelerator", {}).get("resourceCount", 0))
            nodes = sum(q.nodes for q in p.cluster.pools
                        if q.admits(cfg.get("nodeSelector", {}).get("labels", {}), cfg.get("tolerations", []), gpus))
            if nodes > 1:
                out.append(f"{name}: ReadWriteOnce claim {claim} on a pool of {nodes} nodes")
    return out


def rule_downloaded_weights_have_a_volume(p: Package) -> list[str]:
    """An embed step that may run an LLM encoder downloads its weights (llm2vec: about 16 GB) into HF_HOME; KFP
    2.17 sets no ephemeral-storage request (ResourceSpec has none), so they must go to a volume sized for them:
    a generic ephemeral volume (kfp-kubernetes add_ephemeral_volume), which the scheduler provisions first."""
    check = p.spec["root"]["dag"]["tasks"]["check"]["inputs"]["parameters"]
    encoders = check["encoders"]["runtimeValue"]["constant"].split(",")
    if not {"llm2vec", "hf"} & set(encoders):
        return []
    cfg = p.platform.get("exec-embed", {})
    env = {e["name"]: e["value"] for e in p.container("exec-embed").get("env", [])}
    volumes = {v["mountPath"]: memory_bytes(v["size"]) for v in cfg.get("genericEphemeralVolume", [])}
    home = env.get("HF_HOME", "")
    if not any(home.startswith(path) and size >= 20 * 2**30 for path, size in volumes.items()):
        return ["exec-embed: LLM weights would fill the container's file system (no volume of 20Gi or more at HF_HOME)"]
    return []


def rule_parameters_are_described(p: Package) -> list[str]:
    """Every run parameter carries a description (ComponentInputsSpec.ParameterSpec.description in the IR,
    kubeflow/pipelines api/v2alpha1/pipeline_spec.proto): what `pad pipeline upload` shows in the UI."""
    params = p.spec["root"]["inputDefinitions"]["parameters"]
    return [f"parameter {n} has no description" for n, spec in params.items() if not spec.get("description")]


RULES = [rule_pods_fit_their_nodes, rule_every_step_has_a_timeout, rule_retries_cover_whole_steps,
         rule_the_run_deadline_outlasts_its_longest_path, rule_no_per_run_value_in_a_cached_step,
         rule_images_were_built_and_can_be_pulled, rule_the_store_is_where_compare_and_publish_run,
         rule_a_one_node_claim_is_mounted_on_one_node, rule_downloaded_weights_have_a_volume,
         rule_parameters_are_described]


def violations(p: Package) -> list[str]:
    return [f"{rule.__name__}: {line}" for rule in RULES for line in rule(p)]


def strict_json(text: str):
    """JSON as Go's protojson reads it: NaN and Infinity are syntax errors (KFP's launcher reads a step's
    executor output with protojson.Unmarshal: backend/src/v2/component/launcher_v2.go getExecutorOutputFile)."""
    import json

    def refuse(token: str):
        raise ValueError(f"invalid value {token}")

    return json.loads(text, parse_constant=refuse)


def retry_expression() -> tuple[str, str]:
    """(retryPolicy, the regular expression of `lastRetry.message matches '...'`) of k8s/kfp's Argo defaults."""
    (doc,) = [d for d in yaml.safe_load_all((K8S / "kfp" / "retry-input-errors.yaml").read_text())]
    strategy = yaml.safe_load(doc["data"]["workflowDefaults"])["spec"]["templateDefaults"]["retryStrategy"]
    m = re.fullmatch(r"not \(lastRetry\.message matches '(.+)'\)", strategy["expression"])
    return strategy["retryPolicy"], m.group(1) if m else ""
