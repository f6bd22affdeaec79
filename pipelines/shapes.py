"""Cluster shapes: the nodes a placement is sized for, and the room a pod has on each.

A placement's `cluster:` section names its shape and node pools. How much of a
node the scheduler lets pods request (its *allocatable*) follows from the shape:

- `gke`: GKE Standard reserves, per node, CPU (6 % of the first core, 1 % of the
  next, 0.5 % of the next two, 0.25 % above four) and memory (25 % of the first
  4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % of the next 112, 2 % above
  128; 255 MiB under 1 GiB) plus a 100 MiB eviction threshold: "Plan GKE
  Standard node sizes", cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes
  (section "Memory and CPU reservations").
- `kind`, `minikube`: the kubelet's own rule, allocatable = capacity -
  kube-reserved - system-reserved - hard eviction threshold (kubernetes.io/docs/
  tasks/administer-cluster/reserve-compute-resources), with the reservation the
  pool declares (`k8s/kind-cluster.yaml` sets it for kind) and the kubelet's
  default `memory.available<100Mi`.

Then each node runs the pool's per-node system pods (`per_node`), and one
untainted pool also holds KFP and the control plane (`system`, the requests of
KFP standalone's own Deployments). A pod fits a pool when some node of it has
room for the pod's *effective request*: the larger of its largest init
container and the sum of its containers (kubernetes.io/docs/concepts/workloads/
pods/init-containers, "Resource sharing within containers").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from padcore.errors import PadError

SHAPES = ("gke", "kind", "minikube")
EVICTION = 100 * 2**20  # the kubelet's default hard eviction threshold, memory.available<100Mi
# What KFP 2.17 puts beside a step's own container in its pod (backend/src/v2/compiler/argocompiler):
# the `kfp-launcher` init container (launcherResources: cpu request 100m, memory limit 256Mi, which
# Kubernetes takes as its request too) and Argo's `wait` sidecar; and what one driver pod requests
# (driverResources: 100m, 64Mi). Argo's wait container requests nothing in KFP's install
# (third-party/argo: the workflow-controller ConfigMap sets no executor resources).
LAUNCHER = (0.1, 256 * 2**20)
DRIVER = (0.1, 64 * 2**20)

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def cpu_cores(quantity: str | float | int) -> float:
    """A Kubernetes CPU quantity (`2`, `0.5`, `500m`) in cores."""
    text = str(quantity)
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)(m?)", text)
    if not m:
        raise PadError(f"CPU quantity {text!r}: expected a number of cores or millicores, e.g. 2 or 500m")
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (`16Gi`, `512Mi`, `1G`, bytes) in bytes."""
    text = str(quantity)
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)(|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)", text)
    if not m:
        raise PadError(f"memory quantity {text!r}: expected bytes or a number with a unit, e.g. 16Gi")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def gib(n: int | float) -> str:
    return f"{n / 2**30:.1f} GiB"


def gke_reserved(cores: float, memory: int) -> tuple[float, int]:
    """(CPU cores, memory bytes) GKE Standard reserves on a node of this size (see the module docstring)."""
    cpu = sum(max(0.0, min(cores, hi) - lo) * share
              for lo, hi, share in ((0, 1, 0.06), (1, 2, 0.01), (2, 4, 0.005), (4, float("inf"), 0.0025)))
    gi = memory / 2**30
    if gi < 1:
        return cpu, 255 * 2**20
    mem = sum(max(0.0, min(gi, hi) - lo) * share
              for lo, hi, share in ((0, 4, 0.25), (4, 8, 0.20), (8, 16, 0.10), (16, 128, 0.06), (128, float("inf"), 0.02)))
    return cpu, int(mem * 2**30)


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""

    @classmethod
    def parse(cls, text: str, where: str) -> "Taint":
        """`key=value:Effect` or `key:Effect`, as `kubectl taint` writes them."""
        m = re.fullmatch(r"([^=:\s]+)(?:=([^:\s]*))?:(NoSchedule|PreferNoSchedule|NoExecute)", text)
        if not m:
            raise PadError(f"{where}: taint {text!r}; expected key=value:Effect (Effect NoSchedule, "
                           "PreferNoSchedule or NoExecute)")
        return cls(m.group(1), m.group(3), m.group(2) or "")

    def tolerated_by(self, tolerations: list[dict[str, Any]]) -> bool:
        """Kubernetes' toleration matching (kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration)."""
        for t in tolerations:
            if t.get("effect") not in (None, "", self.effect):
                continue
            if t.get("operator", "Equal") == "Exists":
                if t.get("key") in (None, "", self.key):
                    return True
            elif t.get("key") == self.key and (t.get("value") or "") == self.value:
                return True
        return False


