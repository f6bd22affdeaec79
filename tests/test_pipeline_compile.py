"""The compiled pipeline package: steps, edges, placement, caching and retries, read back from the IR YAML."""

from pathlib import Path

import pytest
import yaml

from pad.cli import main
from padcore.errors import PadError
from pipelines.client import compile_package
from pipelines.images import image_refs
from pipelines.pad_pipeline import MODEL_CACHE_DIR, RUN_FIELD
from pipelines.placement import STEPS, load_placement, seconds

KINDS = {"check", "fingerprint", "preprocess", "embed", "embed-merge", "pretrain", "align", "finetune", "analyze", "compare", "publish",
         "recommend", "baselines-plan", "train", "leaderboard"}
EDGES = {
    ("fingerprint", "preprocess"),
    ("preprocess", "embed"), ("embed", "embed-merge"),
    ("preprocess", "pretrain"),
    ("preprocess", "align"), ("embed-merge", "align"), ("pretrain", "align"),
    ("preprocess", "finetune"), ("embed-merge", "finetune"), ("pretrain", "finetune"), ("align", "finetune"),
    ("preprocess", "analyze"), ("embed-merge", "analyze"), ("pretrain", "analyze"), ("align", "analyze"),
    ("finetune", "analyze"),
    # with a store: compare, then (if better) publish and recommend
    ("preprocess", "compare"), ("embed-merge", "compare"), ("finetune", "compare"),
    ("preprocess", "publish"), ("embed-merge", "publish"), ("finetune", "publish"), ("compare", "publish"),
    ("preprocess", "recommend"), ("embed-merge", "recommend"), ("finetune", "recommend"),
    # with baselines: each trained beside PAD from the same data, text and phase-1 model, then the leaderboard
    ("preprocess", "train"), ("embed-merge", "train"), ("pretrain", "train"),
    ("preprocess", "leaderboard"), ("pretrain", "leaderboard"), ("finetune", "leaderboard"), ("train", "leaderboard"),
}
GROUPS = ("for-loop", "condition")

# A placement unlike the default in every respect the tests check, so nothing can pass by accident.
CUSTOM = """
cluster:
  shape: gke
  pools:
    - {name: cpu, cpus: 16, memory: 64Gi, nodes: 2}
    - {name: gpu, cpus: 16, memory: 64Gi, gpus: 2, labels: {cloud.google.com/gke-accelerator: nvidia-l4, pool: fast},
       taints: ["nvidia.com/gpu=present:NoSchedule", "dedicated=ml:NoExecute"]}
encoders: [minilm, hf]
run_timeout: 4d
defaults: {image: cpu, cpu: "1", memory: 2Gi, caching: true, timeout: 30m, retries: 0}
steps:
  compare: {caching: false}
  publish: {caching: false}
  preprocess: {cpu: 3, memory: 5Gi, retries: 1}
  embed: {image: llm2vec, gpus: 2, retries: 4, backoff: 30s, backoff_factor: 3, timeout: 2h}
  pretrain: {image: gpu, gpus: 1, retries: 1, backoff: 10s}
  align: {image: gpu}
  finetune: {image: gpu, gpus: 1}
  analyze: {caching: false}
gpu_pool:
  accelerator: nvidia.com/gpu
  node_selector: {cloud.google.com/gke-accelerator: nvidia-l4, pool: fast}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    - {key: dedicated, operator: Equal, value: ml, effect: NoExecute, tolerationSeconds: 60}
volumes: {checkpoint_pvc: ckpt, checkpoint_path: /ckpt, gcs_secret: gcs-key, store_pvc: stores, store_path: /stores,
          hf_token_secret: hf, model_cache: 30Gi, model_cache_class: fast-ssd}
pipeline_root: gs://bucket/pad
"""


def compiled(tmp_path: Path, config: str | None = None) -> tuple[dict, dict, object]:
    path = None
    if config is not None:
        path = tmp_path / "placement.yaml"
        path.write_text(config)
    package = compile_package(tmp_path / "pad.yaml", path, allow_unbuilt=True)
    docs = list(yaml.safe_load_all(package.read_text()))
    assert len(docs) == 2, "kfp-kubernetes settings belong in a second document"
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"], load_placement(path)


