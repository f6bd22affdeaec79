"""Every option family refused the same way wherever it comes from: CLI flags, --set, KFP parameters, the placement file.

Each bad value gives a one-line error naming the option, the value and what is
allowed, exit 2, and nothing at --out. The inputs named in these commands do not
exist: the options are checked before any data is read, so the error is about
the option, never the missing data.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model

from components.align import align
from components.analyze import analyze
from components.check import check
from components.embed import embed
from components.finetune import finetune
from components.preprocess import preprocess
from components.pretrain import pretrain
from conftest import artifact
from pad.cli import main
from padcore.errors import PadError

MISSING = "/nonexistent/pad-input"
TRAIN = ["--dataset", MISSING]
ALIGN = [*TRAIN, "--text", MISSING, "--id-model", MISSING]
FINETUNE = [*ALIGN, "--align-model", MISSING]
ANALYZE = [*ALIGN, "--align-model", MISSING, "--final-model", MISSING]

CLI = [
    # the table of issue 17, then every other family
    ("pretrain", TRAIN, ["--set", "dim=abc"], "training option 'dim' is 'abc'; expected a whole number"),
    ("pretrain", TRAIN, ["--lr", "-1"], "training option 'lr' is -1.0; allowed: 0 < value"),
    ("pretrain", TRAIN, ["--batch-size", "0"], "training option 'batch_size' is 0; allowed: 1 <= value"),
    ("pretrain", TRAIN, ["--dim", "0"], "training option 'dim' is 0; allowed: 1 <= value"),
    ("pretrain", TRAIN, ["--set", "heads=0"], "training option 'heads' is 0; allowed: 1 <= value"),
    ("pretrain", TRAIN, ["--set", "heads=3"], "training option 'dim' (64) must be a multiple of 'heads' (3)"),
    ("pretrain", TRAIN, ["--set", "dropout=2"], "training option 'dropout' is 2.0; allowed: 0 <= value < 1"),
    ("pretrain", TRAIN, ["--set", "max_len=-5"], "training option 'max_len' is -5; allowed: 0 <= value"),
    ("pretrain", TRAIN, ["--epochs", "-3"], "training option 'epochs' is -3; allowed: 1 <= value"),
    ("pretrain", TRAIN, ["--patience", "-1"], "training option 'patience' is -1; allowed: 1 <= value"),
    ("pretrain", TRAIN, ["--set", "learning_rate=0.1"], "unknown training option(s) ['learning_rate']"),
    ("pretrain", TRAIN, ["--device", "tpu"], "training option 'device' is 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
    ("align", ALIGN, ["--set", "dropout=1"], "training option 'dropout' is 1.0; allowed: 0 <= value < 1"),
    ("align", ALIGN, ["--gamma", "-0.5"], "training option 'gamma' is -0.5; allowed: 0 <= value"),
    ("align", ALIGN, ["--kernel", "rbf"], "training option 'kernel' is 'rbf'; allowed: gaussian, laplacian"),
    ("finetune", FINETUNE, ["--experts", "id,text"], "training option 'experts' is ('id', 'text'); allowed: id, align"),
    ("finetune", FINETUNE, ["--fusion", "vote"], "training option 'fusion' is 'vote'; allowed: bucket, calibrated"),
    ("embed", TRAIN, ["--batch-size", "0"], "embed option 'batch_size' is 0; allowed: 1 <= value"),
    ("embed", TRAIN, ["--device", "gpu"], "embed option 'device' is 'gpu'; allowed: auto, cpu, cuda, cuda:N"),
    ("embed", TRAIN, ["--shard", "2/2"], "embed option 'shard' is '2/2'; allowed: I/N with 0 <= I < N"),
    ("embed", TRAIN, ["--encoder", "bert"], "unknown encoder 'bert'"),
    ("embed", TRAIN, ["--max-length", "-1"], "encoder option 'max_length' is -1; allowed: 0 <= value"),
    ("embed", TRAIN, ["--pooling", "max"], "encoder option 'pooling' is 'max'; allowed: mean, weighted_mean"),
    ("embed", TRAIN, ["--placeholder", " "], "embed option 'placeholder' is empty"),
    ("analyze", ANALYZE, ["--top-fraction", "0.9"], "analysis option 'top_fraction' is 0.9; allowed: 0 < value <= 0.5"),
    ("analyze", ANALYZE, ["--min-pairs", "1"], "analysis option 'min_pairs' is 1; allowed: 2 <= value"),
    ("analyze", ANALYZE, ["--min-pairs", "50", "--max-pairs", "10"], "'max_pairs' (10) must be at least 'min_pairs'"),
    ("analyze", ANALYZE, ["--extra-align", f"text={MISSING}"], "'extra_align': label(s) ['text'] are taken"),
    ("preprocess", ["--source", f"files:{MISSING}"], ["--min-len", "2"], "preprocess option 'min_len' is 2; allowed: 3"),
    ("preprocess", ["--source", f"files:{MISSING}"], ["--buckets", "0"], "preprocess option 'buckets' is 0; allowed: 1"),
    ("preprocess", ["--source", f"files:{MISSING}"], ["--max-len", "0"], "preprocess option 'max_len' is 0; allowed: 1"),
]


def refused(capsys, argv: list[str], says: str, out: Path) -> None:
    """`pad argv` exits 2 with the one-line error `says` and writes nothing at `out` nor beside it."""
    before = set(out.parent.iterdir()) if out.parent.exists() else set()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert err.count("\n") == 1, f"one line, not a traceback: {err}"
    assert not out.exists() and (set(out.parent.iterdir()) if out.parent.exists() else set()) == before


@pytest.mark.parametrize("verb, inputs, bad, says", CLI, ids=[f"{c[0]} {' '.join(c[2])}" for c in CLI])
def test_cli_refuses_a_bad_option_before_reading_data(tmp_path, capsys, verb, inputs, bad, says):
    out = tmp_path / "out"
    refused(capsys, [verb, *inputs, "--out", str(out), *bad], says, out)


PIPELINE = [
    (["--param", 'train_options={"dim": 0}'], "training option 'dim' is 0; allowed: 1 <= value"),
    (["--param", 'train_options={"heads": 3}'], "training option 'dim' (64) must be a multiple of 'heads' (3)"),
    (["--param", "train_options=5"], "parameter 'options' is 5; expected a mapping"),
    (["--param", 'train_options={"seed": 3}'], "parameter 'options' sets ['seed']"),
    (["--param", 'analyze_options={"max_pairs": 1}'], "analysis option 'max_pairs' is 1; allowed: 2 <= value"),
    (["--param", 'analyze_options={"bins": "many"}'], "analysis option 'bins' is 'many'; expected a whole number"),
    (["--param", "encoder=bert"], "unknown encoder 'bert'"),
    (["--param", "epochs=-3"], "parameter 'epochs' is -3; allowed: 0 (the training default) or more"),
    (["--param", "gamma=-1"], "training option 'gamma' is -1.0; allowed: 0 <= value"),
    (["--param", "device=gpu"], "training option 'device' is 'gpu'; allowed: auto, cpu, cuda, cuda:N"),
    (["--param", "lr=0.1"], "unknown pipeline parameter(s) ['lr']"),
    (["--param", "buckets=0"], "preprocess option 'buckets' is 0; allowed: 1 <= value"),
    (["--param", "min_len=2.5"], "'min_len' is 2.5"),  # pad run and submit: its type, as the KFP API checks it
    (["--param", 'baselines=["hybrid", "bert4rec"]'], "unknown model 'bert4rec'"),
    (["--param", "embed_shards=0"], "parameter 'embed_shards' is 0; expected a whole number, 1 or more"),
]


@pytest.fixture(scope="module")
def pipeline_defaults() -> dict:
    from pipelines.images import image_refs
    from pipelines.pad_pipeline import build_pipeline
    from pipelines.placement import load_placement

    placement = load_placement()
    pipeline = build_pipeline(placement, image_refs(placement.targets(), None, allow_unbuilt=True), local=True)
    return {name: spec.default for name, spec in pipeline.component_spec.inputs.items()}


@pytest.mark.parametrize("bad, says", PIPELINE, ids=[p[0][1] for p in PIPELINE])
def test_pipeline_parameters_are_refused(pipeline_defaults, bad, says):
    """What `pad run`, `pad pipeline submit` and `schedule` check first (pipelines.client.check_run)."""
    from pipelines.client import check_run, parse_params

    with pytest.raises(PadError) as err:
        check_run(pipeline_defaults, parse_params(bad[1:]), encoders="", store_root="*")
    assert says in str(err.value)


@pytest.mark.parametrize("bad, says", PIPELINE[::3], ids=[p[0][1] for p in PIPELINE[::3]])
def test_pipeline_parameters_are_refused_before_anything_runs(tmp_path, capsys, bad, says):
    out = tmp_path / "runs"
    refused(capsys, ["run", "--source", f"files:{MISSING}", "--out", str(out), *bad], says, out)


def test_pad_run_refuses_a_thread_count_below_one(tmp_path, capsys):
    out = tmp_path / "runs"
    refused(capsys, ["run", "--source", f"files:{MISSING}", "--out", str(out), "--threads", "0"],
            "--threads is 0; allowed: 1 or more", out)


@pytest.mark.parametrize("bad, says", PIPELINE[1::5], ids=[p[0][1] for p in PIPELINE[1::5]])
def test_pipeline_parameters_are_refused_before_anything_is_sent(tmp_path, capsys, bad, says):
    """The same check as `pad run`'s (pipelines.client.check_run); no endpoint at this address is ever reached."""
    refused(capsys, ["pipeline", "submit", "--host", "http://127.0.0.1:9", "--allow-unbuilt-images", *bad], says,
            tmp_path / "nothing")


