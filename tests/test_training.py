"""The PAD phases and the training loop end to end on small synthetic data: artifacts, resume, the mechanism."""

import contextlib
import json

import numpy as np
import pytest
import torch

from padcore import trainer, training as phases
from padcore.checkpoint import item_tables
from padcore.models.pad import ALIGN
from padcore.dataset import load_dataset
from padcore.errors import PadError
from padcore.text import EMBEDDINGS, FORMAT
from clustered import clustered_world
from conftest import id_model

FAST = dict(dim=16, epochs=15, patience=5, batch_size=32, lr=3e-3, threads=1, seed=0)


def write_text(folder, table: np.ndarray, dataset) -> None:
    ds = load_dataset(dataset)
    folder.mkdir()
    np.save(folder / EMBEDDINGS, table.astype(np.float32))
    meta = {"kind": "text", "format": FORMAT, "encoder": "synthetic", "rows": table.shape[0], "dim": table.shape[1],
            "dtype": "float32", "item_hash": ds.item_hash, "dataset_id": ds.dataset_id, "text_hash": "synthetic-1"}
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    dataset, table = clustered_world(root / "dataset")
    write_text(root / "text", table, dataset)
    return root


@pytest.fixture(scope="module")
def trained(world):
    """SASRec ID-only vs the full PAD on the clustered world, BCE as in the paper."""
    phases.pretrain(world / "dataset", world / "m1", **FAST)
    phases.align(world / "dataset", world / "text", world / "m1", world / "m2")
    phases.finetune(world / "dataset", world / "text", world / "m1", world / "m2", world / "m3")
    return world


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_pad_beats_id_only_on_cold_items(trained):
    sasrec, pad = metrics(trained / "m1")["test"], metrics(trained / "m3")["test"]
    assert sasrec["groups"]["cold"]["users"] > 50
    # the cold test targets were never trained on: an ID model cannot place them, text can
    assert pad["groups"]["cold"]["hr@10"] > sasrec["groups"]["cold"]["hr@10"] + 20
    assert pad["hr@10"] > sasrec["hr@10"]


def test_artifacts_and_metrics_schema(trained):
    for name, phase in (("m1", "pretrain"), ("m2", "align"), ("m3", "finetune")):
        folder = trained / name
        assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "metrics.json", "meta.json"}
        m = metrics(folder)
        assert set(m["test"]["groups"]) == {"warm", "median", "cold"}
        assert len(m["test"]["buckets"]) == 4
        assert 0 <= m["best_epoch"] <= m["epochs"]  # 0 = the starting point was best
        assert m["history"][0]["epoch"] == 0 and m["history"][0]["loss"] is None
        assert json.loads((folder / "meta.json").read_text())["phase"] == phase
    # later phases inherit the earlier phase's options, except the rate: each phase has its own default
    assert metrics(trained / "m3")["config"]["dim"] == 16
    assert metrics(trained / "m1")["config"]["lr"] == FAST["lr"]
    assert metrics(trained / "m2")["config"]["lr"] == metrics(trained / "m3")["config"]["lr"] == ALIGN.defaults["lr"]
    tables = item_tables(trained / "m3", np.load(trained / "text" / EMBEDDINGS))
    assert set(tables) == {"id.id", "align.id", "align.text", "llm.text"}
    assert all(t.shape == (tables["id.id"].shape[0], 16) for t in tables.values())
    assert set(item_tables(trained / "m1")) == {"id"}


def test_the_text_table_is_never_changed(trained):
    text = np.load(trained / "text" / EMBEDDINGS)
    from padcore.checkpoint import load_weights

    assert not any("text" == k.rsplit(".", 1)[-1] for k in load_weights(trained / "m3"))  # not stored as weights
    assert np.array_equal(text, np.load(trained / "text" / EMBEDDINGS))


def test_mismatched_inputs_are_refused(trained, tmp_path):
    other, _ = clustered_world(tmp_path / "other", n_users=200, seed=1)
    with pytest.raises(PadError, match="made from dataset"):
        phases.align(other, trained / "text", trained / "m1", tmp_path / "x")
    with pytest.raises(PadError, match="phase is 'align'"):
        phases.align(trained / "dataset", trained / "text", trained / "m2", tmp_path / "x")
    with pytest.raises(PadError, match="architecture"):
        phases.align(trained / "dataset", trained / "text", trained / "m1", tmp_path / "x", dim=32)
    with pytest.raises(PadError, match="unknown training option"):
        phases.pretrain(trained / "dataset", tmp_path / "x", colour="blue")
    assert not (tmp_path / "x").exists()