def all_tasks(spec: dict) -> dict[str, tuple[str, dict, str]]:
    """task name -> (component kind, task spec, name of the DAG holding it), over the root and its sub-DAGs."""
    dags = {"root": spec["root"]["dag"]}
    dags.update({name: comp["dag"] for name, comp in spec["components"].items() if "dag" in comp})
    out = {}
    for dag_name, dag in dags.items():
        for task_name, task in dag["tasks"].items():
            out[task_name] = (task["componentRef"]["name"].removeprefix("comp-"), task, dag_name)
    return out


def edges(spec: dict) -> set[tuple[str, str]]:
    """(producer kind, consumer kind) over artifact and parameter inputs, through loops and conditions."""
    tasks = all_tasks(spec)
    runner = {task["componentRef"]["name"]: name for name, (kind, task, _) in tasks.items() if kind.startswith(GROUPS)}

    def producers(task_name: str) -> set[str]:
        kind, task, _ = tasks[task_name]
        if kind.startswith(GROUPS):  # a group stands for the tasks inside it
            inner = [n for n, (_, _, d) in tasks.items() if d == task["componentRef"]["name"]]
            return {k for n in inner for k in producers(n)}
        return {kind}

    def sources(ref: dict, dag_name: str) -> set[str]:
        src = ref.get("taskOutputArtifact") or ref.get("taskOutputParameter")
        if src:
            return producers(src["producerTask"])
        name = ref.get("componentInputArtifact") or ref.get("componentInputParameter")
        if name and dag_name != "root":  # an input handed into a group: follow it to the group task's own inputs
            _, group, parent_dag = tasks[runner[dag_name]]
            outer = {**group["inputs"].get("artifacts", {}), **group["inputs"].get("parameters", {})}
            return sources(outer[name], parent_dag) if name in outer else set()
        return set()

    found = set()
    for name, (kind, task, dag_name) in tasks.items():
        if kind.startswith(GROUPS):
            continue
        refs = list(task.get("inputs", {}).get("artifacts", {}).values())
        refs += list(task.get("inputs", {}).get("parameters", {}).values())
        found |= {(p, kind) for ref in refs for p in sources(ref, dag_name)}
    # the embedding loop iterates over preprocess's shard list (the baselines loop over a run parameter)
    for name, (kind, task, _) in tasks.items():
        if kind.startswith("for-loop"):
            items = task["parameterIterator"]["items"]["inputParameter"]
            src = task["inputs"]["parameters"][items].get("taskOutputParameter")
            if src:
                found |= {(tasks[src["producerTask"]][0], k) for k in producers(name)}
    return found


def executor_kind(executor: str) -> str:
    return executor.removeprefix("exec-")


def test_default_package_has_the_steps_and_edges(tmp_path):
    spec, _, _ = compiled(tmp_path)
    kinds = {kind for kind, _, _ in all_tasks(spec).values() if not kind.startswith(GROUPS)}
    assert kinds == KINDS
    assert {executor_kind(e) for e in spec["deploymentSpec"]["executors"]} == KINDS
    assert edges(spec) == EDGES


def test_every_gpu_step_waits_for_the_parameter_check(tmp_path):
    """A typo in a parameter fails the CPU step `check`; no GPU step starts before it has passed."""
    spec, _, placement = compiled(tmp_path)
    tasks = all_tasks(spec)
    root = spec["root"]["dag"]["tasks"]

    def after(name: str) -> set[str]:
        """Every root task `name` waits for, directly or through others (a task in a loop or a condition waits as
        the loop or condition does)."""
        while tasks[name][2] != "root":
            name = next(n for n, (k, _, _) in tasks.items() if f"comp-{k}" == tasks[name][2])
        direct = set(root[name].get("dependentTasks", []))
        return direct.union(*(after(d) for d in direct))

    gpu = placement.gpu_steps()
    assert {"embed", "pretrain", "align", "finetune"} <= set(gpu)
    for step in gpu:
        assert "check" in after(step.replace("_", "-")), step
    assert "check" in after("preprocess") and "check" in after("fingerprint"), "no step starts before the check"
    check_inputs = set(root["check"]["inputs"]["parameters"])
    assert check_inputs == {"encoder", "backbone", "loss", "epochs", "gamma", "seed", "device", "train_options",
                            "analyze_options", "baselines", "as_of", "store", "min_gain", "top_k", "encoders",
                            "store_root"}
    training = {"encoder", "backbone", "loss", "epochs", "gamma", "seed", "device", "train_options", "analyze_options"}
    assert not training & set(root["preprocess"]["inputs"]["parameters"]), "preprocess's cache key stays small"


