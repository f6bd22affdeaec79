"""The whole PAD pipeline through kfp.local on a small synthetic data set: every artifact and metric it produced."""

import os
import json
import re
from pathlib import Path

import pytest

from pad.cli import main
from padcore.errors import PadError
from pipelines.local import report, run_local

pytestmark = pytest.mark.slow

PARAMS = {
    "epochs": 2,
    "buckets": 5,
    "embed_shards": 2,
    "train_options": {"dim": 16, "layers": 1, "patience": 1, "batch_size": 64},
    "analyze_options": {"min_pairs": 5},
    "baselines": ["hybrid", "morec"],
}
BASELINES = ("for-loop-3-iteration-0/train", "for-loop-3-iteration-1/train")
TASKS = {"preprocess", "for-loop-1-iteration-0/embed", "for-loop-1-iteration-1/embed", "embed-merge", "pretrain",
         "align", "finetune", "analyze", "compare", "publish", "recommend", "baselines-plan", *BASELINES,
         "leaderboard"}
OUTPUTS = {  # task -> output artifacts written to disk (Metrics live in the executor output)
    "preprocess": {"dataset", "summary"},
    "for-loop-1-iteration-0/embed": {"text"},
    "for-loop-1-iteration-1/embed": {"text"},
    "embed-merge": {"text"},
    "pretrain": {"model", "results", "plots"},
    "align": {"model", "results", "plots"},
    "finetune": {"model", "results", "plots"},
    "analyze": {"analysis", "report", "plots"},
    "compare": {"comparison", "summary"},
    "recommend": {"recommendations"},
    **{task: {"model", "results", "plots"} for task in BASELINES},
    "leaderboard": {"results", "plots"},
}


def executor_metrics(run_dir: Path, task: str) -> dict:
    out = json.loads((run_dir / task / "executor_output.json").read_text())
    return out["artifacts"]["metrics"]["artifacts"][0]["metadata"]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    from conftest import _synthetic_raw, private_data_home

    root = tmp_path_factory.mktemp("local")
    raw = _synthetic_raw(n_users=150, n_items=50, seed=2)
    (root / "source").mkdir()
    raw.interactions.to_csv(root / "source" / "interactions.csv", index=False)
    raw.items.to_csv(root / "source" / "items.csv", index=False)
    with private_data_home(root / "home"):
        run = run_local({"source": f"files:{root / 'source'}", "store": str(root / "store"), **PARAMS},
                        out=root / "runs")
    assert (root / "home" / "text-cache").is_dir()
    return run


def test_every_step_ran_and_succeeded(local_run):
    steps = [name for name, _, _ in local_run.steps]
    assert sorted(steps) == sorted(["check", "fingerprint", "preprocess", "embed", "embed", "embed-merge", "pretrain", "align",
                                    "finetune", "analyze", "compare", "publish", "recommend", "baselines-plan",
                                    "train", "train", "leaderboard"])
    assert all(status == "SUCCESS" for _, _, status in local_run.steps)
    assert steps.index("embed-merge") > max(i for i, s in enumerate(steps) if s == "embed")
    assert steps.index("finetune") > steps.index("align") > steps.index("pretrain")
    assert steps.index("recommend") > steps.index("publish") > steps.index("compare") > steps.index("finetune")
    assert steps.index("leaderboard") > max(i for i, s in enumerate(steps) if s in ("train", "finetune"))
    assert steps.index("check") < steps.index("fingerprint") < steps.index("preprocess")
    assert steps.index("check") < min(steps.index("embed"), steps.index("pretrain"))


def test_every_artifact_is_where_the_run_says(local_run):
    found: dict[str, set] = {}
    for name, path in local_run.artifacts():
        task, output = name.rsplit("/", 1)
        assert path.exists(), name
        found.setdefault(task, set()).add(output)
    # publish writes into the store and the plan is a parameter: no files of their own
    assert set(found) == TASKS - {"publish", "baselines-plan"}
    for task, outputs in OUTPUTS.items():
        assert found[task] == outputs, task
    assert set(local_run.outputs) == {"dataset", "text", "id_model", "align_model", "model", "analysis"}
    assert local_run.outputs["text"] == local_run.run_dir / "embed-merge" / "text"