@contextlib.contextmanager
def crash_after_saves(n: int, monkeypatch):
    """Inside: the n-th checkpoint written by `fit` is followed by an interruption (as a killed run)."""
    real_save, calls = trainer._save, {"n": 0}

    def crashing(*args):
        real_save(*args)
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save", crashing)
    try:
        yield
    finally:
        monkeypatch.setattr(trainer, "_save", real_save)


def test_resume_after_interruption_matches_an_uninterrupted_run(world, tmp_path, monkeypatch):
    opts = dict(FAST, epochs=6, patience=6)
    phases.pretrain(world / "dataset", tmp_path / "whole", **opts)

    with crash_after_saves(3, monkeypatch), pytest.raises(KeyboardInterrupt):
        phases.pretrain(world / "dataset", tmp_path / "cut", **opts)
    assert not (tmp_path / "cut").exists() and (tmp_path / ".cut.partial" / "resume.pt").is_file()
    phases.pretrain(world / "dataset", tmp_path / "cut", **opts)

    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [h["valid_ndcg@10"] for h in cut["history"]] == [h["valid_ndcg@10"] for h in whole["history"]]
    assert cut["test"] == whole["test"]
    from padcore.checkpoint import load_weights

    a, b = load_weights(tmp_path / "whole"), load_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_long_epochs_and_rankings_say_how_far_they_are(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "PROGRESS_SECONDS", 0.0)  # every batch and every chunk of users is "long"
    phases.pretrain(world / "dataset", tmp_path / "m", **dict(FAST, epochs=1, eval_batch=64))
    lines = capsys.readouterr().out.splitlines()
    batches = [line for line in lines if "epoch   1: batch " in line]
    ranked = [line for line in lines if "ranked users " in line]
    assert batches and "loss " in batches[0] and batches[-1].endswith("about 0 s left")
    users = len(load_dataset(world / "dataset").users)
    assert any(f"ranked users {users:,}/{users:,}" in line for line in ranked)


def test_phase_3_resumed_after_interruption_matches_an_uninterrupted_run(trained, tmp_path, monkeypatch):
    """A resumed fusion fit starts its epoch from the same frozen experts' tables (evaluation mode, no dropout)."""
    args = (trained / "dataset", trained / "text", trained / "m1", trained / "m2")
    phases.finetune(*args, tmp_path / "whole", epochs=3, patience=3)
    with crash_after_saves(2, monkeypatch), pytest.raises(KeyboardInterrupt):
        phases.finetune(*args, tmp_path / "cut", epochs=3, patience=3)
    phases.finetune(*args, tmp_path / "cut", epochs=3, patience=3)
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert [h["valid_ndcg@10"] for h in cut["history"]] == [h["valid_ndcg@10"] for h in whole["history"]]
    assert cut["test"] == whole["test"] and cut["fusion"] == whole["fusion"]


@pytest.mark.parametrize("backbone", ["gru4rec", "caser"])
@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_every_backbone_and_loss_runs_the_three_phases(world, tmp_path, backbone, loss):
    opts = dict(FAST, backbone=backbone, loss=loss, epochs=1, sampled_negatives=16)
    phases.pretrain(world / "dataset", tmp_path / "m1", **opts)
    phases.align(world / "dataset", world / "text", tmp_path / "m1", tmp_path / "m2", kernel="laplacian")
    m = phases.finetune(world / "dataset", world / "text", tmp_path / "m1", tmp_path / "m2", tmp_path / "m3",
                        experts=("id", "llm"), fusion="global")
    assert m["config"]["backbone"] == backbone and m["config"]["loss"] == loss
    assert 0 <= m["test"]["hr@10"] <= 100
    assert m["epochs"] == 2 and len(m["fusion"]["best_epochs"]) == 2  # one epoch in each cross-fitting fold


