"""Each component's function (`.python_func`) on local artifact paths: outputs, UI outputs, failures, resume."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model

from components.align import align
from components.analyze import analyze
from components.base import shard_specs, training_options, work_folder
from components.embed import embed
from components.embed_merge import embed_merge
from components.finetune import finetune
from components.preprocess import preprocess
from conftest import artifact
from components.pretrain import pretrain
from padcore.config import TrainConfig
from padcore.errors import PadError

# Small and quick: two epochs of a narrow one-layer model. Floats stand in for ints as KFP's JSON sends them.
TINY = {"dim": 16.0, "layers": 1.0, "patience": 1.0, "batch_size": 64.0}
GROUPS = ("warm", "median", "cold")


def write_source(raw, folder: Path) -> str:
    """A `files:` source folder holding the synthetic log as CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    raw.interactions.to_csv(folder / "interactions.csv", index=False)
    raw.items.to_csv(folder / "items.csv", index=False)
    return f"files:{folder}"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Run every component once, in pipeline order, on a small synthetic source; keep all their artifacts."""
    from conftest import _synthetic_raw, private_data_home

    root = tmp_path_factory.mktemp("components")
    out: dict = {"root": root}
    source = write_source(_synthetic_raw(n_users=150, n_items=50, seed=1), root / "source")
    d = root / "preprocess"
    out["dataset"], out["prep_metrics"], out["summary"] = (
        artifact(Dataset, d, "dataset"), artifact(Metrics, d, "metrics"), artifact(Markdown, d, "summary"))
    out["shards"] = preprocess.python_func(source=source, dataset=out["dataset"], metrics=out["prep_metrics"],
                                           summary=out["summary"], buckets=5, embed_shards=2)
    out["parts"] = []
    for i, shard in enumerate(out["shards"]):
        d = root / f"embed-{i}"
        part, metrics = artifact(Dataset, d, "text"), artifact(Metrics, d, "metrics")
        embed.python_func(dataset=out["dataset"], text=part, metrics=metrics, shard=shard, batch_size=32)
        out["parts"].append((part, metrics))
    d = root / "embed-merge"
    out["text"], out["text_metrics"] = artifact(Dataset, d, "text"), artifact(Metrics, d, "metrics")
    with private_data_home(root / "home"):
        embed_merge.python_func(parts=[p for p, _ in out["parts"]], text=out["text"], metrics=out["text_metrics"])
    common = dict(epochs=2, options=TINY)
    for phase, func, inputs in (
        ("pretrain", pretrain, {}),
        ("align", align, {"text": out["text"], "id_model": None}),
        ("finetune", finetune, {"text": out["text"], "id_model": None, "align_model": None}),
    ):
        d = root / phase
        outputs = dict(model=artifact(Model, d, "model"), metrics=artifact(Metrics, d, "metrics"),
                       results=artifact(Markdown, d, "results"), plots=artifact(HTML, d, "plots"))
        inputs = {k: (out["pretrain"]["model"] if k == "id_model" else out["align"]["model"] if k == "align_model"
                      else v) for k, v in inputs.items()}
        func.python_func(dataset=out["dataset"], **inputs, **outputs, **common)
        out[phase] = outputs
    d = root / "analyze"
    out["analyze"] = dict(analysis=artifact(Artifact, d, "analysis"), metrics=artifact(Metrics, d, "metrics"),
                          report=artifact(Markdown, d, "report"), plots=artifact(HTML, d, "plots"))
    analyze.python_func(dataset=out["dataset"], text=out["text"], id_model=out["pretrain"]["model"],
                        align_model=out["align"]["model"], final_model=out["finetune"]["model"],
                        options={"min_pairs": 5.0}, **out["analyze"])
    return out


def test_preprocess_outputs(chain):
    from padcore.dataset import load_dataset

    ds = load_dataset(chain["dataset"].path)
    assert chain["shards"] == ["0/2", "1/2"]
    assert chain["prep_metrics"].metadata == {"n_users": ds.n_users, "n_items": ds.n_items,
                                              "n_interactions": len(ds.flat)}
    assert chain["dataset"].metadata["dataset_id"] == ds.dataset_id
    summary = Path(chain["summary"].path).read_text()
    assert f"users         {ds.n_users}" in summary and summary.startswith("### Dataset")


def test_embed_shards_and_merge(chain):
    from padcore.dataset import load_dataset
    from padcore.text import load_text

    ds = load_dataset(chain["dataset"].path)
    table = load_text(chain["text"].path, ds)
    assert table.shape == (ds.n_items + 1, 384) and not table[0].any() and np.abs(table[1:]).sum(1).min() > 0
    items = [m.metadata["items"] for _, m in chain["parts"]]
    assert sum(items) == ds.n_items and min(items) > 0
    assert chain["text_metrics"].metadata["shards"] == 2 and chain["text"].metadata["dim"] == 384


@pytest.mark.parametrize("phase", ["pretrain", "align", "finetune"])
def test_training_outputs_match_the_model_metrics(chain, phase):
    out = chain[phase]
    saved = json.loads((Path(out["model"].path) / "metrics.json").read_text())
    folds = 2 if phase == "finetune" else 1  # phase 3 fits its fusion twice (cross-fitting), epochs each
    assert saved["config"]["dim"] == 16 and saved["epochs"] <= 2 * folds
    logged = out["metrics"].metadata
    assert logged["hr@10"] == round(saved["test"]["hr@10"], 4) and logged["ndcg@10"] == round(saved["test"]["ndcg@10"], 4)
    for group in GROUPS:
        assert logged[f"{group}-hr@10"] == round(saved["test"]["groups"][group]["hr@10"], 4)
    assert (Path(out["model"].path) / "model.safetensors").is_file()
    # the Table-2-like results: one column per model so far, the improvement of the last over the backbone
    md = Path(out["results"].path).read_text()
    columns = {"pretrain": ["SASRec"], "align": ["SASRec", "alignment expert"],
               "finetune": ["SASRec", "alignment expert", "PAD"]}
    header = md.splitlines()[0]
    assert header == "| Dataset | Metric | " + " | ".join(columns[phase]) + (" | Impr. |" if phase != "pretrain" else " |")
    row = next(line for line in md.splitlines() if "| HR@10 |" in line).strip("| ").split(" | ")
    cell = re.sub(r"\*\*|</?u>", "", row[2 + len(columns[phase]) - 1])  # best bold, second underlined (Table 2)
    assert cell == f"{saved['test']['hr@10']:.4f}", "this step's model is the last column"
    assert all(f"| {g} |" in md for g in GROUPS)
    plots = Path(out["plots"].path).read_text()
    assert plots.startswith("<!doctype html>") and re.search(r'src="data:image/png;base64,[A-Za-z0-9+/]{100,}', plots)


def test_finetune_improvement_column(chain):
    base = json.loads((Path(chain["pretrain"]["model"].path) / "metrics.json").read_text())["test"]["hr@10"]
    pad = json.loads((Path(chain["finetune"]["model"].path) / "metrics.json").read_text())["test"]["hr@10"]
    row = next(line for line in Path(chain["finetune"]["results"].path).read_text().splitlines() if "| HR@10 |" in line)
    expected = f"{100 * (pad - base) / base:+.2f}%" if base else "n/a"
    assert row.rstrip(" |").endswith(expected)


def test_analyze_outputs(chain):
    out = chain["analyze"]
    folder = Path(out["analysis"].path)
    assert (folder / "kendall.json").is_file() and json.loads((folder / "meta.json").read_text())["kind"] == "analysis"
    assert Path(out["report"].path).read_text() == (folder / "report.md").read_text()
    assert "base64," in Path(out["plots"].path).read_text()
    taus = {k: v for k, v in out["metrics"].metadata.items() if k.startswith("tau")}
    assert taus and all(-1.0 <= v <= 1.0 for v in taus.values())


def test_mismatched_inputs_fail_fast(chain, tmp_path):
    """A text artifact of another dataset is refused before any training, and nothing is written."""
    from conftest import _synthetic_raw

    source = write_source(_synthetic_raw(n_users=80, n_items=30, seed=7), tmp_path / "other")
    other = artifact(Dataset, tmp_path, "dataset")
    preprocess.python_func(source=source, dataset=other, metrics=artifact(Metrics, tmp_path, "m0"),
                           summary=artifact(Markdown, tmp_path, "s0"))
    outputs = dict(model=artifact(Model, tmp_path, "model"), metrics=artifact(Metrics, tmp_path, "m"),
                   results=artifact(Markdown, tmp_path, "r"), plots=artifact(HTML, tmp_path, "p"))
    with pytest.raises(PadError, match="item"):
        align.python_func(dataset=other, text=chain["text"], id_model=chain["pretrain"]["model"], **outputs,
                          epochs=1, options=TINY)
    assert not Path(outputs["model"].path).exists() and not Path(outputs["results"].path).exists()


def test_retried_step_resumes_from_the_checkpoint_volume(chain, tmp_path, monkeypatch):
    """Attempt 1 dies mid-training; attempt 2 (a new pod: fresh output folder) finds attempt 1's work on the volume."""
    import padcore.steps

    seen = []

    def flaky_pretrain(dataset, out, **options):
        partial = Path(out).parent / f".{Path(out).name}.partial"
        seen.append((out, partial.exists()))
        partial.mkdir(parents=True, exist_ok=True)
        if len(seen) == 1:
            (partial / "resume.pt").write_text("epoch 1")
            raise RuntimeError("node preempted")
        assert (partial / "resume.pt").read_text() == "epoch 1"
        partial.rename(out)
        for name in ("metrics.json", "config.json"):  # what the UI outputs read: the metrics and the model's title
            (Path(out) / name).write_text((Path(chain["pretrain"]["model"].path) / name).read_text())

    monkeypatch.setattr(padcore.steps, "pretrain", flaky_pretrain)
    monkeypatch.setenv("PAD_RUN", "pad-x7k2p")  # the run's Workflow name, which the pipeline gives each GPU pod
    volume = tmp_path / "volume"
    (volume / "old-run").mkdir(parents=True)  # an abandoned run's folder, older than KEEP_DAYS
    os.utime(volume / "old-run", (0, 0))
    for attempt in (1, 2):
        d = tmp_path / f"attempt-{attempt}"
        outputs = dict(model=artifact(Model, d, "model"), metrics=artifact(Metrics, d, "metrics"),
                       results=artifact(Markdown, d, "results"), plots=artifact(HTML, d, "plots"))
        call = lambda: pretrain.python_func(dataset=chain["dataset"], **outputs, checkpoint_root=str(volume))
        if attempt == 1:
            with pytest.raises(RuntimeError, match="preempted"):
                call()
        else:
            call()
    work = volume / "pad-x7k2p" / "pretrain"
    assert seen == [(str(work), False), (str(work), True)]
    assert (Path(outputs["model"].path) / "metrics.json").is_file(), "the finished work is copied to the output"
    assert not work.exists() and not (volume / "pad-x7k2p").exists(), "a finished step leaves nothing on the volume"
    assert not (volume / "old-run").exists(), "abandoned runs are swept"


