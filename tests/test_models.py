"""Backbones and experts: causality, padding, frozen text, gate weights."""

import pytest
import torch

from padcore.backbones import make_backbone
from padcore.config import TrainConfig
from padcore.experts import FusedTower, build_model

BACKBONES = ["sasrec", "gru4rec", "caser"]


def backbone(name: str, max_len: int = 8):
    torch.manual_seed(0)
    return make_backbone(TrainConfig(backbone=name, dim=16, heads=2, dropout=0.0), max_len).eval()


@pytest.mark.parametrize("name", BACKBONES)
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


@pytest.mark.parametrize("name", BACKBONES)
def test_padding_never_affects_real_positions(name):
    net = backbone(name)
    real = torch.randn(1, 3, 16)
    short = net(real, torch.ones(1, 3, dtype=torch.bool))
    padded_x = torch.cat([torch.randn(1, 5, 16) * 100, real], 1)  # garbage in the padding slots
    mask = torch.tensor([[False] * 5 + [True] * 3])
    long = net(padded_x, mask)
    assert torch.allclose(long[:, 5:], short, atol=1e-5)
    assert torch.isfinite(long).all()


def test_text_is_frozen_and_the_mlp_learns():
    cfg = TrainConfig(dim=8, dropout=0.0)
    text = torch.randn(11, 12)
    model = build_model(("align", "llm"), cfg, 10, 5, text, torch.randint(1, 4, (11,)), 3)
    seq = torch.tensor([[0, 1, 2, 3, 4]])
    states = [s[:, -1] for s in model.states(seq)]
    model.logits(states).sum().backward()
    for name in ("align", "llm"):
        tower = model.experts[name].tower
        tower = tower.text if isinstance(tower, FusedTower) else tower
        assert not tower.text.requires_grad and tower.text.grad is None
        assert tower.mlp[0].weight.grad.abs().sum() > 0
    assert torch.equal(model.experts["llm"].tower.text, text)


def test_gate_weights_sum_to_one_and_follow_the_bucket():
    cfg = TrainConfig(dim=8, dropout=0.0)
    buckets = torch.tensor([0, 1, 1, 2, 3, 3, 3])
    model = build_model(("id", "align", "llm"), cfg, 6, 5, torch.randn(7, 4), buckets, 3)
    assert torch.allclose(model.gate_weights(), torch.full((7, 3), 1 / 3))  # a fresh gate fuses equally
    torch.nn.init.normal_(model.gate.mlp[-1].weight)  # as after training
    w = model.gate_weights()
    assert w.shape == (7, 3)
    assert torch.allclose(w.sum(1), torch.ones(7))
    with torch.no_grad():
        model.gate.bucket_emb.weight[3] += 5.0  # only the bucket of items 4..6 changes
    w2 = model.gate_weights()
    assert torch.allclose(w2[:4], w[:4]) and not torch.allclose(w2[4:], w[4:])


def test_fused_logits_are_gated_sums_of_expert_logits():
    cfg = TrainConfig(dim=8, dropout=0.0)
    model = build_model(("id", "llm"), cfg, 6, 5, torch.randn(7, 4), torch.tensor([0, 1, 1, 2, 2, 3, 3]), 3).eval()
    seq = torch.tensor([[0, 0, 1, 2, 3]])
    states = [s[:, -1] for s in model.states(seq)]
    full = model.logits(states)
    w = model.gate_weights()
    per = [s @ e.tower.table().T for s, e in zip(states, model.experts.values())]
    assert torch.allclose(full, w[:, 0] * per[0] + w[:, 1] * per[1], atol=1e-6)
    per_row, shared = torch.tensor([[2, 5]]), torch.tensor([2, 5])
    assert torch.allclose(model.logits(states, per_row), full[:, [2, 5]], atol=1e-6)
    assert torch.allclose(model.logits(states, shared), full[:, [2, 5]], atol=1e-6)