def test_length_batches_hold_every_row_once_and_save_padding():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 22, (1000,), generator=gen)
    order = torch.randperm(1000, generator=gen)
    batches = trainer.length_batches(order, lengths, 32, torch.Generator().manual_seed(1), pool=8)
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000))
    assert all(len(b) <= 32 for b in batches)
    trimmed = sum(len(b) * int(lengths[b].max()) for b in batches)
    shuffled = sum(len(b) * int(lengths[b].max()) for b in order.split(32))
    assert trimmed < 0.7 * shuffled


def test_evaluation_in_length_chunks_matches_one_pass(world):
    from padcore.batches import split_tensors
    from padcore.config import TrainConfig
    from padcore.metrics import target_ranks

    ds = load_dataset(world / "dataset")
    data = split_tensors(ds, 8)
    cfg = TrainConfig(dim=16, eval_batch=7, max_len=8)
    torch.manual_seed(0)
    model = id_model(cfg, ds.n_items, 8).eval()
    with torch.no_grad():
        scores = model.logits([model.states(data.test.inputs)[0][:, -1]])
    whole = target_ranks(scores, data.test.targets, data.test.history).numpy()
    chunked = trainer.rank_split(model, data.test, cfg, torch.device("cpu"))
    # the same ranks per user; a score may differ in the last bit when computed in another chunk shape
    assert np.abs(chunked - whole).max() <= 1 and (chunked == whole).mean() > 0.98


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_rate_schedule(schedule):
    from padcore.config import TrainConfig

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    cfg = TrainConfig(lr=0.01, schedule=schedule)
    for progress in (0.0, 0.25, 0.5, 1.0):
        trainer._set_rate(opt, cfg, progress)
        want = 0.01 * (1 + np.cos(np.pi * progress)) / 2 if schedule == "cosine" else 0.01
        assert opt.param_groups[0]["lr"] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("backbone", ["sasrec", "gru4rec", "caser"])
def test_rec_loss_holds_the_next_item_positions_only(backbone):
    """L_REC = the mean over each row's next-item positions, the row run alone with no padding;
    a row's first item (padding before it) is never a target, and trimming or adding padding columns changes nothing."""
    from padcore.config import TrainConfig

    cfg = TrainConfig(dim=8, loss="ce", backbone=backbone, dropout=0.0)
    torch.manual_seed(0)
    model = id_model(cfg, 30, 8).eval()
    rows = [[3, 7, 1, 9, 4, 2], [5, 6], [8, 2, 11], [12, 13, 14, 15]]
    width = max(map(len, rows))
    batch = torch.tensor([[0] * (width - len(r)) + r for r in rows])

    def run(b: torch.Tensor) -> float:  # CE needs no user items for negatives
        return float(trainer.rec_loss(model, b, b, cfg, 30, torch.Generator()))

    with torch.no_grad():
        terms = []
        for r in rows:
            seq = torch.tensor(r)[None]
            logits = model.logits([model.states(seq[:, :-1])[0][0]])
            logits[:, 0] = float("-inf")
            terms += torch.nn.functional.cross_entropy(logits, seq[0, 1:], reduction="none").tolist()
        want = float(np.mean(terms))
        padded = torch.cat([torch.zeros(len(rows), 3, dtype=torch.long), batch], 1)
        assert len(terms) == sum(len(r) - 1 for r in rows)
        assert run(batch) == pytest.approx(want, rel=1e-5)
        assert run(padded) == pytest.approx(want, rel=1e-5)


def test_a_training_split_without_next_item_positions_is_refused(tmp_path):
    from conftest import _synthetic_raw
    from padcore.batches import split_tensors
    from padcore.dataset import Protocol, build_dataset

    ds = build_dataset(_synthetic_raw(50, 20, lengths=(3, 3)), Protocol(min_len=3))  # one training item per user
    with pytest.raises(PadError, match="no next-item position"):
        trainer.RecObjective(split_tensors(ds, 20))


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """PAD's three phases on the chained clustered world: IDs place the popular targets, text the cold ones."""
    root = tmp_path_factory.mktemp("chained")
    dataset, table = clustered_world(root / "dataset", chains=True)
    write_text(root / "text", table, dataset)
    phases.pretrain(root / "dataset", root / "m1", **FAST)
    phases.align(root / "dataset", root / "text", root / "m1", root / "m2")
    phases.finetune(root / "dataset", root / "text", root / "m1", root / "m2", root / "m3")
    # the same experts (the tuned one trained as m3's was: same seed), the fusion left at its start
    phases.finetune(root / "dataset", root / "text", root / "m1", root / "m2", root / "equal", fusion="equal")
    return root