PLACEMENT = [
    ("steps: {pretrain: {gpus: -1}}", "steps.pretrain option 'gpus' is -1; allowed: 0 <= value"),
    ("steps: {pretrain: {memory: 16GB}}", "steps.pretrain option 'memory' is '16GB'; allowed: bytes"),
    ("steps: {pretrain: {retries: many}}", "steps.pretrain option 'retries' is 'many'; expected a whole number"),
    ("volumes: {checkpoint_path: mnt}", "volumes option 'checkpoint_path' is 'mnt'; allowed: an absolute path"),
]


@pytest.mark.parametrize("text, says", PLACEMENT, ids=[p[0] for p in PLACEMENT])
def test_a_bad_placement_file_is_refused_before_compiling(tmp_path, capsys, text, says):
    config = tmp_path / "placement.yaml"
    config.write_text(f"cluster: {{shape: kind, pools: [{{cpus: 8, memory: 32Gi}}]}}\nencoders: [minilm]\n{text}\n")
    out = tmp_path / "package" / "pad.yaml"
    refused(capsys, ["pipeline", "compile", "--config", str(config), "--out", str(out)], f"{config}: {says}", out)


# ---------------------------------------------------------------- the component functions (what KFP runs)


def missing(cls, name: str):
    return artifact(cls, Path(MISSING), name)


