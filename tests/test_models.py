"""Backbones and experts: causality, padding, frozen text, gate weights."""

import numpy as np
import pytest
import torch

from padcore.backbones import RecencyPool, make_backbone
from padcore.config import TrainConfig
from padcore.errors import PadError
from padcore.experts import FusedTower, PadModel, TextTable, build_expert
from padcore.fusion import BucketGate, FrequencyGate

BACKBONES = ["sasrec", "gru4rec", "caser"]


def backbone(name: str, max_len: int = 8):
    if name == "pool":  # the text-similarity expert's parameter-free backbone
        return RecencyPool(0.6)
    torch.manual_seed(0)
    return make_backbone(TrainConfig(backbone=name, dim=16, heads=2, dropout=0.0), max_len).eval()


@pytest.mark.parametrize("name", BACKBONES + ["pool"])
def test_future_items_never_change_earlier_states(name):
    net = backbone(name)
    x = torch.randn(2, 8, 16)
    mask = torch.ones(2, 8, dtype=torch.bool)
    base = net(x, mask)
    for t in range(7):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randn(2, 7 - t, 16)
        out = net(changed, mask)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-5), f"position {t} saw the future"
        assert not torch.allclose(out[:, t + 1 :], base[:, t + 1 :], atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES + ["pool"])
def test_padding_never_affects_real_positions(name):
    net = backbone(name)
    real = torch.randn(1, 3, 16)
    short = net(real, torch.ones(1, 3, dtype=torch.bool))
    padded_x = torch.cat([torch.randn(1, 5, 16) * 100, real], 1)  # garbage in the padding slots
    mask = torch.tensor([[False] * 5 + [True] * 3])
    long = net(padded_x, mask)
    assert torch.allclose(long[:, 5:], short, atol=1e-5)
    assert torch.isfinite(long).all()


def pad_model(kinds, cfg, n_items, text, fusion=None):
    experts = {k: build_expert(k, cfg, n_items, 5, TextTable(text)) for k in kinds}
    return PadModel(experts, fusion)


def test_text_is_frozen_shared_and_the_mlp_learns():
    cfg = TrainConfig(dim=8, dropout=0.0)
    text = torch.randn(11, 12).half()  # kept in its stored precision
    model = pad_model(("align", "llm"), cfg, 10, text, BucketGate(2, torch.zeros(11, dtype=torch.long), 0))
    seq = torch.tensor([[0, 1, 2, 3, 4]])
    states = [s[:, -1] for s in model.states(seq)]
    model.logits(states).sum().backward()
    tables = []
    for name in ("align", "llm"):
        tower = model.experts[name].tower
        tower = tower.text if isinstance(tower, FusedTower) else tower
        assert not tower.text.table.requires_grad and tower.text.table.grad is None
        assert tower.mlp[0].weight.grad.abs().sum() > 0
        tables.append(tower.text.table)
    assert tables[0] is tables[1] and torch.equal(tables[0], text)  # one table for every tower
    assert not any(k.endswith("table") for k in model.state_dict())  # never saved as a weight


@pytest.mark.parametrize("decay", [0.0, 0.5, 1.0])
def test_similarity_expert_scores_cosine_to_the_recent_items_like_numpy(decay):
    """sim: score(i) = <sum_s decay^(t-s) unit(text_s) / sum_s decay^(t-s), unit(text_i)> over the real inputs."""
    rng = np.random.default_rng(1)
    text = rng.normal(size=(9, 5))
    text[0] = 0
    expert = build_expert("sim", TrainConfig(sim_decay=decay), 8, 6, TextTable(torch.tensor(text)))
    assert not list(expert.parameters())  # nothing to train
    seqs = [[0, 0, 0, 3, 7, 2], [0, 0, 0, 0, 0, 5], [1, 2, 3, 4, 5, 6]]
    states = expert.states(torch.tensor(seqs))[:, -1]
    got = (states @ expert.tower.table().T).numpy()
    unit = text / np.maximum(np.linalg.norm(text, axis=1, keepdims=True), 1e-12)
    for row, seq in zip(got, seqs):
        real = [i for i in seq if i]
        weights = np.array([decay ** (len(real) - 1 - k) for k in range(len(real))])
        user = (weights[:, None] * unit[real]).sum(0) / weights.sum()
        assert np.allclose(row, unit @ user, atol=1e-6)
    assert np.allclose(got[:, 0], 0)  # the padding item scores nothing


