"""Every compiled package variant and shipped placement against the rules of a KFP 2.17 cluster
(tests/cluster_rules.py), and each rule catching the breach it is there for."""

import copy
import json
from pathlib import Path

import pytest
import yaml

import cluster_rules as rules
from cluster_rules import Package, violations
from pipelines.client import compile_package
from pipelines.images import Built, write_record
from pipelines.placement import TARGETS, load_placement

# (variant, placement, recurring): the gke placement is the default one
VARIANTS = [("default", None, False), ("recurring", None, True), ("kind", "kind", False),
            ("minikube", "minikube", False), ("kind-recurring", "kind", True)]
DELIVERY = {"gke": "pushed", "kind": "kind:pad", "minikube": "minikube:minikube"}


def built(tmp_path: Path, shape: str) -> tuple[Path, dict[str, str]]:
    """An image record as docker/build.py writes it for this shape (pushed, or loaded into the cluster)."""
    record = tmp_path / f"images-{shape}.json"
    entries = {t: Built(f"reg.example/pad-{t}:0.1.0-abc1234", f"sha256:{t}", DELIVERY[shape], "now") for t in TARGETS}
    write_record(record, entries)
    return record, {b.ref: b.delivered for b in entries.values()}


def package(tmp_path: Path, config: str | None, recurring: bool = False) -> Package:
    placement = load_placement(config)
    record, delivered = built(tmp_path, placement.cluster.shape)
    path = compile_package(tmp_path / f"{config or 'default'}-{recurring}.yaml", config, recurring=recurring,
                           images=record)
    return Package.read(path, placement.cluster, delivered)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Package]:
    tmp = tmp_path_factory.mktemp("packages")
    return {name: package(tmp, config, recurring) for name, config, recurring in VARIANTS}


@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS])
def test_every_package_variant_keeps_every_rule(packages, variant):
    assert violations(packages[variant]) == []


def broken(p: Package, change) -> Package:
    q = copy.deepcopy(p)
    change(q)
    return q


def test_a_pod_bigger_than_every_node_is_caught(packages):
    """Row 1: embed asked 32Gi whatever the encoder; a g2-standard-8 has 28.3 GiB allocatable."""
    def big(q):
        q.spec["deploymentSpec"]["executors"]["exec-embed"]["container"]["resources"]["resourceMemoryRequest"] = "32Gi"

    (line,) = rules.rule_pods_fit_their_nodes(broken(packages["default"], big))
    assert line.startswith("exec-embed: requests 4 CPU, 32.0 GiB, 1 GPU; no node of the gke shape")


def test_a_shape_whose_every_node_is_tainted_is_caught(packages):
    """Row 10: minikube's only node tainted nvidia.com/gpu: no CPU step and no driver pod tolerates it."""
    from pipelines.shapes import Cluster

    def taint_all(q):
        gpu = next(pool for pool in q.cluster.pools if pool.taints)
        q.cluster = Cluster(q.cluster.shape, (gpu,), q.cluster.system)

    lines = rules.rule_pods_fit_their_nodes(broken(packages["minikube"], taint_all))
    assert "no untainted node of the minikube shape holds KFP's driver pods" in lines
    assert any(line.startswith("exec-preprocess:") for line in lines)


def test_a_step_without_a_timeout_is_caught(packages):
    def untimed(q):
        del q.platform["exec-pretrain"]["activeDeadlineSeconds"]

    assert rules.rule_every_step_has_a_timeout(broken(packages["default"], untimed)) == ["exec-pretrain: no timeout"]


def test_retries_the_backend_would_cut_short_are_caught(packages):
    """Row 6: backoff_max 3600s against attempts of hours, and a factor of 1.5 that Argo cannot read."""
    def old(q):
        policy = q.spec["root"]["dag"]["tasks"]["pretrain"]["retryPolicy"]
        policy.update(backoffFactor=1.5, backoffMaxDuration="3600s")

    lines = rules.rule_retries_cover_whole_steps(broken(packages["default"], old))
    assert "pretrain: backoff factor 1.5 is not a whole number" in lines
    assert any(line.startswith("pretrain: retry window 3600s <") for line in lines)

    def none(q):
        del q.spec["root"]["dag"]["tasks"]["check"]["retryPolicy"]

    assert rules.rule_retries_cover_whole_steps(broken(packages["default"], none)) == ["check: no retry policy of its own"]


