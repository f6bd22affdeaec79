"""Sequence encoders behind one interface.

A backbone maps item representations of a left-padded sequence [B, L, d] and
its mask [B, L] (True = real item) to one state per position [B, L, d]; the state
at position t sees only positions <= t and never padding. Scores are dot
products of a state with item representations, done by the caller, so every
expert and phase is written once for all backbones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from padcore.config import TrainConfig
from padcore.registry import BACKBONES


class SASRec(nn.Module):
    """Causal self-attention (Kang & McAuley 2018), pre-norm blocks, learned positions."""

    def __init__(self, dim: int, max_len: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.pos = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        pos = self.pos.weight[-L:]  # right-aligned: the latest item always has the last position
        h = self.drop(x * math.sqrt(self.dim) + pos) * mask.unsqueeze(-1)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        # a query sees earlier real keys and always itself (so padding rows never see nothing)
        attn = (causal & mask[:, None, :]) | torch.eye(L, dtype=torch.bool, device=x.device)
        attn = attn.unsqueeze(1)
        for block in self.blocks:
            h = block(h, attn) * mask.unsqueeze(-1)
        return self.norm(h)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        B, L, D = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn, dropout_p=self.dropout if self.training else 0.0)
        h = h + self.drop(self.out(a.transpose(1, 2).reshape(B, L, D)))
        return h + self.drop(self.ffn(self.norm2(h)))


class GRU4Rec(nn.Module):
    """A GRU over the real items (Hidasi et al. 2016); padding is skipped, not fed."""

    def __init__(self, dim: int, layers: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        lengths = mask.sum(1)
        # left-padded -> right-padded, run the packed GRU, then shift back
        shift = (torch.arange(L, device=x.device)[None, :] + (L - lengths)[:, None]) % L
        xr = torch.gather(self.drop(x), 1, shift[..., None].expand(B, L, D))
        packed = nn.utils.rnn.pack_padded_sequence(xr, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=L)
        back = (torch.arange(L, device=x.device)[None, :] - (L - lengths)[:, None]) % L
        out = torch.gather(out, 1, back[..., None].expand(B, L, D))
        return self.proj(out) * mask.unsqueeze(-1)


class Caser(nn.Module):
    """Horizontal and vertical convolutions over the latest `window` items (Tang & Wang 2018).

    Applied causally at every position: the state at t sees items t-window+1..t.
    """

    def __init__(self, dim: int, window: int, dropout: float, n_h: int = 16, n_v: int = 4):
        super().__init__()
        self.window = window
        self.h_convs = nn.ModuleList(nn.Conv1d(dim, n_h, kernel_size=h) for h in range(1, window + 1))
        self.v_conv = nn.Linear(window, n_v, bias=False)  # n_v vertical filters: weighted sums over the window
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(n_h * window + n_v * dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        W = self.window
        x = x * mask.unsqueeze(-1)
        # 2W-2 zeros before the sequence: padding slots are zeros too, so the amount of padding never matters
        xt = F.pad(x.transpose(1, 2), (2 * W - 2, 0))  # [B, D, 2W-2+L]
        feats = []
        for h, conv in enumerate(self.h_convs, start=1):
            c = F.relu(conv(xt))  # c[j] covers inputs j..j+h-1; the h-gram ending at t is j = t+2W-1-h
            # max over the h-grams inside the window of t (ending at t-W+h..t)
            feats.append(F.max_pool1d(c, W - h + 1, stride=1)[:, :, W - 1 :])
        windows = xt[:, :, W - 1 :].unfold(2, W, 1)  # [B, D, L, W]: items t-W+1..t
        v = self.v_conv(windows).permute(0, 2, 3, 1).reshape(B, L, -1)  # [B, L, n_v * D]
        h = torch.cat([torch.cat(feats, 1).transpose(1, 2), v], -1)
        return F.relu(self.fc(self.drop(h))) * mask.unsqueeze(-1)


class RecencyPool(nn.Module):
    """No parameters: the state at t is the recency-weighted mean of the real items up to t,
    weights decay^(t - s) (decay 0 = the latest item alone, 1 = a plain mean)."""

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        L = x.shape[1]
        age = torch.arange(L, device=x.device)
        age = age[:, None] - age[None, :]  # [t, s]: how many steps s is before t
        # decay^age for s <= t (0 ** 0 = 1: the latest item always counts), 0 after t
        w = torch.where(age >= 0, torch.tensor(self.decay, device=x.device).pow(age.clamp_min(0)), 0.0)
        w = w[None] * mask[:, None, :].to(w.dtype)  # [B, t, s]
        total = w.sum(-1, keepdim=True)
        return (w @ x.float()) / total.clamp_min(1e-12) * mask.unsqueeze(-1)


TITLES = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "caser": "Caser"}  # as the paper's tables name them


@BACKBONES.register("sasrec")
def _sasrec(cfg: TrainConfig, dim: int, max_len: int) -> nn.Module:
    return SASRec(dim, max_len, cfg.layers, cfg.heads, cfg.dropout)


@BACKBONES.register("gru4rec")
def _gru4rec(cfg: TrainConfig, dim: int, max_len: int) -> nn.Module:
    return GRU4Rec(dim, cfg.layers, cfg.dropout)


@BACKBONES.register("caser")
def _caser(cfg: TrainConfig, dim: int, max_len: int) -> nn.Module:
    return Caser(dim, cfg.caser_window, cfg.dropout)


def make_backbone(cfg: TrainConfig, max_len: int, dim: int | None = None) -> nn.Module:
    """The configured backbone at width `dim` (default: the model width)."""
    return BACKBONES[cfg.backbone](cfg, dim or cfg.dim, max_len)