def test_run_parameters_and_defaults(tmp_path):
    spec, _, _ = compiled(tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {name: p.get("defaultValue") for name, p in params.items()}
    assert defaults["source"] == "prime_pantry" and defaults["encoder"] == "minilm"
    assert defaults["backbone"] == "sasrec" and defaults["loss"] == "bce"
    assert defaults["gamma"] == 0.2 and defaults["buckets"] == 10 and defaults["embed_shards"] == 1
    assert {"epochs", "seed", "device", "max_len", "min_len", "train_options", "analyze_options"} <= set(params)
    assert defaults["store"] == "" and defaults["min_gain"] == 0.0 and defaults["force"] is False
    assert defaults["as_of"] == "" and defaults["top_k"] == 10
    assert all(p.get("description") for p in params.values()), "every parameter says what it means"


def test_embedding_fans_out_and_merges(tmp_path):
    spec, _, _ = compiled(tmp_path)
    tasks = all_tasks(spec)
    (name, loop), = [(n, t) for n, (k, t, _) in tasks.items() if k.startswith("for-loop") and tasks["embed"][2] ==
                     t["componentRef"]["name"]]
    assert "parameterIterator" in loop
    assert [k for k, _, d in tasks.values() if d == loop["componentRef"]["name"]] == ["embed"]
    merge = tasks["embed-merge"][1]
    parts = merge["inputs"]["artifacts"]["parts"]["taskOutputArtifact"]
    assert parts["producerTask"] == name
    assert spec["components"]["comp-embed-merge"]["inputDefinitions"]["artifacts"]["parts"]["isArtifactList"]


@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom"])
def test_placement_follows_the_configuration(tmp_path, custom):
    spec, platform, placement = compiled(tmp_path, CUSTOM if custom else None)
    executors = spec["deploymentSpec"]["executors"]
    gpu = {s.replace("_", "-") for s in placement.gpu_steps()}
    assert gpu == ({"embed", "pretrain", "finetune"} if custom else {"embed", "pretrain", "align", "finetune", "train"})
    images = image_refs(placement.targets(), None, allow_unbuilt=True)
    for name, executor in executors.items():
        step = executor_kind(name).replace("-", "_")
        container, p = executor["container"], placement.steps[step]
        assert container["image"] == images[p.image]
        resources = container["resources"]
        assert resources["resourceCpuRequest"] == p.cpu and resources["resourceMemoryRequest"] == p.memory
        assert resources["resourceMemoryLimit"] == p.memory
        if executor_kind(name) in gpu:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == str(p.gpus)
        else:
            assert "accelerator" not in resources
    # node selector and tolerations on exactly the GPU steps
    with_selector = {executor_kind(e) for e, cfg in platform.items() if "nodeSelector" in cfg}
    with_tolerations = {executor_kind(e) for e, cfg in platform.items() if "tolerations" in cfg}
    assert with_selector == with_tolerations == gpu
    for name in gpu:
        cfg = platform[f"exec-{name}"]
        assert cfg["nodeSelector"]["labels"] == placement.gpu_pool.node_selector
        as_text = lambda ts: [{k: str(v) for k, v in t.items()} for t in ts]  # int64 is a string in proto JSON
        assert as_text(cfg["tolerations"]) == as_text(placement.gpu_pool.tolerations)
        if custom:
            assert cfg["pvcMount"][0]["mountPath"] == placement.volumes.checkpoint_path
        else:
            assert "pvcMount" not in cfg, "no checkpoint claim on GKE's multi-node GPU pool"
    for name, cfg in platform.items():  # every step has a timeout: the pod's activeDeadlineSeconds
        p = placement.steps[executor_kind(name).replace("-", "_")]
        assert int(cfg["activeDeadlineSeconds"]) == seconds(p.timeout), name
    assert set(platform) == {f"exec-{k}" for k in KINDS}
    models = platform["exec-embed"]["genericEphemeralVolume"][0]
    assert models["size"] == placement.volumes.model_cache and models["mountPath"] == MODEL_CACHE_DIR
    env = {e["name"]: e["value"] for e in executors["exec-embed"]["container"].get("env", [])}
    assert env["HF_HOME"] == MODEL_CACHE_DIR
    if custom:
        assert spec["defaultPipelineRoot"] == "gs://bucket/pad"
        assert models["storageClassName"] == "fast-ssd"
        assert platform["exec-embed"]["secretAsEnv"][0]["secretName"] == "hf"
        assert platform["exec-embed"]["secretAsEnv"][0]["keyToEnv"] == [{"secretKey": "token", "envVar": "HF_TOKEN"}]
        for step in ("compare", "publish"):
            assert platform[f"exec-{step}"]["pvcMount"] == [{"constant": "stores", "mountPath": "/stores",
                                                             "pvcNameParameter": {"runtimeValue": {"constant": "stores"}}}]
        for name, cfg in platform.items():
            assert cfg["secretAsVolume"][0]["secretName"] == "gcs-key"
            env = {e["name"]: e["value"] for e in executors[name]["container"].get("env", [])}
            assert env["GOOGLE_APPLICATION_CREDENTIALS"].endswith("/key.json")


@pytest.mark.parametrize("custom", [False, True], ids=["default", "custom"])
def test_caching_and_retries_as_configured(tmp_path, custom):
    spec, _, placement = compiled(tmp_path, CUSTOM if custom else None)
    for name, (kind, task, _) in all_tasks(spec).items():
        if kind.startswith(GROUPS):
            continue
        p = placement.steps[kind.replace("-", "_")]
        assert task.get("cachingOptions", {}).get("enableCache", False) is p.caching, name
        # every task has a policy of its own, none included: else it would take the install's default
        policy = task["retryPolicy"]
        assert policy.get("maxRetryCount", 0) == p.retries, name
        assert policy["backoffDuration"] == f"{seconds(p.backoff)}s"
        assert policy["backoffMaxDuration"] == f"{p.retry_window()}s"
        assert policy["backoffFactor"] == p.backoff_factor
    if custom:
        assert all_tasks(spec)["analyze"][1].get("cachingOptions", {}).get("enableCache", False) is False


def test_gpu_steps_resume_from_the_checkpoint_volume(tmp_path):
    """Where a placement has a checkpoint claim, each GPU step mounts it and learns its run from the pod's
    Workflow label; no step takes the run as an input (it would be in KFP's cache key)."""
    spec, executors, placement = compiled(tmp_path, CUSTOM)
    for name in placement.gpu_steps():
        params = all_tasks(spec)[name.replace("_", "-")][1]["inputs"]["parameters"]
        assert params["checkpoint_root"]["runtimeValue"]["constant"] == placement.volumes.checkpoint_path
        assert "run_id" not in params
        cfg = executors[f"exec-{name.replace('_', '-')}"]
        assert cfg["pvcMount"][0]["mountPath"] == placement.volumes.checkpoint_path
        assert cfg["fieldPathAsEnv"] == [{"name": "PAD_RUN", "fieldPath": RUN_FIELD}]
    assert "checkpoint_root" not in all_tasks(spec)["preprocess"][1]["inputs"]["parameters"]


def test_compile_verb(tmp_path, capsys):
    assert main(["pipeline", "compile", "--allow-unbuilt-images", "--out", str(tmp_path / "p.yaml")]) == 0
    assert (tmp_path / "p.yaml").is_file() and "wrote" in capsys.readouterr().out


BASE = "cluster: {shape: kind, pools: [{cpus: 8, memory: 32Gi, gpus: 1}]}\nencoders: [minilm]\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: {trian: {}}\n", "steps ['trian'] are not pipeline steps"),
        ("steps: {embed: {image: tpu}}\n", "steps.embed option 'image' is 'tpu'; allowed: cpu, gpu, llm2vec"),
        ("steps: {embed: {gpus: one}}\n", "steps.embed option 'gpus' is 'one'; expected a whole number"),
        ("steps: {embed: {gpus: -1}}\n", "steps.embed option 'gpus' is -1; allowed: 0 <= value"),
        ("steps: {embed: {retries: 1.5}}\n", "steps.embed option 'retries' is 1.5; expected a whole"),
        ("steps: {embed: {memory: 16GB}}\n", "steps.embed option 'memory' is '16GB'; allowed: bytes"),
        ("steps: {embed: {cpu: two}}\n", "steps.embed option 'cpu' is 'two'; allowed: a number"),
        ("steps: {embed: {backoff: 1 min}}\n", "option 'backoff' is '1 min'; allowed: a whole"),
        ("steps: {embed: {backoff_factor: 0}}\n", "option 'backoff_factor' is 0; allowed: 1 <="),
        ("steps: {embed: {backoff_factor: 1.5}}\n", "option 'backoff_factor' is 1.5; expected a whole number"),
        ("steps: {embed: {timeout: forever}}\n", "option 'timeout' is 'forever'; allowed: a whole"),
        ("steps: {embed: {caching: maybe}}\n", "option 'caching' is 'maybe'; expected true or false"),
        ("gpu_pool: {node_selector: {pool: 1}}\n", "'node_selector' is {'pool': 1}; expected a"),
        ("gpu_pool: {tolerations: {key: x}}\n", "'tolerations' is {'key': 'x'}; expected a list"),
        ("gpu_pool: {tolerations: [{kye: x}]}\n", "gpu_pool.tolerations[0]: unknown field(s) ['kye']"),
        ("gpu_pool: {tolerations: [{effect: NoRun}]}\n", "tolerations[0].effect is 'NoRun'; allowed"),
        ("volumes: {checkpoint_pvc: My_Claim}\n", "'checkpoint_pvc' is 'My_Claim'; allowed: a Kub"),
        ("volumes: {checkpoint_path: mnt}\n", "'checkpoint_path' is 'mnt'; allowed: an absolute"),
        ("steps: {embed: {gpu: 1}}\n", "unknown field(s) ['gpu']"),
        ("gpu_pool: {selector: {}}\n", "gpu_pool: unknown field(s) ['selector']"),
        ("images: {cpu: a}\n", "unknown top-level field(s) ['images'] (image references now come from"),
        ("steps: {publish: {caching: true}}\n", "steps.publish.caching is true"),
        ("steps: {fingerprint: {caching: true}}\n", "steps.fingerprint.caching is true"),
        ("encoders: [minilm, bert]\n", "encoders is ['minilm', 'bert']; expected a list of some of"),
        ("encoders: [llm2vec]\n", "encoders include llm2vec, which download their weights"),
        ("steps: {pretrain: {memory: 33Gi}}\n", "steps.pretrain asks 1 CPU, 33.0 GiB (with KFP's launcher); no node"),
        ("steps: {pretrain: {cpu: \"9\"}}\n", "steps.pretrain asks 9 CPU"),
        ("steps: {pretrain: {gpus: 2}}\n", "none admits it"),
        ("steps: {pretrain: {timeout: 2d}}\n", "may take 518490 s with its retries, longer than run_timeout 3d"),
        ("run_timeout: soon\n", "run_timeout is 'soon'"),
        ("cluster: {shape: aks, pools: []}\n", "cluster.shape is 'aks'; allowed: gke, kind, minikube"),
        ("cluster: {shape: kind, pools: [{cpus: 4, memory: 16Gi, taints: [gpu]}]}\n", "taint 'gpu'; expected key"),
    ],
)
def test_bad_placement_is_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + text if not text.startswith("cluster") else text)
    with pytest.raises(PadError) as err:
        load_placement(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_placement_without_a_cluster_says_what_is_missing(tmp_path):
    path = tmp_path / "bare.yaml"
    path.write_text("steps: {}\n")
    with pytest.raises(PadError, match="no 'cluster:' section"):
        load_placement(path)


def test_shipped_placements_are_named_by_their_shape():
    assert load_placement("kind").cluster.shape == "kind" and load_placement("minikube").cluster.shape == "minikube"
    assert load_placement("gke").source == load_placement().source
    with pytest.raises(PadError, match="placement file not found .*gke, kind, minikube"):
        load_placement("aks")


def test_every_step_is_placed():
    assert set(load_placement().steps) == set(STEPS)


def test_a_store_gates_publishing_on_the_comparison(tmp_path):
    spec, _, _ = compiled(tmp_path)
    tasks = all_tasks(spec)
    groups = {name: task for name, (kind, task, _) in tasks.items() if kind.startswith("condition")}
    outer = next(t for t in groups.values() if tasks["compare"][2] == t["componentRef"]["name"])
    assert tasks[next(n for n, t in groups.items() if t is outer)][2] == "root"
    assert outer["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--store'] != ''"
    inner = next(t for t in groups.values() if tasks["publish"][2] == t["componentRef"]["name"])
    assert inner["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--compare-Output'] == 'publish'"
    assert inner["inputs"]["parameters"]["pipelinechannel--compare-Output"]["taskOutputParameter"] == {
        "producerTask": "compare", "outputParameterKey": "Output"}
    assert tasks["publish"][2] == tasks["recommend"][2] == inner["componentRef"]["name"]
    assert tasks["recommend"][1]["dependentTasks"] == ["publish"]
    # everything the store block uses comes from the new run: the final model, its dataset and text
    model = lambda task: tasks[task][1]["inputs"]["artifacts"]["model"]["componentInputArtifact"]
    assert model("compare") == model("publish") == model("recommend") == "pipelinechannel--finetune-model"
    params = lambda task: tasks[task][1]["inputs"]["parameters"]
    assert params("compare")["store"] == params("publish")["store"] == {"componentInputParameter": "pipelinechannel--store"}
    assert params("recommend")["k"] == {"componentInputParameter": "pipelinechannel--top_k"}


def test_recurring_package_is_its_own_pipeline_and_bounds_the_data_by_the_schedule(tmp_path):
    normal, recurring = tmp_path / "normal.yaml", tmp_path / "recurring.yaml"
    compile_package(normal, allow_unbuilt=True)
    compile_package(recurring, recurring=True, allow_unbuilt=True)
    once, again = (next(yaml.safe_load_all(p.read_text())) for p in (normal, recurring))
    assert once["pipelineInfo"]["name"] == "pad" and again["pipelineInfo"]["name"] == "pad-recurring"
    for spec, bound in ((once, ""), (again, "{{$.pipeline_job_schedule_time_utc}}")):
        fp = all_tasks(spec)["fingerprint"][1]
        assert fp["inputs"]["parameters"]["scheduled_time"]["runtimeValue"]["constant"] == bound
        assert fp.get("cachingOptions", {}).get("enableCache", False) is False, "the fingerprint is never cached"
        prep = all_tasks(spec)["preprocess"][1]
        assert prep["inputs"]["parameters"]["as_of"] == {"taskOutputParameter": {"outputParameterKey": "as_of",
                                                                                  "producerTask": "fingerprint"}}
        assert prep["cachingOptions"]["enableCache"] is True, "unchanged data: preprocess is answered from the cache"


def test_compile_verb_recurring(tmp_path):
    assert main(["pipeline", "compile", "--recurring", "--allow-unbuilt-images", "--out", str(tmp_path / "r.yaml")]) == 0
    assert next(yaml.safe_load_all((tmp_path / "r.yaml").read_text()))["pipelineInfo"]["name"] == "pad-recurring"


def test_baselines_fan_out_beside_pad_and_meet_in_the_leaderboard(tmp_path):
    spec, executors, placement = compiled(tmp_path)
    tasks = all_tasks(spec)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["baselines"]["parameterType"] == "LIST" and params["baselines"].get("defaultValue") == []
    group = next(task for kind, task, dag in tasks.values() if kind.startswith("condition")
                 and tasks["leaderboard"][2] == task["componentRef"]["name"])
    # a CPU step checks the names first; nothing of it runs without baselines
    assert group["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--baselines-plan-Output'] == 'train'"
    assert tasks["baselines-plan"][2] == "root"
    loop = next(task for kind, task, dag in tasks.values() if kind.startswith("for-loop")
                and tasks["train"][2] == task["componentRef"]["name"])
    assert tasks[next(n for n, (_, t, _) in tasks.items() if t is loop)][2] == group["componentRef"]["name"]
    iterator = loop["parameterIterator"]["items"]["inputParameter"]
    assert loop["inputs"]["parameters"][iterator] == {"componentInputParameter": "pipelinechannel--baselines"}
    train = tasks["train"][1]
    assert train["inputs"]["parameters"]["name"]["componentInputParameter"].endswith("loop-item")
    # the models the leaderboard ranks: every baseline (collected from the loop), phase 1 and PAD
    board = tasks["leaderboard"][1]["inputs"]["artifacts"]
    assert board["baselines"]["taskOutputArtifact"] == {"producerTask": next(
        n for n, (_, t, _) in tasks.items() if t is loop), "outputArtifactKey": "pipelinechannel--train-model"}
    # each baseline is a GPU step, as the placement says
    resources = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == str(placement.steps["train"].gpus)
    assert "nodeSelector" in executors["exec-train"] and "nodeSelector" not in executors["exec-leaderboard"]