def test_the_learned_fusion_hands_cold_items_to_the_text_experts(chained):
    """Only IDs know the popular targets of the chained world, only text places the cold ones: the fitted gate
    must give the ID expert the warm buckets and the text experts the cold ones; the untrained (equal) fusion,
    which does not, must fail the same check."""

    def id_share(folder) -> np.ndarray:  # per bucket (warmest first), the ID expert's share of the score
        from padcore.analysis import gate_weights
        from padcore.checkpoint import load_model

        ds = load_dataset(chained / "dataset")
        model = load_model(folder, np.load(chained / "text" / EMBEDDINGS))
        return np.array(gate_weights(model, "", ds.item_column("bucket")[1:], 4)["weights"])[:, 0]

    def handed_over(share: np.ndarray) -> bool:
        return share[0] > share[-1] + 0.1 and share[-1] < 0.2

    learned = id_share(chained / "m3")
    assert handed_over(learned), learned
    assert metrics(chained / "m3")["best_epoch"] >= 1
    equal = id_share(chained / "equal")
    assert np.allclose(equal, 1 / 5)  # the start: every expert at unit spread, equal weights
    assert not handed_over(equal)  # the check fails for a gate that does not learn


def test_a_restarted_fusion_scores_as_the_untrained_one(chained):
    """`BucketGate.restart` takes a fitted fusion back to phase 3's start: the fitted model then scores as
    `fusion=equal` over the same experts does (bench/quality.py's "PAD, fused, tuned expert trained")."""
    from padcore.checkpoint import load_model
    from padcore.ensemble import evaluate

    ds = load_dataset(chained / "dataset")
    model = load_model(chained / "m3", np.load(chained / "text" / EMBEDDINGS)).eval()
    fitted = evaluate(model, ds)
    model.fusion.restart()
    restarted = evaluate(model, ds)
    assert fitted["ndcg@10"] != pytest.approx(restarted["ndcg@10"])
    assert restarted["ndcg@10"] == pytest.approx(metrics(chained / "equal")["test"]["ndcg@10"])
    assert restarted["hr@10"] == pytest.approx(metrics(chained / "equal")["test"]["hr@10"])


def test_llm_train_rec_trains_the_llm_expert_alone_before_the_fusion(trained, world, tmp_path):
    """`llm_train=rec` gives the LLM expert its own L_REC fit (its epoch chosen on validation) while the
    ID and alignment experts keep their weights; the default leaves it as the alignment expert's text part."""
    from safetensors.torch import load_file

    out = tmp_path / "rec"
    phases.finetune(world / "dataset", world / "text", trained / "m1", trained / "m2", out, fusion="equal",
                    llm_train="rec")
    fit = metrics(out)["llm_expert"]
    assert fit["epochs"] >= 1 and 0 <= fit["best_epoch"] <= fit["epochs"]
    new, old = load_file(out / "model.safetensors"), load_file(trained / "m3" / "model.safetensors")
    assert "llm_expert" not in metrics(trained / "m3")
    for key in new:
        if key.startswith(("experts.id.", "experts.align.")):
            assert torch.equal(new[key], old[key]), key  # the other experts are as phases 1 and 2 left them
    moved = any(not torch.equal(new[k], old[k]) for k in new if k.startswith("experts.llm."))
    assert moved == (fit["best_epoch"] > 0)


def test_valid_users_sample_chooses_the_epoch_and_gives_the_validation_metrics(world, tmp_path):
    phases.pretrain(world / "dataset", tmp_path / "m", **dict(FAST, epochs=2, valid_users=9))
    m = metrics(tmp_path / "m")
    users = len(load_dataset(world / "dataset").users)
    assert m["valid"]["users"] == 9 and m["test"]["users"] == users > 9
    assert m["valid"]["ndcg@10"] == max(h["valid_ndcg@10"] for h in m["history"])  # the same 9 users chose it