def training_outputs(folder: Path) -> dict:
    return dict(model=artifact(Model, folder, "model"), metrics=artifact(Metrics, folder, "metrics"),
                results=artifact(Markdown, folder, "results"), plots=artifact(HTML, folder, "plots"))


def component_calls(folder: Path) -> dict:
    """Each component's function called with everything but the options; inputs that do not exist."""
    ds, text, m1, m2, m3 = (missing(Dataset, "dataset"), missing(Dataset, "text"), missing(Model, "m1"),
                            missing(Model, "m2"), missing(Model, "m3"))
    out = training_outputs(folder)
    return {
        "pretrain": lambda **kw: pretrain.python_func(dataset=ds, **out, **kw),
        "align": lambda **kw: align.python_func(dataset=ds, text=text, id_model=m1, **out, **kw),
        "finetune": lambda **kw: finetune.python_func(dataset=ds, text=text, id_model=m1, align_model=m2, **out,
                                                      **kw),
        "embed": lambda **kw: embed.python_func(dataset=ds, text=artifact(Dataset, folder, "text"),
                                                metrics=artifact(Metrics, folder, "metrics"), **kw),
        "analyze": lambda **kw: analyze.python_func(
            dataset=ds, text=text, id_model=m1, align_model=m2, final_model=m3,
            analysis=artifact(Artifact, folder, "analysis"), metrics=artifact(Metrics, folder, "metrics"),
            report=artifact(Markdown, folder, "report"), plots=artifact(HTML, folder, "plots"), **kw),
        "preprocess": lambda **kw: preprocess.python_func(
            source=f"files:{MISSING}", dataset=artifact(Dataset, folder, "dataset"),
            metrics=artifact(Metrics, folder, "metrics"), summary=artifact(Markdown, folder, "summary"), **kw),
    }