def test_without_a_volume_the_step_writes_its_output_directly(tmp_path):
    with work_folder(str(tmp_path / "out"), "", "pretrain") as out:
        assert out == str(tmp_path / "out")


def test_option_helpers():
    assert shard_specs(3) == ["0/3", "1/3", "2/3"]
    with pytest.raises(PadError, match="embed_shards"):
        shard_specs(0)
    assert training_options({"dim": 8.0}, backbone="sasrec", epochs=0, seed=1) == {"dim": 8.0, "backbone": "sasrec", "seed": 1}
    assert TrainConfig.from_options(training_options({"dim": 32.0}, seed=1)).dim == 32, "KFP's float numbers are coerced"
    assert training_options({}, epochs=3)["epochs"] == 3
    with pytest.raises(PadError, match=r"\['backbone'\]"):
        training_options({"backbone": "gru4rec"}, backbone="sasrec")


def test_compare_publish_recommend(chain, tmp_path):
    """The store block: no champion -> publish (promoted) -> recommend; then the same model is not better than itself."""
    import pyarrow.parquet as pq

    from components.compare import compare
    from components.publish import publish
    from components.recommend import recommend
    from padcore.dataset import load_dataset
    from padcore.store import Store

    store = str(tmp_path / "store")
    model = chain["finetune"]["model"]
    inputs = dict(dataset=chain["dataset"], text=chain["text"], model=model)
    first = dict(comparison=artifact(Artifact, tmp_path / "c1", "comparison"),
                 metrics=artifact(Metrics, tmp_path / "c1", "metrics"), summary=artifact(Markdown, tmp_path / "c1", "summary"))
    assert compare.python_func(**inputs, **first, store=store) == "publish"
    assert first["metrics"].metadata["publish"] == 1.0 and "champion-ndcg@10" not in first["metrics"].metadata
    assert "no champion yet" in Path(first["summary"].path).read_text()
    metrics = artifact(Metrics, tmp_path / "p", "metrics")
    version = publish.python_func(**inputs, comparison=first["comparison"], metrics=metrics, store=store)
    assert Store(store).champion() == version and metrics.metadata == {"promoted": 1.0}
    rec = dict(recommendations=artifact(Dataset, tmp_path / "r", "recommendations"),
               metrics=artifact(Metrics, tmp_path / "r", "metrics"))
    recommend.python_func(**inputs, **rec, k=3)
    table = pq.read_table(rec["recommendations"].path).to_pandas()
    ds = load_dataset(chain["dataset"].path)
    assert len(table) == 3 * ds.n_users and rec["metrics"].metadata["users"] == ds.n_users

    second = dict(comparison=artifact(Artifact, tmp_path / "c2", "comparison"),
                  metrics=artifact(Metrics, tmp_path / "c2", "metrics"), summary=artifact(Markdown, tmp_path / "c2", "summary"))
    assert compare.python_func(**inputs, **second, store=store) == "keep"
    logged = second["metrics"].metadata
    assert logged["publish"] == 0.0 and logged["champion-ndcg@10"] == logged["challenger-ndcg@10"]
    md = Path(second["summary"].path).read_text()
    assert f"Champion `{version}`" in md and "keep the champion" in md


def test_the_compare_step_with_a_champion_that_scores_zero_writes_strict_json(chain, tmp_path, monkeypatch):
    """Row 12 of the cluster issue: gain = inf went into Metrics as `Infinity`, which KFP's Go launcher refuses."""
    import padcore.compare
    from cluster_rules import strict_json
    from components.compare import compare

    real = padcore.compare.compare

    def zero_champion(*args, **kwargs):
        result = real(*args, **kwargs)
        result.update(champion={**result["challenger"], "ndcg@10": 0.0}, gain=float("inf"), champion_version="v0",
                      champion_items_known=1, test_targets_new_to_champion=0)
        return result

    monkeypatch.setattr(padcore.compare, "compare", zero_champion)
    outputs = dict(comparison=artifact(Artifact, tmp_path, "comparison"), metrics=artifact(Metrics, tmp_path, "m"),
                   summary=artifact(Markdown, tmp_path, "summary"))
    compare.python_func(dataset=chain["dataset"], text=chain["text"], model=chain["finetune"]["model"],
                        store=str(tmp_path / "store"), **outputs)
    strict_json(json.dumps(outputs["metrics"].metadata))
    assert "gain" not in outputs["metrics"].metadata
