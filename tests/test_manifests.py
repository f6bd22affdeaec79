"""Every Kubernetes manifest in k8s/ passes `kubernetes-validate --strict`, offline, and keeps what pad relies on.

Excepted from the schema check, because they are not whole Kubernetes API resources: the kind cluster config
(kind.x-k8s.io), the kustomizations (kustomize.config.k8s.io), KServe's InferenceService (a CRD; its predictor
is validated as a Pod) and the patches k8s/kfp applies to KFP's own objects (partial objects, checked for
what they change).
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
KFP_BACKEND = "2.17.0"  # the kubeflow/pipelines release tag of the kfp 2.17 backend (there is no tag 2.17.3)


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = sorted(K8S.rglob("*.yaml"))
PATCHES = sorted(K8S / "kfp" / p["path"] for p in yaml.safe_load((K8S / "kfp" / "kustomization.yaml").read_text())["patches"])
RESOURCES = [p for p in MANIFESTS if p not in PATCHES
             and all((d["apiVersion"], d["kind"]) not in NOT_RESOURCES for d in docs(p))]


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([VALIDATE, "--strict", str(path)], capture_output=True, text=True)


def test_every_manifest_is_a_resource_or_a_named_exception():
    for path in MANIFESTS:
        kinds = {(d["apiVersion"], d["kind"]) for d in docs(path)}
        assert path in RESOURCES or path in PATCHES or kinds <= NOT_RESOURCES, path
    assert {p.name for p in RESOURCES} >= {"service-account.yaml", "role-binding.yaml", "checkpoints-pvc.yaml",
                                           "store-pvc.yaml", "gcs-secret.template.yaml", "hf-token.template.yaml"}


@pytest.mark.parametrize("path", RESOURCES, ids=lambda p: str(p.relative_to(K8S)))
def test_resource_passes_strict_validation(path):
    result = validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr


def test_strict_validation_catches_an_unknown_field(tmp_path):
    bad = tmp_path / "pvc.yaml"
    pvc = docs(K8S / "pad" / "checkpoints-pvc.yaml")[0]
    pvc["spec"]["accesMode"] = ["ReadWriteOnce"]  # misspelt
    bad.write_text(yaml.safe_dump(pvc))
    assert validate(bad).returncode != 0


def test_pad_never_declares_kfps_namespace():
    """Row 9: k8s/pad re-declared the `kubeflow` Namespace: applying it stripped KFP's Pod Security labels, and
    `kubectl delete -k k8s/pad` deleted KFP itself. The Namespace belongs to KFP's install (k8s/kfp/cluster-scoped)."""
    for path in MANIFESTS:
        for doc in docs(path):
            assert doc["kind"] != "Namespace", path
            if path.parent.name in ("pad", "pad-multi-user") and doc["kind"] != "Kustomization" \
                    and "template" not in path.name:
                assert "namespace" not in doc["metadata"], f"{path}: the kustomization sets the namespace"


def test_pad_kustomization_lists_its_files_and_matches_the_placements():
    kustomization = docs(K8S / "pad" / "kustomization.yaml")[0]
    for name in kustomization["resources"]:
        assert (K8S / "pad" / name).is_file(), name
    assert not any("template" in n for n in kustomization["resources"]), "a template is filled in by hand"
    claims = {d["metadata"]["name"] for n in kustomization["resources"] for d in docs(K8S / "pad" / n)
              if d["kind"] == "PersistentVolumeClaim"}
    for shape in ("gke", "kind", "minikube"):
        volumes = load_placement(shape).volumes
        assert {volumes.checkpoint_pvc, volumes.store_pvc} - {""} <= claims, shape
    (binding,) = docs(K8S / "pad" / "role-binding.yaml")
    (account,) = docs(K8S / "pad" / "service-account.yaml")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]


def test_runs_from_the_ui_get_pads_service_account():
    """Row 14: a run started from the KFP UI has an empty service account, which the API server replaces with its
    configured default (template.go setDefaultServiceAccount): k8s/kfp makes that pad-runner."""
    (patch,) = docs(K8S / "kfp" / "api-server-default-sa.yaml")
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    (account,) = docs(K8S / "pad" / "service-account.yaml")
    assert patch["metadata"]["name"] == "ml-pipeline" and container["name"] == "ml-pipeline-api-server"
    assert env == {"DEFAULTPIPELINERUNNERSERVICEACCOUNT": account["metadata"]["name"]}


def test_the_kfp_install_keeps_kfps_workflow_ttl():
    """k8s/kfp replaces Argo's workflowDefaults only for its retry rule: KFP 2.17.0's ttlStrategy is kept as is."""
    (patch,) = docs(K8S / "kfp" / "retry-input-errors.yaml")
    defaults = yaml.safe_load(patch["data"]["workflowDefaults"])["spec"]
    assert defaults["ttlStrategy"] == {"secondsAfterCompletion": 3600, "secondsAfterSuccess": 3600,
                                       "secondsAfterFailure": 3600}
    assert defaults["templateDefaults"]["retryStrategy"]["limit"] == "2"


def test_the_kind_cluster_is_one_node_and_minikube_needs_no_taint_on_its_first():
    """Row 10: the minikube section tainted the only node; now the GPU node is minikube's second, and kind is one
    untainted node for everything."""
    (cluster,) = docs(K8S / "kind-cluster.yaml")
    assert [n["role"] for n in cluster["nodes"]] == ["control-plane"]
    assert "taints" not in str(cluster)
    pools = load_placement("minikube").cluster.pools
    assert not pools[0].taints and pools[1].taints and pools[1].labels == load_placement("minikube").gpu_pool.node_selector


def test_kfp_install_is_pinned_to_a_backend_release_of_the_sdks_minor():
    refs = [r for k in ("kfp/cluster-scoped", "kfp") for r in docs(K8S / k / "kustomization.yaml")[0]["resources"]]
    assert len(refs) == 2
    assert all(r.startswith("github.com/kubeflow/pipelines/manifests/kustomize/") for r in refs)
    assert all(r.endswith(f"?ref={KFP_BACKEND}") for r in refs), refs
    assert kfp.__version__.split(".")[:2] == KFP_BACKEND.split(".")[:2]


def test_the_predictor_runs_as_an_account_with_no_role():
    """Row 11: the network-facing predictor ran as pad-runner, bound to KFP's pipeline-runner Role (secrets get,
    pods/exec *). It now runs as pad-serve, which nothing binds a Role to."""
    (isvc,) = docs(K8S / "serving" / "inferenceservice.yaml")
    account = isvc["spec"]["predictor"]["serviceAccountName"]
    (sa,) = docs(K8S / "serving" / "service-account.yaml")
    assert account == sa["metadata"]["name"] == "pad-serve" and sa["automountServiceAccountToken"] is False
    bound = [s["name"] for p in MANIFESTS for d in docs(p) if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
             for s in d["subjects"]]
    assert account not in bound
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


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


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl (with kustomize) not installed")
@pytest.mark.parametrize("folder, namespace", [("pad", "kubeflow"), ("pad-multi-user", "my-profile")])
def test_kustomize_puts_every_object_in_one_namespace(folder, namespace):
    """Row 15: the manifests were hard-wired to `kubeflow`; the namespace is now set once, by the kustomization."""
    out = subprocess.run(["kubectl", "kustomize", str(K8S / folder)], capture_output=True, text=True, check=True).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    assert objects and {d["metadata"]["namespace"] for d in objects} == {namespace}
    assert all(d["kind"] != "Namespace" for d in objects)