def test_valid_users_bounds_the_phase_3_fusion_fit(trained, world, tmp_path, monkeypatch):
    """With `valid_users`, each cross-fitting fold fits on and chooses among halves of that many users."""
    import padcore.models.pad as pad

    seen, real_fit = [], pad.fit

    def spy(model, objective, valid, cfg, work, log):
        seen.append((len(objective.rows), len(valid.targets)))
        return real_fit(model, objective, valid, cfg, work, log)

    monkeypatch.setattr(pad, "fit", spy)
    phases.finetune(world / "dataset", world / "text", trained / "m1", trained / "m2", tmp_path / "m3", valid_users=41)
    assert seen[1:] == [(20, 21), (21, 20)]  # seen[0]: the tuned expert's own fit, on the training split


def test_rival_softmax_is_the_cross_entropy_against_the_best_scored_other_items():
    from padcore.models.pad import rival_softmax

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 30))
    scores[:, 0] = -np.inf  # padding and seen items are -inf when they reach the loss
    scores[1, 3:9] = -np.inf
    targets = np.array([4, 9, 17, 29, 1])
    for rivals in (1, 4, 20):
        want = []
        for s, t in zip(scores, targets):
            others = np.sort(np.delete(s, t))[::-1][:rivals]
            logits = np.concatenate([[s[t]], others])
            finite = logits[np.isfinite(logits)]
            want.append(-(s[t] - (finite.max() + np.log(np.exp(finite - finite.max()).sum()))))
        got = rival_softmax(torch.tensor(scores), torch.tensor(targets), rivals)
        assert float(got) == pytest.approx(np.mean(want), rel=1e-9)
    full = torch.nn.functional.cross_entropy(torch.tensor(scores), torch.tensor(targets))
    assert float(rival_softmax(torch.tensor(scores), torch.tensor(targets), 0)) == float(full)
    assert float(rival_softmax(torch.tensor(scores), torch.tensor(targets), 29)) == float(full)


def test_the_tuned_expert_learns_its_metric_from_the_similarity_experts_ranking(trained, world, tmp_path):
    """experts=...,tuned: phase 3 trains the tuned-similarity expert alone first (epoch 0 = the similarity
    expert's ranking, so validation never ends below it), measures its spread as trained, then fits the fusion;
    the artifact reloads and scores as it was evaluated."""
    from padcore.batches import split_tensors
    from padcore.checkpoint import load_model
    from padcore.ensemble import evaluate
    from padcore.models.pad import logit_spreads

    phases.finetune(world / "dataset", world / "text", trained / "m1", trained / "m2", tmp_path / "sim",
                    experts="sim")
    out = tmp_path / "tuned"
    phases.finetune(world / "dataset", world / "text", trained / "m1", trained / "m2", out, experts="id,sim,tuned",
                    tuned_rank=4)
    fit = metrics(out)["tuned_expert"]
    assert fit["epochs"] >= 1 and fit["best_epoch"] >= 1  # it learned something validation kept
    assert fit["valid_ndcg@10"] >= metrics(tmp_path / "sim")["valid"]["ndcg@10"]
    ds = load_dataset(world / "dataset")
    model = load_model(out, np.load(world / "text" / EMBEDDINGS))
    assert model.experts["tuned"].tower.v.abs().sum() > 0  # the learned metric was saved
    inputs = split_tensors(ds, ds.meta["protocol"]["max_len"]).valid.inputs
    assert torch.allclose(model.fusion.spread, logit_spreads(model, inputs), rtol=1e-4)  # measured as trained
    assert evaluate(model, ds)["ndcg@10"] == pytest.approx(metrics(out)["test"]["ndcg@10"])


@pytest.fixture(scope="module")
def fused(trained):
    """PAD's phase-3 model on the clustered world, in evaluation mode, and its validation split."""
    from padcore.batches import split_tensors
    from padcore.checkpoint import load_model

    ds = load_dataset(trained / "dataset")
    model = load_model(trained / "m3", np.load(trained / "text" / EMBEDDINGS)).eval()
    return model, split_tensors(ds, ds.meta["protocol"]["max_len"]).valid


