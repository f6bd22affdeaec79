"""Every registered model trains, saves and reloads; each baseline's distinctive part does what its paper says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clustered import clustered_world
from padcore import training
from padcore.checkpoint import load_model, load_weights
from padcore.dataset import load_dataset
from padcore.errors import PadError
from padcore.registry import BACKBONES, MODELS, REC_LOSSES
from padcore.text import EMBEDDINGS
from test_training import write_text

TINY = dict(dim=8, epochs=2, patience=2, batch_size=64, threads=1, text_hidden=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    dataset, table = clustered_world(root / "dataset", n_users=240)
    write_text(root / "text", table, dataset)
    training.pretrain(root / "dataset", root / "m1", **TINY)
    return root


@pytest.fixture(scope="module")
def trained(world):
    """Every registered model, trained with tiny settings (its first stage from scratch)."""
    out = {}
    for name in MODELS:
        folder = world / f"model-{name}"
        training.train(name, world / "dataset", world / "text", folder, **TINY)
        out[name] = folder
    return out


def table(world) -> np.ndarray:
    return np.load(world / "text" / EMBEDDINGS)


@pytest.mark.parametrize("name", MODELS.names())
def test_each_model_trains_saves_and_reloads(world, trained, name):
    folder = trained[name]
    spec = MODELS[name]
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["model"], meta["phase"]) == (name, spec.stages[-1].name)
    for stage in spec.stages[:-1]:  # earlier stages are kept, whole, inside the artifact
        assert json.loads((folder / "stages" / stage.name / "meta.json").read_text())["phase"] == stage.name
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0 <= metrics["test"]["hr@10"] <= 100 and metrics["config"]["dim"] == 8
    model = load_model(folder, table(world) if spec.stages[-1].text else None)
    seq = torch.tensor([[0, 0, 3, 5, 7]])
    with torch.no_grad():
        scores = model.scores(seq)
    assert scores.shape == (1, load_dataset(world / "dataset").n_items + 1) and torch.isfinite(scores).all()


def test_weights_of_another_architecture_are_refused_with_a_hint(world, trained, tmp_path):
    """An artifact whose weights no longer match its model's code (e.g. Hybrid before its projection became
    linear) is an error that says to retrain, never a model that loads and scores differently."""
    import shutil

    from safetensors.torch import load_file, save_file

    from padcore.checkpoint import WEIGHTS

    old = tmp_path / "old-hybrid"
    shutil.copytree(trained["hybrid"], old)
    weights = load_file(old / WEIGHTS)
    renamed = {k.replace("tower.project.", "tower.project.1."): v for k, v in weights.items()}
    save_file(renamed, old / WEIGHTS)
    with pytest.raises(PadError, match="does not hold the weights .* must be trained again"):
        load_model(old, table(world))


def test_registries_refuse_unknown_names(world, tmp_path):
    for registry in (MODELS, BACKBONES, REC_LOSSES):
        with pytest.raises(PadError, match=f"unknown {registry.kind} 'nope'; known: "):
            registry["nope"]
    with pytest.raises(PadError, match="unknown model 'bert4rec'"):
        training.train("bert4rec", world / "dataset", world / "text", tmp_path / "x")
    with pytest.raises(PadError, match="needs a text artifact"):
        training.train("morec", world / "dataset", None, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_pad_train_lists_every_registered_model(capsys):
    from pad.cli import main

    assert main(["train", "--list"]) in (0, None)
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert sorted(listed) == sorted(MODELS) and "pad" in listed and "hybrid" in listed


def test_a_given_stage_is_not_trained_again(world, tmp_path, capsys):
    training.train("hybrid", world / "dataset", world / "text", tmp_path / "h", parents={"pretrain": world / "m1"},
                   **TINY)
    assert "[hybrid:pretrain]" not in capsys.readouterr().out
    assert not (tmp_path / "h" / "stages").exists()
    assert json.loads((tmp_path / "h" / "meta.json").read_text())["parents"] == {"pretrain": str(world / "m1")}


def test_morec_has_no_id_table(trained):
    assert not any("emb" in k for k in load_weights(trained["morec"]))


def test_hybrid_concatenates_a_frozen_phase1_id_table_with_text(world, trained):
    model = load_model(trained["hybrid"], table(world))
    tower = model.experts["hybrid"].tower
    assert tower.project.in_features == 8 + 8  # d_id + d_text
    items = torch.arange(1, 6)
    with torch.no_grad():  # the item vector (also the output embedding) is linear in [id ; text]: no GELU after it
        both = torch.cat([tower.ids(items), tower.text(items)], -1).numpy()
        want = both @ tower.project.weight.numpy().T + tower.project.bias.numpy()
        np.testing.assert_allclose(tower(items).numpy(), want, rtol=1e-5, atol=1e-6)
    phase1 = load_weights(trained["hybrid"] / "stages" / "pretrain")["experts.id.tower.emb.weight"]
    assert torch.equal(tower.ids.emb.weight, phase1)  # frozen (freeze_id) through training


def test_ctrl_stage1_is_symmetric_infonce_and_stage2_keeps_only_ids(world, trained):
    from padcore.models.ctrl import symmetric_infonce

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))

    def one_way(a, b, t):  # reference: -mean_i log softmax_j(cos(a_i, b_j) / t)[i]
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        logits = a @ b.T / t
        logits -= logits.max(1, keepdims=True)
        return -np.mean(np.diag(logits) - np.log(np.exp(logits).sum(1)))

    want = (one_way(x, y, 0.1) + one_way(y, x, 0.1)) / 2
    got = symmetric_infonce(torch.tensor(x), torch.tensor(y), 0.1)
    assert float(got) == pytest.approx(want, rel=1e-9)
    stage1 = load_weights(trained["ctrl"] / "stages" / "contrast")
    assert any(k.startswith("aux.text_head") for k in stage1)
    final = load_model(trained["ctrl"])  # no text: the fine-tuned CTRL is an ID model
    assert list(final.experts) == ["id"] and not any(k.startswith("aux") for k in final.state_dict())


def test_make_fuses_a_morec_pretrained_llm_expert_with_an_id_expert(world, trained):
    model = load_model(trained["make"], table(world))
    assert list(model.experts) == ["id", "llm"]
    assert json.loads((trained["make"] / "stages" / "morec" / "meta.json").read_text())["model"] == "make"


def test_disco_club_bound_and_prefix_means_match_references():
    from padcore.models.disco import Club, prefix_means

    torch.manual_seed(0)
    club = Club(4)
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    mu, logvar = club.mu(x).detach().numpy(), club.logvar(x).detach().numpy()
    log_q = np.array([[-0.5 * np.sum((mu[i] - y[j].numpy()) ** 2 / np.exp(logvar[i]) + logvar[i]) for j in range(5)]
                      for i in range(5)])
    assert float(club.bound(x, y)) == pytest.approx(np.mean(np.diag(log_q)) - np.mean(log_q), rel=1e-5)
    bound = club.bound(x.requires_grad_(), y)
    bound.backward()
    assert x.grad is not None and all(p.grad is None for p in club.parameters())  # the estimator is held fixed
    chunk = torch.randn(2, 4, 3)
    mask = torch.tensor([[False, True, True, True], [False, False, False, True]])
    got = prefix_means(chunk, mask)
    assert torch.allclose(got[0, 2], chunk[0, 1:3].mean(0)) and torch.allclose(got[1, 3], chunk[1, 3])
    assert torch.equal(got[1, 0], torch.zeros(3))


def test_smem_aligns_without_mmd(world, trained):
    from padcore.models.pad import ALIGN

    assert MODELS["smem"].stage("align").extra is None and ALIGN.extra is not None
    assert json.loads((trained["smem"] / "stages" / "align" / "meta.json").read_text())["model"] == "smem"


def test_llmesr_views_pca_neighbours_and_causality(world, trained):
    from padcore.batches import split_tensors
    from padcore.experts import TextTable
    from padcore.models.llmesr import similar_users, text_pca

    text = torch.tensor(table(world))
    pca = text_pca(text, 4).numpy()
    x = text[1:].numpy() - text[1:].numpy().mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    ref = x @ vt[:4].T
    cos = np.abs(np.sum(pca[1:] * ref, 0)) / (np.linalg.norm(pca[1:], axis=0) * np.linalg.norm(ref, axis=0))
    assert np.allclose(cos, 1, atol=1e-4) and not pca[0].any()  # the same axes, up to sign and scale

    data = split_tensors(load_dataset(world / "dataset"), 10)
    got = similar_users(data, TextTable(text), 3, chunk=50)
    rows = data.train.numpy()
    vec = np.stack([text.numpy()[r[r > 0]].mean(0) for r in rows])
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    sim = vec @ vec.T
    np.fill_diagonal(sim, -np.inf)
    best = np.sort(sim, 1)[:, -3:]
    assert np.allclose(np.sort(np.take_along_axis(sim, got.numpy(), 1), 1), best, atol=1e-5)

    model = load_model(trained["llmesr"], table(world))
    assert model.experts["id"].backbone is model.experts["sem"].backbone  # one shared encoder
    seq = torch.tensor([[0, 2, 4, 6, 8]])
    later = torch.tensor([[0, 2, 4, 9, 11]])
    with torch.no_grad():
        a, b = model.states(seq), model.states(later)
    assert all(torch.allclose(x[:, :3], y[:, :3], atol=1e-6) for x, y in zip(a, b))  # no position sees the future


def test_llmesr_distillation_reads_every_users_state_from_the_epochs_start(world, trained):
    """The loss is alpha * MSE(own last state, mean of the neighbours' last states), the neighbours' states
    taken under the model as it was when the epoch started (eval mode), whatever the weights do since."""
    from types import SimpleNamespace

    from padcore.batches import split_tensors
    from padcore.experts import TextTable
    from padcore.models.llmesr import Distillation, LlmEsrOptions

    model = load_model(trained["llmesr"], table(world))
    data = split_tensors(load_dataset(world / "dataset"), 10)
    ctx = SimpleNamespace(options=LlmEsrOptions(alpha=0.5, neighbours=3), data=data,
                          text=TextTable(torch.tensor(table(world))))
    loss = Distillation(ctx, chunk=37)
    model.train()
    loss.start_epoch(model, torch.device("cpu"))
    assert model.training  # the mode it found is given back

    def last(rows: torch.Tensor) -> np.ndarray:  # one user at a time, untrimmed, no dropout
        model.eval()
        with torch.no_grad():
            out = np.stack([torch.cat([s[0, -1] for s in model.states(r[None, :-1])]).numpy() for r in rows])
        model.train()
        return out

    start = last(data.train)
    rows = torch.tensor([0, 5, 17])
    with torch.no_grad():  # the weights move after the epoch started: the teacher must not
        for p in model.parameters():
            p.add_(0.01)
    model.eval()  # no dropout in the student either, to compare with NumPy
    got = float(loss(model, rows, data.train[rows], torch.Generator()).detach())
    own = last(data.train[rows])
    teacher = start[loss.neighbours[rows].numpy()].mean(1)
    assert got == pytest.approx(0.5 * np.mean((own - teacher) ** 2), rel=1e-4)
    loss.start_epoch(model, torch.device("cpu"))  # the next epoch reads the moved weights
    assert np.allclose(loss.teacher.numpy(), last(data.train), atol=1e-5)


def test_a_whole_model_artifact_names_its_own_stages_relatively(trained):
    folder = trained["make"]  # the artifact moved from its work folder to its place: paths must survive that
    assert json.loads((folder / "meta.json").read_text())["parents"] == {"morec": "stages/morec"}
    pad = json.loads((trained["pad"] / "stages" / "align" / "meta.json").read_text())
    assert pad["parents"] == {"pretrain": "../pretrain"}
    assert (trained["pad"] / "stages" / "align" / pad["parents"]["pretrain"] / "metrics.json").is_file()