def test_tuned_expert_starts_as_the_similarity_expert_and_scores_its_metric_like_numpy():
    """tuned: item = sqrt(scale) unit(t + t U V^T); score = <recency-weighted mean of the inputs, item>."""
    rng = np.random.default_rng(2)
    text = rng.normal(size=(9, 5))
    text[0] = 0
    table = TextTable(torch.tensor(text, dtype=torch.float32))
    cfg = TrainConfig(sim_decay=0.5, tuned_rank=3)
    tuned, sim = build_expert("tuned", cfg, 8, 6, table), build_expert("sim", cfg, 8, 6, table)
    seqs = torch.tensor([[0, 0, 0, 3, 7, 2], [0, 0, 0, 0, 0, 5], [1, 2, 3, 4, 5, 6]])

    def scores(expert):
        return (expert.states(seqs)[:, -1] @ expert.tower.table().T).detach().numpy()

    # untrained (V = 0): the similarity expert's scores times the start scale
    assert np.allclose(scores(tuned), tuned.tower.START_SCALE * scores(sim), atol=1e-5)
    with torch.no_grad():
        tuned.tower.v.normal_()
        tuned.tower.log_scale.fill_(np.log(3.0))
    u, v = tuned.tower.u.detach().numpy(), tuned.tower.v.detach().numpy()
    x = text + text @ u @ v.T
    items = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    got = scores(tuned)
    for row, seq in zip(got, seqs.tolist()):
        real = [i for i in seq if i]
        weights = 0.5 ** np.arange(len(real))[::-1]
        user = (weights[:, None] * items[real]).sum(0) / weights.sum()
        assert np.allclose(row, 3.0 * items @ user, atol=1e-5)
    assert {n for n, _ in tuned.named_parameters()} == {"tower.u", "tower.v", "tower.log_scale"}  # the text stays out


def test_gate_weights_sum_to_one_and_follow_the_bucket():
    cfg = TrainConfig(dim=8, dropout=0.0)
    buckets = torch.tensor([0, 1, 1, 2, 3, 3, 3])
    model = pad_model(("id", "align", "llm"), cfg, 6, torch.randn(7, 4), FrequencyGate([8, 8, 8], 8, buckets, 3))
    assert torch.allclose(model.expert_weights(), torch.full((7, 3), 1 / 3))  # a fresh gate fuses equally
    torch.nn.init.normal_(model.fusion.mlp[-1].weight)  # as after training
    w = model.expert_weights()
    assert w.shape == (7, 3)
    assert torch.allclose(w.sum(1), torch.ones(7))
    with torch.no_grad():
        model.fusion.bucket_emb.weight[3] += 5.0  # only the bucket of items 4..6 changes
    w2 = model.expert_weights()
    assert torch.allclose(w2[:4], w[:4]) and not torch.allclose(w2[4:], w[4:])


def test_fused_logits_are_gated_sums_of_expert_logits():
    cfg = TrainConfig(dim=8, dropout=0.0)
    buckets = torch.tensor([0, 1, 1, 2, 2, 3, 3])
    model = pad_model(("id", "llm"), cfg, 6, torch.randn(7, 4), FrequencyGate([8, 8], 8, buckets, 3)).eval()
    torch.nn.init.normal_(model.fusion.mlp[-1].weight)
    seq = torch.tensor([[0, 0, 1, 2, 3]])
    states = [s[:, -1] for s in model.states(seq)]
    full = model.logits(states)
    w = model.expert_weights()
    per = [s @ e.tower.table().T for s, e in zip(states, model.experts.values())]
    assert torch.allclose(full, w[:, 0] * per[0] + w[:, 1] * per[1], atol=1e-6)
    per_row, shared = torch.tensor([[2, 5]]), torch.tensor([2, 5])
    assert torch.allclose(model.logits(states, per_row), full[:, [2, 5]], atol=1e-6)
    assert torch.allclose(model.logits(states, shared), full[:, [2, 5]], atol=1e-6)
    assert torch.allclose(model.scores(seq), full, atol=1e-6)