@pytest.mark.parametrize("budget", ["kept", "products"])
def test_a_fusion_fit_reads_the_experts_logits_as_the_model_scores(fused, budget):
    """`FrozenExperts` (its logits kept whole, or over its memory budget recomputed per batch) gives the
    model's own logits, fused scores and validation ranks."""
    from padcore.config import TrainConfig
    from padcore.models.pad import KEEP_BYTES, FrozenExperts

    model, valid = fused
    experts = FrozenExperts(model, valid.inputs, torch.device("cpu"), KEEP_BYTES if budget == "kept" else 0)
    assert (experts.kept is not None) == (budget == "kept")
    rows = torch.arange(len(valid.targets)).flip(0)[::3]
    with torch.no_grad():
        side = model.item_side()
        states = [s[:, -1] for s in model.states(valid.inputs[rows])]
        want = [s @ r.T for s, r in zip(states, side[0])]  # each expert's logits
        part = model.fusion.item_part(None, [])
        fused_want = model.logits(states, side=side)
        got = experts.logits(rows)
        items = torch.randint(0, len(experts), (len(rows), 7), generator=torch.Generator().manual_seed(0))
        for g, w, at in zip(got, want, experts.logits_at(rows, items)):
            assert torch.allclose(g, w, atol=1e-5)
            assert torch.allclose(at, w.gather(1, items), atol=1e-5)
        assert torch.allclose(experts.combined(rows, model.fusion.coefficients(part)), fused_want, atol=1e-5)
        assert torch.allclose(model.fusion(got, part, all_items=True), fused_want, atol=1e-5)
        ranks = experts.ranks(rows, model.fusion.coefficients(part), valid.targets[rows], valid.history[rows])
    want_ranks = trainer.rank_split(model, valid.subset(rows), TrainConfig(), torch.device("cpu"))
    assert (ranks.numpy() != want_ranks).mean() <= 0.01  # a tie within rounding may fall either way
    assert np.abs(ranks.numpy() - want_ranks)[want_ranks < 2**40].max() <= 1


@pytest.mark.parametrize("budget", ["kept", "products"])
@pytest.mark.parametrize("raw", [True, False])
def test_the_held_out_loss_needs_only_the_targets_and_their_rivals_logits(fused, budget, raw):
    """The fusion's loss from the rivals' logits alone equals `rival_softmax` over every item's fused score,
    in value and in its gradient; the epoch's ranks match `rank_split`'s. A calibrated fusion (not linear in
    the logits) takes every item's logit."""
    import copy

    from padcore.config import TrainConfig
    from padcore.models.pad import KEEP_BYTES, FrozenExperts, HeldOutObjective, rival_softmax

    model, valid = fused
    model = copy.deepcopy(model)
    model.fusion.raw = raw
    experts = FrozenExperts(model, valid.inputs, torch.device("cpu"), KEEP_BYTES if budget == "kept" else 0)
    users = torch.arange(len(valid.targets))
    objective = HeldOutObjective(model, experts, valid, users[::2], users[1::2])
    idx = torch.arange(40)
    params = [model.fusion.logits, model.fusion.log_temperature]
    for rivals in (5, 0):
        cfg = TrainConfig(fusion_negatives=rivals)
        loss = objective.loss(model, idx, objective.rows[idx], cfg, torch.Generator())
        got = torch.autograd.grad(loss, params)
        rows, targets = users[::2][idx], valid.targets[::2][idx]
        seen = torch.zeros(len(idx), len(experts), dtype=torch.bool).scatter_(1, valid.history[rows], True)
        seen[:, 0] = True
        fresh = ~seen[torch.arange(len(idx)), targets]
        assert 0 < int(fresh.sum()) < len(idx)  # a repeated target is left out
        states = [s[:, -1] for s in model.states(valid.inputs[rows])]
        scores = model.logits(states, side=model.item_side()).masked_fill(seen, float("-inf"))
        want_loss = rival_softmax(scores[fresh], targets[fresh], rivals)
        want = torch.autograd.grad(want_loss, params)
        assert loss.item() == pytest.approx(want_loss.item(), rel=1e-5)
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-7)
    cfg = TrainConfig()
    ranks = objective.ranks(model, valid.subset(users[1::2]), cfg, torch.device("cpu"))
    want_ranks = trainer.rank_split(model, valid.subset(users[1::2]), cfg, torch.device("cpu"))
    assert (ranks != want_ranks).mean() <= 0.01
    with pytest.raises(ValueError, match="chooses on"):
        objective.ranks(model, valid, cfg, torch.device("cpu"))