@dataclass(frozen=True)
class Pool:
    """Identical nodes: their size, GPUs, labels, taints, reservation and per-node system pods."""

    name: str
    cpus: float
    memory: int
    nodes: int = 1
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    reserved: tuple[float, int] = (0.0, 0)  # kubelet system/kube-reserved (kind, minikube)
    per_node: tuple[float, int] = (0.0, 0)  # requests of the system pods every node runs (DaemonSets)

    def allocatable(self, shape: str) -> tuple[float, int]:
        """What the scheduler may give pods on one node, after the per-node system pods."""
        if shape == "gke":
            cpu, mem = gke_reserved(self.cpus, self.memory)
        else:
            cpu, mem = self.reserved
        return (self.cpus - cpu - self.per_node[0], self.memory - mem - EVICTION - self.per_node[1])

    def admits(self, node_selector: dict[str, str], tolerations: list[dict[str, Any]], gpus: int) -> bool:
        """Whether a pod with this selector, these tolerations and GPU limit may be scheduled on these nodes."""
        return (all(self.labels.get(k) == v for k, v in node_selector.items())
                and all(t.tolerated_by(tolerations) for t in self.taints if t.effect != "PreferNoSchedule")
                and gpus <= self.gpus)


@dataclass(frozen=True)
class Cluster:
    """A documented cluster shape: its node pools, and what KFP and the control plane request."""

    shape: str
    pools: tuple[Pool, ...]
    system: tuple[float, int] = (0.0, 0)  # on the first untainted pool

    def system_pool(self) -> Pool | None:
        return next((p for p in self.pools if not p.taints), None)

    def room(self, pool: Pool) -> tuple[float, int]:
        """The most one pod may request on a node of `pool`: with KFP packed onto one node of the system pool,
        a pool of two or more nodes keeps a whole node free of it."""
        cpu, mem = pool.allocatable(self.shape)
        if pool is self.system_pool() and pool.nodes == 1:
            cpu, mem = cpu - self.system[0], mem - self.system[1]
        return cpu, mem

    def fits(self, request: tuple[float, int], node_selector: dict[str, str], tolerations: list[dict[str, Any]],
             gpus: int) -> list[Pool]:
        """The pools where a pod with this effective request, placement and GPU limit can be scheduled."""
        return [p for p in self.pools if p.admits(node_selector, tolerations, gpus)
                and request[0] <= self.room(p)[0] + 1e-9 and request[1] <= self.room(p)[1]]


def effective_request(cpu: float, memory: int) -> tuple[float, int]:
    """A step pod's request: its container and Argo's wait sidecar (no request) against the launcher init
    container (the larger counts)."""
    return max(cpu, LAUNCHER[0]), max(memory, LAUNCHER[1])


def _quantities(raw: dict, where: str) -> tuple[float, int]:
    unknown = sorted(set(raw) - {"cpu", "memory"})
    if unknown:
        raise PadError(f"{where}: unknown field(s) {unknown}; expected cpu and memory")
    return cpu_cores(raw.get("cpu", 0)), memory_bytes(raw.get("memory", 0))


POOL_FIELDS = {"name", "cpus", "memory", "nodes", "gpus", "labels", "taints", "reserved", "per_node"}


def parse_cluster(raw: Any, where: str) -> Cluster:
    """The `cluster:` section of a placement file; errors name the field."""
    if not isinstance(raw, dict):
        raise PadError(f"{where}: expected a mapping with shape and pools")
    unknown = sorted(set(raw) - {"shape", "pools", "system"})
    if unknown:
        raise PadError(f"{where}: unknown field(s) {unknown}; expected shape, pools, system")
    shape = raw.get("shape")
    if shape not in SHAPES:
        raise PadError(f"{where}.shape is {shape!r}; allowed: {', '.join(SHAPES)}")
    pools = []
    for i, p in enumerate(raw.get("pools") or []):
        at = f"{where}.pools[{i}]"
        if not isinstance(p, dict):
            raise PadError(f"{at}: expected a mapping")
        bad = sorted(set(p) - POOL_FIELDS)
        if bad:
            raise PadError(f"{at}: unknown field(s) {bad}; expected some of {sorted(POOL_FIELDS)}")
        for name, least in (("nodes", 1), ("gpus", 0)):
            value = p.get(name, least)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise PadError(f"{at}.{name} is {value!r}; expected a whole number, {least} or more")
        pools.append(Pool(
            name=str(p.get("name") or f"pool{i}"), cpus=cpu_cores(p["cpus"]), memory=memory_bytes(p["memory"]),
            nodes=p.get("nodes", 1), gpus=p.get("gpus", 0), labels={str(k): str(v) for k, v in
                                                                   (p.get("labels") or {}).items()},
            taints=tuple(Taint.parse(t, at) for t in p.get("taints") or []),
            reserved=_quantities(p.get("reserved") or {}, f"{at}.reserved"),
            per_node=_quantities(p.get("per_node") or {}, f"{at}.per_node")))
    if not pools:
        raise PadError(f"{where}.pools: expected at least one node pool")
    return Cluster(shape=shape, pools=tuple(pools), system=_quantities(raw.get("system") or {}, f"{where}.system"))