def test_bucket_gate_mixes_expert_scores_like_numpy():
    rng = np.random.default_rng(0)
    buckets = torch.tensor([0, 1, 1, 2, 3, 3])
    gate = BucketGate(2, buckets, 3, raw=False)
    with torch.no_grad():
        gate.logits.copy_(torch.tensor(rng.normal(size=(4, 2))))
        gate.log_temperature.copy_(torch.tensor([0.3, -0.5]))
    scores = [torch.tensor(rng.normal(size=(3, 6)) * 4) for _ in range(2)]
    got = gate(scores, gate.item_part(None, []), all_items=True).detach().numpy()

    w = np.exp(gate.logits.detach().numpy())
    w /= w.sum(1, keepdims=True)
    t = np.exp([0.3, -0.5])
    want = np.zeros((3, 6))
    for e in range(2):
        z = t[e] * scores[e].numpy()
        log_p = z - np.log(np.exp(z[:, 1:]).sum(1, keepdims=True))  # a distribution over the real items 1..5
        want += w[buckets.numpy(), e][None, :] * log_p
    assert np.allclose(got, want, atol=1e-9)
    with pytest.raises(PadError, match="scores the whole catalogue"):
        gate(scores, gate.item_part(torch.tensor([1, 2]), []), all_items=False)
    raw = BucketGate(2, buckets, 3)  # the default: the experts' own logits, here at their untrained start
    assert torch.allclose(raw(scores, raw.item_part(None, []), True), (scores[0] + scores[1]) / 2)
    with torch.no_grad():
        raw.logits.copy_(gate.logits)
        raw.log_temperature.copy_(gate.log_temperature)
    want_raw = sum(w[buckets.numpy(), e][None, :] * t[e] * scores[e].numpy() for e in range(2))
    assert np.allclose(raw(scores, raw.item_part(None, []), True).detach().numpy(), want_raw, atol=1e-9)
    raw.spread.copy_(torch.tensor([2.0, 0.5]))  # the experts' spreads: they weigh the shares, not the scores
    assert np.allclose(raw(scores, raw.item_part(None, []), True).detach().numpy(), want_raw, atol=1e-9)
    shares = w[buckets.numpy()] * t * [2.0, 0.5]
    assert np.allclose(raw.item_weights(raw.item_part(None, []), 6).detach().numpy(),
                       shares / shares.sum(1, keepdims=True), atol=1e-9)
    # the fold gives the same logits as one matrix product
    reps = [torch.randn(6, 3, dtype=torch.float64) for _ in range(2)]
    states = [torch.randn(2, 3, dtype=torch.float64) for _ in range(2)]
    part = raw.item_part(None, reps)
    per = [s @ r.T for s, r in zip(states, reps)]
    assert torch.allclose(torch.cat(states, -1) @ raw.fold(reps, part).T, raw(per, part, True))


def test_gate_weights_per_bucket_are_item_means():
    from padcore.analysis import gate_weights
    
    cfg = TrainConfig(dim=8, dropout=0.0)
    buckets = torch.tensor([0, 1, 1, 2, 3, 3, 3])
    model = pad_model(("id", "llm"), cfg, 6, torch.randn(7, 4), FrequencyGate([8, 8], 8, buckets, 4))
    torch.nn.init.normal_(model.fusion.mlp[-1].weight)
    w = model.expert_weights().detach().numpy()[1:]
    got = gate_weights(model, "paper", buckets.numpy()[1:], 4)
    assert got["items"] == [2, 1, 3, 0]
    assert np.allclose(got["weights"][0], w[:2].mean(0)) and np.allclose(got["weights"][2], w[3:].mean(0))
    assert np.isnan(got["weights"][3]).all()  # an empty bucket
    single = PadModel({"id": build_expert("id", cfg, 6, 5, None)})
    assert gate_weights(single, "bucket", buckets.numpy()[1:], 4) is None
    assert BucketGate(2, buckets, 3).bucket_weights().shape == (4, 2)


def test_logit_spreads_are_each_experts_mean_std_over_the_real_items_like_numpy():
    from padcore.models.pad import logit_spreads

    torch.manual_seed(0)
    text = torch.randn(9, 4)
    model = pad_model(("id", "sim"), TrainConfig(dim=8, dropout=0.0), 8, text, BucketGate(2, torch.zeros(9).long(), 0))
    model.train()
    inputs = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 5, 6], [7, 8, 1, 2, 3]])
    got = logit_spreads(model, inputs).numpy()
    assert model.training  # its mode is left as it was
    model.eval()
    want = []
    for e, expert in enumerate(model.experts.values()):
        scores = (expert.states(inputs)[:, -1] @ expert.tower.table().T).detach().numpy()[:, 1:]  # real items
        want.append(np.std(scores, axis=1, ddof=1).mean())
    assert np.allclose(got, want, rtol=1e-5)


def test_a_fusion_saved_before_the_spread_loads_at_unit_spread():
    gate = BucketGate(2, torch.tensor([0, 1, 1]), 1)
    old = {k: v for k, v in gate.state_dict().items() if k != "spread"}
    fresh = BucketGate(2, torch.tensor([0, 1, 1]), 1)
    fresh.spread.fill_(3.0)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.spread, torch.ones(2))