def test_artifacts_are_consistent(local_run):
    from padcore.dataset import load_dataset
    from padcore.text import load_text

    out = local_run.outputs
    ds = load_dataset(out["dataset"])
    assert ds.meta["protocol"]["buckets"] == 5
    assert load_text(out["text"], ds).shape[0] == ds.n_items + 1
    for key, phase in (("id_model", "pretrain"), ("align_model", "align"), ("model", "finetune")):
        meta = json.loads((out[key] / "meta.json").read_text())
        assert meta["kind"] == "model" and meta["phase"] == phase and meta["dataset_id"] == ds.dataset_id
        config = json.loads((out[key] / "metrics.json").read_text())["config"]
        assert config["dim"] == 16 and config["backbone"] == "sasrec" and config["loss"] == "bce"
    assert json.loads((out["model"] / "meta.json").read_text())["parents"] == {
        "pretrain": str(out["id_model"]), "align": str(out["align_model"])}
    analysis = json.loads((out["analysis"] / "meta.json").read_text())
    assert analysis["kind"] == "analysis" and analysis["dataset_id"] == ds.dataset_id


def test_metrics_in_the_ui_match_the_models(local_run):
    run_dir = local_run.run_dir
    for task, key in (("pretrain", "id_model"), ("align", "align_model"), ("finetune", "model")):
        saved = json.loads((local_run.outputs[key] / "metrics.json").read_text())["test"]
        logged = executor_metrics(run_dir, task)
        for name in ("hr@10", "ndcg@10"):
            assert logged[name] == round(saved[name], 4)
            for group in ("warm", "median", "cold"):
                assert logged[f"{group}-{name}"] == round(saved["groups"][group][name], 4)
                assert 0.0 <= logged[f"{group}-{name}"] <= 100.0
    ds_meta = json.loads((local_run.outputs["dataset"] / "meta.json").read_text())
    assert executor_metrics(run_dir, "preprocess")["n_users"] == ds_meta["n_users"]
    assert executor_metrics(run_dir, "embed-merge")["shards"] == 2
    assert any(k.startswith("tau") for k in executor_metrics(run_dir, "analyze"))
    board = executor_metrics(run_dir, "leaderboard")  # every model's figures, by its name in the table
    for task, name in zip(BASELINES, ("Hybrid", "MoRec")):
        saved = json.loads((run_dir / task / "model" / "metrics.json").read_text())["test"]
        assert board[f"{name}: HR@10"] == round(saved["hr@10"], 4) == executor_metrics(run_dir, task)["hr@10"]
    assert {"SASRec: nDCG@10", "PAD: nDCG@10"} <= set(board)


def test_report_has_the_table_times_and_paths(local_run):
    text = report(local_run)
    assert "| Dataset | Metric | SASRec | Hybrid | MoRec | alignment expert | PAD | Impr. |" in text
    pad_hr = json.loads((local_run.outputs["model"] / "metrics.json").read_text())["test"]["hr@10"]
    assert f"{pad_hr:.4f}" in text
    assert "Kendall's tau-b" in text and "text vs align:align.text" in text
    for step in ("preprocess", "embed-merge", "pretrain", "align", "finetune", "analyze"):
        assert re.search(rf"^  {step}\s+\d+\.\d s  success$", text, re.M), step
    for name, path in local_run.artifacts():
        assert f"{name}" in text and str(path) in text
    version = json.loads((local_run.run_dir / "publish" / "executor_output.json").read_text())["parameterValues"]["Output"]
    assert "(no champion yet)" in text and f"published version {version}" in text