COMPONENTS = [  # options as KFP sends them: numbers in a dict parameter arrive as floats
    ("pretrain", {"options": {"dim": "abc"}}, "training option 'dim' is 'abc'; expected a whole number"),
    ("pretrain", {"options": {"lr": -1.0}}, "training option 'lr' is -1.0; allowed: 0 < value"),
    ("pretrain", {"options": {"batch_size": 0.0}}, "training option 'batch_size' is 0; allowed: 1 <= value"),
    ("pretrain", {"options": {"heads": 0.0}}, "training option 'heads' is 0; allowed: 1 <= value"),
    ("pretrain", {"options": {"dropout": 2.0}}, "training option 'dropout' is 2.0; allowed: 0 <= value < 1"),
    ("pretrain", {"options": {"max_len": -5.0}}, "training option 'max_len' is -5; allowed: 0 <= value"),
    ("pretrain", {"epochs": -3}, "parameter 'epochs' is -3; allowed: 0 (the training default) or more"),
    ("pretrain", {"options": {"patience": -1.0}}, "training option 'patience' is -1; allowed: 1 <= value"),
    ("pretrain", {"options": {"dim": 2.5}}, "training option 'dim' is 2.5; expected a whole number"),
    ("align", {"gamma": -1.0}, "training option 'gamma' is -1.0; allowed: 0 <= value"),
    ("align", {"options": {"align_mode": "loose"}}, "training option 'align_mode' is 'loose'; allowed: anchored"),
    ("finetune", {"options": {"experts": []}}, "training option 'experts' is (); allowed: id, align, llm"),
    ("finetune", {"loss": "bpr"}, "training option 'loss' is 'bpr'; allowed: bce, ce, sampled"),
    ("embed", {"batch_size": 0}, "embed option 'batch_size' is 0; allowed: 1 <= value"),
    ("embed", {"dtype": "int8"}, "embed option 'dtype' is 'int8'; allowed: float16, float32"),
    ("embed", {"shard": "1/1/1"}, "embed option 'shard' is '1/1/1'"),
    ("embed", {"encoder": "hf:"}, "unknown encoder 'hf:'"),
    ("analyze", {"options": {"top_fraction": 2.0}}, "analysis option 'top_fraction' is 2.0; allowed: 0 < value"),
    ("analyze", {"options": {"seed": -1.0}}, "analysis option 'seed' is -1; allowed: 0 <= value"),
    ("analyze", {"options": {"pairs": 5.0}}, "unknown analysis option(s) ['pairs']"),
    ("preprocess", {"min_len": 2}, "preprocess option 'min_len' is 2; allowed: 3 <= value"),
    ("preprocess", {"embed_shards": 0}, "parameter 'embed_shards' is 0; expected a whole number, 1 or more"),
]


@pytest.mark.parametrize("step, kwargs, says", COMPONENTS, ids=[f"{c[0]} {c[1]}" for c in COMPONENTS])
def test_component_functions_refuse_a_bad_option_before_reading_data(tmp_path, step, kwargs, says):
    with pytest.raises(PadError) as err:
        component_calls(tmp_path / "outputs")[step](**kwargs)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "outputs").exists(), "nothing written"


GOOD = dict(encoder="minilm", backbone="sasrec", loss="bce", epochs=0, gamma=0.2, seed=0, device="auto",
            train_options={}, analyze_options={}, baselines=["hybrid"], as_of="", store="", min_gain=0.0, top_k=10)


@pytest.mark.parametrize("bad, says", [
    ({"train_options": {"dim": 0.0}}, "training option 'dim' is 0; allowed: 1 <= value"),
    ({"train_options": {"heads": 3.0}}, "training option 'dim' (64) must be a multiple of 'heads' (3)"),
    ({"analyze_options": {"min_pairs": 1.0}}, "analysis option 'min_pairs' is 1; allowed: 2 <= value"),
    ({"analyze_options": []}, "parameter 'analyze_options' is []; expected a mapping"),
    ({"encoder": "bert"}, "unknown encoder 'bert'"),
    ({"epochs": -1}, "parameter 'epochs' is -1; allowed: 0 (the training default) or more"),
    ({"backbone": "bert4rec"}, "training option 'backbone' is 'bert4rec'; allowed: sasrec, gru4rec, caser"),
    ({"device": "cuda:x"}, "training option 'device' is 'cuda:x'; allowed: auto, cpu, cuda, cuda:N"),
    ({"baselines": ["smem", "gpt"]}, "unknown model 'gpt'"),
    ({"baselines": "hybrid"}, "parameter 'baselines' is 'hybrid'; expected a list of model names"),
    ({"top_k": 0}, "parameter 'top_k' is 0; expected a whole number, 1 or more"),
    ({"min_gain": -0.5}, "parameter 'min_gain' is -0.5; expected a number, 0 or more"),
    ({"as_of": "yesterday"}, "as_of 'yesterday': expected an ISO 8601 date"),
    ({"store": "gs://"}, "gs://: expected gs://bucket/prefix"),
    ({"store": "/mnt/pad/store", "store_root": ""}, "compare and publish run in pods of their own"),
    ({"store": "/data/store", "store_root": "/mnt/pad-store"}, "must lie under it (e.g. /mnt/pad-store/models)"),
    ({"encoder": "llm2vec", "encoders": "minilm"}, "sized for minilm only; compile it with a placement"),
], ids=lambda v: str(v)[:40])
def test_the_check_step_refuses_what_a_later_step_would(bad, says):
    with pytest.raises(PadError) as err:
        check.python_func(**{**GOOD, **bad})
    assert says in str(err.value)


def test_the_check_step_passes_good_parameters():
    check.python_func(**{**GOOD, "train_options": {"dim": 32.0, "heads": 2.0}, "analyze_options": {"max_pairs": 500.0}})
    check.python_func(**{**GOOD, "store": "/mnt/pad-store/models", "store_root": "/mnt/pad-store", "top_k": 5.0,
                         "encoder": "hf:/models/e5", "encoders": "minilm,hf", "as_of": "20261207"})
    check.python_func(**{**GOOD, "store": "gs://bucket/models", "store_root": ""})