def test_a_run_without_a_deadline_or_with_too_short_a_one_is_caught(packages):
    assert rules.rule_the_run_deadline_outlasts_its_longest_path(
        broken(packages["kind"], lambda q: q.pipeline_config.clear())) == ["the run has no deadline"]
    (line,) = rules.rule_the_run_deadline_outlasts_its_longest_path(
        broken(packages["kind"], lambda q: q.pipeline_config.update(activeDeadlineSeconds=3600)))
    assert line.startswith("run deadline 3600s < its longest chain")


def test_a_per_run_input_of_a_cached_step_is_caught(packages):
    """Row 7: run_id = {{$.pipeline_job_uuid}} was an input of every GPU step."""
    def run_id(q):
        q.spec["root"]["dag"]["tasks"]["pretrain"]["inputs"]["parameters"]["run_id"] = {
            "runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}

    assert rules.rule_no_per_run_value_in_a_cached_step(broken(packages["minikube"], run_id)) == [
        "pretrain: input run_id is {{$.pipeline_job_uuid}}, a per-run value"]


def test_the_schedule_time_reaches_only_the_never_cached_fingerprint(packages):
    """Row 4: the recurring package's per-run bound goes to a step KFP never answers from its cache."""
    tasks = packages["recurring"].tasks()
    users = [n for n, t in tasks.items()
             if any("schedule_time" in str(v) for v in t.get("inputs", {}).get("parameters", {}).values())]
    assert users == ["fingerprint"] and not tasks["fingerprint"].get("cachingOptions", {}).get("enableCache")


def test_images_nothing_pushed_are_caught(packages):
    """Row 2: ghcr.io/pad-rec/pad-*:0.1.0, which nothing ever pushed."""
    def unpushed(q):
        for executor in q.spec["deploymentSpec"]["executors"].values():
            executor["container"]["image"] = "ghcr.io/pad-rec/pad-cpu:0.1.0"

    lines = rules.rule_images_were_built_and_can_be_pulled(broken(packages["default"], unpushed))
    assert "exec-check: image ghcr.io/pad-rec/pad-cpu:0.1.0 was never built by docker/build.py" in lines
    loaded = broken(packages["default"], lambda q: q.record.update({r: "kind:pad" for r in q.record}))
    assert any("was kind:pad, not where a gke cluster pulls from" in l
               for l in rules.rule_images_were_built_and_can_be_pulled(loaded))


def test_a_store_in_a_pods_own_file_system_is_caught(packages):
    """Row 5: a folder store, and compare and publish in pods with no volume in common."""
    def any_folder(q):
        q.spec["root"]["dag"]["tasks"]["check"]["inputs"]["parameters"]["store_root"]["runtimeValue"]["constant"] = "*"

    assert rules.rule_the_store_is_where_compare_and_publish_run(broken(packages["default"], any_folder)) == [
        "the check step lets a store be any folder: a local package"]

    def unmounted(q):
        del q.platform["exec-publish"]["pvcMount"]

    assert rules.rule_the_store_is_where_compare_and_publish_run(broken(packages["kind"], unmounted)) == [
        "publish: folder stores lie under /mnt/pad-store, which it does not mount"]


def test_a_one_node_claim_shared_across_nodes_is_caught(packages):
    """Row 8: one ReadWriteOnce checkpoint claim for GPU pods spread over GKE's autoscaled GPU pool."""
    def shared(q):
        for name, cfg in q.platform.items():
            if "nodeSelector" in cfg:
                cfg["pvcMount"] = [{"constant": "pad-checkpoints", "mountPath": "/mnt/pad"}]

    lines = rules.rule_a_one_node_claim_is_mounted_on_one_node(broken(packages["default"], shared))
    assert "exec-pretrain: ReadWriteOnce claim pad-checkpoints on a pool of 4 nodes" in lines


def test_llm_weights_without_a_volume_are_caught(packages):
    """Row 3: each embed pod downloading 16 GB into the container's own file system."""
    def no_volume(q):
        del q.platform["exec-embed"]["genericEphemeralVolume"]

    assert rules.rule_downloaded_weights_have_a_volume(broken(packages["default"], no_volume))
    assert rules.rule_downloaded_weights_have_a_volume(packages["kind"]) == [], "MiniLM ships in the image"


def test_an_undescribed_parameter_is_caught(packages):
    def bare(q):
        del q.spec["root"]["inputDefinitions"]["parameters"]["top_k"]["description"]

    assert rules.rule_parameters_are_described(broken(packages["default"], bare)) == ["parameter top_k has no description"]


def test_the_kfp_install_retries_everything_but_an_input_error():
    """Row 6: input errors (exit 2 in pad, exit 1 through KFP's launcher) were retried like a lost node."""
    import re

    from components.errors import INPUT_ERROR

    policy, pattern = rules.retry_expression()
    assert policy == "Always", "a failed main container (a node shut down under it, an OOM kill) is retried too"
    assert re.search(pattern, f"main: Error (exit code 1): {INPUT_ERROR}: parameter 'top_k' is 0")
    for other in ("pod deleted", "Pod was terminated in response to imminent node shutdown.",
                  "main: OOMKilled (exit code 137)", "main: Error (exit code 1)"):
        assert not re.search(pattern, other), other


def test_an_input_error_becomes_the_pods_termination_message(tmp_path):
    from components.errors import INPUT_ERROR, record_input_error
    from padcore.errors import PadError

    log = tmp_path / "termination-log"
    assert not record_input_error(PadError("x"), log), "outside a pod: nothing written"
    log.touch()
    assert not record_input_error(RuntimeError("node lost"), log) and log.read_text() == ""
    assert record_input_error(PadError("parameter 'top_k' is 0; expected a whole number, 1 or more"), log)
    assert log.read_text() == f"{INPUT_ERROR}: parameter 'top_k' is 0; expected a whole number, 1 or more"


def test_the_marker_is_written_by_a_step_process_that_ends_on_an_input_error(tmp_path):
    """What a step's pod runs: KFP's executor imports the component, the PadError ends the process."""
    import subprocess
    import sys

    code = ("import components, pathlib, components.errors as e\n"
            f"e.TERMINATION_LOG = pathlib.Path({str(tmp_path / 'log')!r})\n"
            "from padcore.errors import PadError\nraise PadError('source files:/x: folder not found')\n")
    (tmp_path / "log").touch()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1 and "PadError" in result.stderr
    assert (tmp_path / "log").read_text() == "pad input error: source files:/x: folder not found"


def test_metrics_reach_the_launcher_as_strict_json(tmp_path):
    """Row 12: a champion scoring 0 on the new split made gain = inf; Python writes it as `Infinity`, which the Go
    launcher's protojson refuses (the step fails on a cluster, passes under kfp.local)."""
    from kfp.dsl import Metrics

    from components.reports import log_metrics
    from conftest import artifact

    metrics = artifact(Metrics, tmp_path, "metrics")
    log_metrics(metrics, {"gain": float("inf"), "tau": float("nan"), "ndcg@10": 4.1})
    assert metrics.metadata == {"ndcg@10": 4.1}
    rules.strict_json(json.dumps({"metadata": metrics.metadata}))
    with pytest.raises(ValueError, match="invalid value Infinity"):
        rules.strict_json(json.dumps({"gain": float("inf")}))


def test_the_kind_placement_reserves_what_the_kind_cluster_reserves():
    (cluster,) = yaml.safe_load_all((rules.K8S / "kind-cluster.yaml").read_text())
    (node,) = cluster["nodes"]
    (patch,) = [yaml.safe_load(p) for p in node["kubeadmConfigPatches"]]
    pool = load_placement("kind").cluster.pools[0]
    from pipelines.shapes import cpu_cores, memory_bytes

    assert pool.reserved == (cpu_cores(patch["systemReserved"]["cpu"]), memory_bytes(patch["systemReserved"]["memory"]))