def test_a_run_with_a_store_publishes_and_recommends(local_run):
    import pyarrow.parquet as pq

    from padcore.dataset import load_dataset
    from padcore.store import Store

    store = Store(local_run.run_dir.parent.parent / "store")
    (manifest,) = store.versions()
    assert store.champion() == manifest["version"]
    assert manifest["dataset"]["id"] == load_dataset(local_run.outputs["dataset"]).dataset_id
    assert manifest["parents"]["model"] == str(local_run.outputs["model"])
    rec = pq.read_table(local_run.run_dir / "recommend" / "recommendations").to_pandas()
    assert len(rec) == 10 * load_dataset(local_run.outputs["dataset"]).n_users


def test_a_failing_step_is_named(tmp_path, capsys):
    rc = main(["run", "--source", f"files:{tmp_path / 'missing'}", "--out", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "the local pipeline failed at step fingerprint" in captured.err
    assert "✘ fingerprint failure" in captured.out and f"{tmp_path / 'missing'}: folder not found" in captured.out


@pytest.mark.parametrize("indent", ["    ", "        "])
def test_quiet_stream_drops_only_the_executor_bookkeeping(indent):
    import io

    from pipelines.local import QuietStream

    sink = io.StringIO()
    stream = QuietStream(sink)
    log = [
        "[preprocess] reading", "[KFP Executor 2026 INFO]: Looking for component `x`",
        "[KFP Executor 2026 INFO]: Got executor_input:", "{", '    "inputs": {', '        "a": 1', "    }", "}",
        "[train] epoch 1", "", "", "Traceback: boom",
    ]
    stream.write("".join(f"{indent}{line}\n" for line in log[:5]))
    stream.write("".join(f"{indent}{line}\n" for line in log[5:]))
    assert sink.getvalue() == "".join(f"{indent}{line}\n" for line in ["[preprocess] reading", "[train] epoch 1", "",
                                                                       "Traceback: boom"])


@pytest.mark.parametrize("cores, load, expected", [(2, 0.1, 2), (2, 1.2, 1), (2, 3.5, 1), (8, 2.4, 6)])
def test_threads_default_to_the_free_cores(monkeypatch, cores, load, expected):
    import os

    from pipelines.local import free_cores

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert free_cores() == expected


class FakeContainer:
    """A container that has printed `log` and exited with `code` by the time its log ends."""

    def __init__(self, log: list[bytes], code: int):
        self.log, self.code, self.status, self.removed, self.short_id = log, code, "running", False, "c0ffee"

    def logs(self, stream, follow):
        yield from self.log

    def reload(self):
        self.status = "exited"
        self.attrs = {"State": {"Status": "exited", "ExitCode": self.code}}

    def remove(self, force):
        self.removed = True


class FakeEngine:
    """The docker SDK calls of the docker runner: image lookups and detached runs."""

    def __init__(self, images=(), code=0):
        self.images, self.known, self.code, self.runs = self, set(images), code, []
        self.containers = self

    def get(self, ref):
        import docker

        if ref not in self.known:
            raise docker.errors.ImageNotFound(ref)

    def run(self, image, command, detach, volumes, **args):
        self.runs.append((image, command, args))
        self.container = FakeContainer([b"step says hi\n"], self.code)
        return self.container


@pytest.mark.parametrize("code", [0, 3])
def test_a_step_container_reports_its_exit_code_and_goes(code, capsys):
    from pipelines.containers import run_container

    engine = FakeEngine(code=code)
    assert run_container(engine, "img:1", ["sh", "-c", "x"], volumes={"/r": {"bind": "/r"}}, user="0:0") == code
    assert engine.container.removed and engine.runs == [("img:1", ["sh", "-c", "x"], {"user": "0:0"})]
    assert capsys.readouterr().out == "container c0ffee of image img:1\nstep says hi\n"


def test_the_docker_runner_mounts_the_data_and_names_missing_images(tmp_path, monkeypatch):
    import pipelines.containers
    from pipelines.containers import docker_runner, local_folders

    images = {"cpu": "pad.local/pad-cpu:1", "gpu": "pad.local/pad-gpu:1"}
    monkeypatch.setenv("PAD_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pipelines.containers, "engine", lambda: FakeEngine(images=[images["cpu"]]))
    with pytest.raises(PadError, match=r"has no image pad.local/pad-gpu:1 .*docker/build.py --registry"):
        docker_runner(images, "p.yaml", [], {})
    monkeypatch.setattr(pipelines.containers, "engine", lambda: FakeEngine(images=images.values()))
    (tmp_path / "shop").mkdir()
    monkeypatch.chdir(tmp_path)
    params, folders = local_folders({"source": "files:shop", "store": "runs/store", "seed": 1})
    shop, store = tmp_path / "shop", tmp_path / "runs" / "store"
    assert params == {"source": f"files:{shop}", "store": str(store), "seed": 1} and store.is_dir()
    assert folders == [(shop, False), (store, True)]
    assert local_folders({"source": "files:gs://b/shop", "store": "gs://b/store"})[1] == []
    with pytest.raises(PadError, match="folder .*missing not found"):
        local_folders({"source": "files:missing"})
    runner = docker_runner(images, "p.yaml", folders, {"OMP_NUM_THREADS": "1"})
    mounts = {m["Source"]: (m["Target"], m["ReadOnly"]) for m in runner.container_run_args["mounts"]}
    home = str(tmp_path / "home")
    assert mounts == {home: (home, False), str(shop): (str(shop), True), str(store): (str(store), False)}
    assert runner.container_run_args["environment"] == {"OMP_NUM_THREADS": "1", "PAD_DATA_HOME": home}
    assert runner.container_run_args["user"] == f"{os.getuid()}:{os.getgid()}"


def test_the_docker_runner_without_an_engine_says_how_to_start_one(tmp_path, monkeypatch, capsys):
    from pipelines.images import Built, write_record

    monkeypatch.setenv("PAD_IMAGES", str(tmp_path / "none.json"))
    assert main(["run", "--runner", "docker", "--out", str(tmp_path)]) == 2
    assert "no docker/build.py run recorded" in capsys.readouterr().err  # nothing built yet: build first
    write_record(tmp_path / "built.json", {t: Built(f"pad.local/pad-{t}:1", "sha256:x", "local", "now")
                                           for t in ("cpu", "gpu", "llm2vec")})
    monkeypatch.setenv("PAD_IMAGES", str(tmp_path / "built.json"))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main(["run", "--runner", "docker", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no container engine answers at unix:///nonexistent/docker.sock" in err and "DOCKER_HOST=" in err


def test_a_bad_parameter_fails_the_check_step_before_any_gpu_step(tmp_path):
    """Past the CLI's own check (a package run from the KFP UI): the pipeline's `check` step refuses the value."""
    from kfp import local

    from conftest import _synthetic_raw
    from pipelines.images import image_refs
    from pipelines.pad_pipeline import build_pipeline
    from pipelines.placement import load_placement

    placement = load_placement()
    pipeline = build_pipeline(placement, image_refs(placement.targets(), None, allow_unbuilt=True), local=True)
    raw = _synthetic_raw(n_users=60, n_items=20, seed=2)
    (tmp_path / "source").mkdir()
    raw.interactions.to_csv(tmp_path / "source" / "interactions.csv", index=False)
    raw.items.to_csv(tmp_path / "source" / "items.csv", index=False)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"))
    with pytest.raises(RuntimeError, match=r"Inner task failed: \S*'check'"):
        pipeline(source=f"files:{tmp_path / 'source'}", train_options={"dim": 0})
    # kfp.local honours retry policies (30 s, then 60 s): the local package has none, so check ran once
    tasks = pipeline.pipeline_spec.root.dag.tasks
    assert not any(task.HasField("retry_policy") for task in tasks.values())
    ran = {p.name for p in (tmp_path / "runs").glob("pad-*/*")}  # the folders of the tasks that wrote outputs
    assert not ran & {"pretrain", "align", "finetune", "embed-merge", "analyze"}
    assert not list((tmp_path / "runs").glob("pad-*/for-loop*")), "no embedding shard started"
