"""Every Kubernetes manifest in k8s/ passes `kubernetes-validate --strict`, offline.

Excepted, because they are not Kubernetes API resources and have no schema to
validate against: the kind cluster config (kind.x-k8s.io), the kustomizations
(kustomize.config.k8s.io) and KServe's InferenceService (a CRD). Those are
checked here for what pad relies on; the predictor's container is validated as a Pod.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import kfp
import pytest
import yaml

from pipelines.placement import load_placement

K8S = Path(__file__).resolve().parents[1] / "k8s"
NOT_RESOURCES = {("kind.x-k8s.io/v1alpha4", "Cluster"), ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
                 ("serving.kserve.io/v1beta1", "InferenceService")}
VALIDATE = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) or "kubernetes-validate"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = sorted(K8S.rglob("*.yaml"))
RESOURCES = [p for p in MANIFESTS if all((d["apiVersion"], d["kind"]) not in NOT_RESOURCES for d in docs(p))]


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([VALIDATE, "--strict", str(path)], capture_output=True, text=True)


def test_every_manifest_is_a_resource_or_a_named_exception():
    for path in MANIFESTS:
        kinds = {(d["apiVersion"], d["kind"]) for d in docs(path)}
        assert path in RESOURCES or kinds <= NOT_RESOURCES, path
    assert {p.name for p in RESOURCES} >= {"namespace.yaml", "service-account.yaml", "role-binding.yaml", "pvc.yaml",
                                           "gcs-secret.template.yaml"}


@pytest.mark.parametrize("path", RESOURCES, ids=lambda p: str(p.relative_to(K8S)))
def test_resource_passes_strict_validation(path):
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr


def test_strict_validation_catches_an_unknown_field(tmp_path):
    bad = tmp_path / "pvc.yaml"
    pvc = docs(K8S / "pad" / "pvc.yaml")[0]
    pvc["spec"]["accesMode"] = ["ReadWriteOnce"]  # misspelt
    bad.write_text(yaml.safe_dump(pvc))
    assert validate(bad).returncode != 0


def test_kind_cluster_has_a_gpu_like_pool_matching_the_placement():
    (cluster,) = docs(K8S / "kind-cluster.yaml")
    pool = load_placement().gpu_pool
    gpu_nodes = [n for n in cluster["nodes"] if n.get("labels", {}).items() >= pool.node_selector.items()]
    assert len(gpu_nodes) == 1
    (patch,) = [yaml.safe_load(p) for p in gpu_nodes[0]["kubeadmConfigPatches"]]
    taints = patch["nodeRegistration"]["taints"]
    assert [t["key"] for t in taints] == ["nvidia.com/gpu"] and taints[0]["effect"] == "NoSchedule"
    # every taint of the pool is tolerated by the GPU steps
    for taint in taints:
        assert any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in pool.tolerations)
    cpu_nodes = [n for n in cluster["nodes"] if n["role"] == "worker" and n not in gpu_nodes]
    assert cpu_nodes and not any("kubeadmConfigPatches" in n for n in cpu_nodes)


def test_kfp_install_is_pinned_to_the_sdk_release():
    refs = [r for k in ("kfp/cluster-scoped", "kfp") for r in docs(K8S / k / "kustomization.yaml")[0]["resources"]]
    assert len(refs) == 2
    assert all(r.startswith("github.com/kubeflow/pipelines/manifests/kustomize/") for r in refs)
    assert all(r.endswith(f"?ref={kfp.__version__}") for r in refs), refs


def test_pad_kustomization_lists_its_files_and_matches_the_placement():
    kustomization = docs(K8S / "pad" / "kustomization.yaml")[0]
    for name in kustomization["resources"]:
        assert (K8S / "pad" / name).is_file(), name
    assert "gcs-secret.template.yaml" not in kustomization["resources"], "a template is filled in by hand"
    (pvc,) = docs(K8S / "pad" / "pvc.yaml")
    assert pvc["metadata"]["name"] == load_placement().volumes.checkpoint_pvc
    (binding,) = docs(K8S / "pad" / "role-binding.yaml")
    (account,) = docs(K8S / "pad" / "service-account.yaml")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]


def test_inference_service_runs_pad_serve_on_the_store(tmp_path):
    from pad.cli import build_parser

    (isvc,) = docs(K8S / "serving" / "inferenceservice.yaml")
    predictor = isvc["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and "/pad-serve:" in container["image"]
    args = build_parser().parse_args(["serve", *container["args"]])  # the image's entrypoint is `pad serve`
    assert args.store.startswith("gs://") and args.port == container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{args.name}"
    # the predictor is a pod spec: validate it as one
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pad-predictor"},
           "spec": {k: v for k, v in predictor.items() if k not in ("minReplicas", "maxReplicas")}}
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    result = validate(tmp_path / "pod.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
