"""The analysis step: how far each phase moved the item spaces (Fig. 6) and how well
text distances separate near and far collaborative pairs (Fig. 3 / Fig. 7).

Tables are keyed `"<model>:<part>"` ("pretrain:id", "align:align.id",
"finetune:llm.text", ...) plus "text", the original text table. The core,
`run_analysis`, works on plain tables; `analyze` loads them from a run's
artifacts and writes the analysis artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats
from tqdm import tqdm

from padcore.errors import PadError
from padcore.kendall import MAX_PAIRS, MIN_PAIRS, Pairs, pair_distances, tau_by_bucket
from padcore.options import build_options, check_options, option

REFERENCE = "pretrain:id"  # the collaborative space the others are measured against
PHASES = ("pretrain", "align", "finetune")
GROUPS = ("cold", "warm")  # Fig. 3 is on cold items, Fig. 7 on warm ones


@dataclass
class AnalysisConfig:
    """Options of the analysis step."""

    min_pairs: int = option(MIN_PAIRS, "a bucket (or a top/bottom set) with fewer pairs is reported as too small",
                            low=2)
    max_pairs: int = option(MAX_PAIRS, "above this many pairs, tau runs on a seeded subsample of this many", low=2)
    top_fraction: float = option(0.1, "Fig. 3: share of pairs with the largest / smallest collaborative distance",
                                 low=0, high=0.5, low_open=True)
    seed: int = option(0, "subsample seed", low=0)
    bins: int = option(40, "histogram bins of the pair-distance plots", low=1)
    extra_align: dict[str, str] = option({}, "label -> another phase-2 model folder (e.g. non-anchored), Fig. 6(a)")

    def __post_init__(self) -> None:
        check_options(self, "analysis")
        if self.max_pairs < self.min_pairs:
            raise PadError(f"analysis option 'max_pairs' ({self.max_pairs}) must be at least 'min_pairs' "
                           f"({self.min_pairs})")
        clash = sorted(set(self.extra_align) & {*PHASES, "text"})
        if clash:
            raise PadError(f"analysis option 'extra_align': label(s) {clash} are taken; pick other names")

    @classmethod
    def from_options(cls, **options: Any) -> "AnalysisConfig":
        return build_options(cls, "analysis", options)


@dataclass(frozen=True)
class Comparison:
    a: str  # table key of the original space
    b: str  # table key of the space it turned into
    space: str  # "collaborative" | "text": which figure it belongs to
    label: str  # legend text

    @property
    def name(self) -> str:
        return f"{self.a} vs {self.b}"


def default_comparisons(align_label: str = "anchored", extra_labels: Sequence[str] = ()) -> list[Comparison]:
    """Fig. 6(a), (c) and (d) as far as one PAD run (plus extra align models) can draw them."""
    out = [
        Comparison(REFERENCE, "finetune:id.id", "collaborative", "ID expert, fine-tuned (Multi-origin)"),
        Comparison(REFERENCE, "finetune:align.id", "collaborative", "alignment expert, fine-tuned (Multi-aligned)"),
        Comparison(REFERENCE, "align:align.id", "collaborative", f"after alignment ({align_label})"),
        *(Comparison(REFERENCE, f"{x}:align.id", "collaborative", f"after alignment ({x})") for x in extra_labels),
        Comparison("text", "finetune:llm.text", "text", "LLM expert, fine-tuned (Multi-origin)"),
        Comparison("text", "finetune:align.text", "text", "alignment expert, fine-tuned (Multi-aligned)"),
        Comparison("text", "align:align.text", "text", f"after alignment ({align_label})"),
    ]
    return out


def separation_views(tables: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """(table key, space) of every table whose pair distances Fig. 3 plots, reference excluded."""
    return [(k, "text" if k == "text" or k.endswith(".text") else "collaborative") for k in tables if k != REFERENCE]


def check_tables(tables: dict[str, np.ndarray], n_items: int, sources: dict[str, str] | None = None) -> None:
    """Every table is 2-D, finite, with n_items+1 rows (row 0 = padding)."""
    for key, t in tables.items():
        where = f"table {key!r}" + (f" from {sources[key]}" if sources and key in sources else "")
        if t.ndim != 2:
            raise PadError(f"{where}: shape {t.shape}, expected [n_items+1, dim]")
        if t.shape[0] != n_items + 1:
            raise PadError(f"{where}: {t.shape[0]} rows, expected n_items+1 = {n_items + 1} (is it for this dataset?)")
        if not np.isfinite(t).all():
            raise PadError(f"{where}: holds NaN or infinite values")


def auc_score(top: np.ndarray, bottom: np.ndarray) -> float:
    """P(a top pair is farther than a bottom pair), ties counting one half (Mann-Whitney U / n1 n2)."""
    ranks = stats.rankdata(np.concatenate([top, bottom]))
    n1, n2 = len(top), len(bottom)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))


def standardized_gap(top: np.ndarray, bottom: np.ndarray) -> float | None:
    """Difference of means over the pooled standard deviation (Cohen's d); None when both are constant."""
    n1, n2 = len(top), len(bottom)
    pooled = np.sqrt(((n1 - 1) * top.var(ddof=1) + (n2 - 1) * bottom.var(ddof=1)) / (n1 + n2 - 2))
    return float((top.mean() - bottom.mean()) / pooled) if pooled > 0 else None


@dataclass
class Analysis:
    kendall: dict  # kendall.json
    separation: dict  # separation.json
    samples: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # group -> view -> (top, bottom) distances

    def scalars(self) -> dict[str, float]:
        """Flat numbers for a metrics dashboard: overall tau per comparison, AUC per group and view."""
        out = {f"tau: {c['name']}": c["overall"]["tau"] for c in self.kendall["comparisons"]}
        for group, g in self.separation["groups"].items():
            out.update({f"auc {group}: {v['view']}": v["auc"] for v in g["views"]})
        return {k: v for k, v in out.items() if v is not None}


def run_analysis(
    tables: dict[str, np.ndarray],
    pairs: Pairs,
    target_group: np.ndarray,
    n_buckets: int,
    comparisons: Sequence[Comparison],
    cfg: AnalysisConfig = AnalysisConfig(),
) -> Analysis:
    """Tau per comparison and bucket, and the top/bottom pair separation, on in-memory tables."""
    dist: dict[str, np.ndarray] = {}

    def distances(key: str) -> np.ndarray:
        if key not in dist:
            dist[key] = pair_distances(tables[key], pairs.behaviour, pairs.target)
        return dist[key]

    opts = dict(min_pairs=cfg.min_pairs, max_pairs=cfg.max_pairs, seed=cfg.seed)
    done, skipped = [], []
    for c in tqdm(comparisons, desc="kendall tau", unit="comparison"):
        missing = [k for k in (c.a, c.b) if k not in tables]
        if missing:
            skipped.append({"name": c.name, "reason": f"no table {', '.join(missing)} in this run"})
            continue
        result = tau_by_bucket(distances(c.a), distances(c.b), pairs.bucket, n_buckets, **opts)
        done.append({"name": c.name, "a": c.a, "b": c.b, "space": c.space, "label": c.label, **result})
    kendall = {
        "tau_variant": "tau-b (scipy.stats.kendalltau), eq. 13 corrected for ties",
        "distance": "euclidean",
        "pairs": len(pairs),
        "self_pairs_excluded": pairs.self_pairs,
        "pairs_per_bucket": [int((pairs.bucket == b).sum()) for b in range(1, n_buckets + 1)],
        "n_buckets": n_buckets,
        "min_pairs": cfg.min_pairs,
        "max_pairs": cfg.max_pairs,
        "seed": cfg.seed,
        "comparisons": done,
        "skipped": skipped,
    }
    separation, samples = _separation(tables, distances, target_group, cfg)
    return Analysis(kendall, separation, samples)


def _separation(tables, distances, target_group: np.ndarray, cfg: AnalysisConfig) -> tuple[dict, dict]:
    if REFERENCE not in tables:
        return {"reference": REFERENCE, "status": f"no table {REFERENCE}", "groups": {}}, {}
    views = separation_views(tables)
    ref = distances(REFERENCE)
    groups, samples = {}, {}
    for group in GROUPS:
        sel = np.flatnonzero(target_group == group)
        k = int(cfg.top_fraction * len(sel))
        entry: dict[str, Any] = {"pairs": int(len(sel)), "selected": k}
        if k < cfg.min_pairs:
            groups[group] = {**entry, "status": "too few pairs", "views": []}
            continue
        order = sel[np.argsort(ref[sel], kind="stable")]
        bottom, top = order[:k], order[-k:]
        rows, samples[group] = [], {}
        for key, space in views:
            d = distances(key)
            t, b = d[top], d[bottom]
            samples[group][key] = (t, b)
            rows.append({
                "view": key, "space": space, "auc": auc_score(t, b), "gap": standardized_gap(t, b),
                "mean_top": float(t.mean()), "mean_bottom": float(b.mean()),
            })
        groups[group] = {**entry, "status": "ok", "views": rows}
    return {"reference": REFERENCE, "top_fraction": cfg.top_fraction, "groups": groups}, samples


def gate_weights(model, fusion: str, bucket: np.ndarray, n_buckets: int) -> dict | None:
    """The mean weight of each expert on the items of each frequency bucket (None for a one-expert model).

    `bucket` [n_items]: each real item's bucket (1 = warmest); an empty bucket gets NaN weights.
    """
    import torch

    if len(model.experts) < 2:
        return None
    with torch.no_grad():
        w = model.expert_weights().float().numpy()[1:]
    return {
        "experts": list(model.experts),
        "fusion": fusion,
        "items": [int((bucket == b).sum()) for b in range(1, n_buckets + 1)],
        "weights": [w[bucket == b].mean(0).tolist() if (bucket == b).any() else [float("nan")] * w.shape[1]
                    for b in range(1, n_buckets + 1)],
    }


def analyze(
    dataset: str | Path,
    text: str | Path,
    id_model: str | Path,
    align_model: str | Path,
    final_model: str | Path,
    out: str | Path,
    **options: Any,
) -> dict:
    """Analysis artifact at `out`: kendall.json, separation.json, PNG plots, report.md, report.html."""
    from padcore.artifacts import atomic_dir, write_json
    from padcore.checkpoint import item_tables, load_model, read_model_meta
    from padcore.dataset import load_dataset
    from padcore.kendall import behaviour_target_pairs
    from padcore.report import tau_summary, write_report

    cfg = AnalysisConfig.from_options(**options)
    ds = load_dataset(dataset)
    models = {"pretrain": (id_model, "pretrain"), "align": (align_model, "align"), "finetune": (final_model, "finetune")}
    models.update({label: (path, "align") for label, path in cfg.extra_align.items()})
    configs = {label: read_model_meta(path, ds, phase)[1]["config"] for label, (path, phase) in models.items()}
    modes = {label: c.get("align_mode", "anchored") for label, c in configs.items()}  # inputs checked before loading
    from padcore.text import load_text

    text_table = np.array(load_text(text, ds))  # a writable copy: torch refuses read-only (memory-mapped) arrays
    tables, sources = {"text": text_table}, {"text": str(text)}
    for label, (path, phase) in tqdm(models.items(), desc="loading tables", unit="model"):
        for part, table in item_tables(path, None if phase == "pretrain" else text_table).items():
            tables[f"{label}:{part}"], sources[f"{label}:{part}"] = table, str(path)
    check_tables(tables, ds.n_items, sources)

    pairs = behaviour_target_pairs(ds)
    print(f"[analyze] {len(pairs):,} behaviour-target pairs from {ds.n_users:,} test sequences", flush=True)
    comparisons = default_comparisons(modes["align"], list(cfg.extra_align))
    result = run_analysis(
        tables, pairs, ds.item_column("group")[pairs.target], ds.meta["protocol"]["buckets"], comparisons, cfg
    )
    result.kendall["dataset_id"] = ds.dataset_id
    gate = gate_weights(load_model(final_model, text_table), configs["finetune"]["fusion"], ds.item_column("bucket")[1:],
                        ds.meta["protocol"]["buckets"])
    with atomic_dir(out) as tmp:
        write_report(tmp, result.kendall, result.separation, result.samples, gate,
                     title=f"{ds.meta.get('source', 'dataset')}: embedding-space analysis", bins=cfg.bins)
        write_json(tmp / "meta.json", {
            "kind": "analysis", "dataset_id": ds.dataset_id, "item_hash": ds.item_hash,
            "inputs": {k: str(Path(p).resolve()) for k, p in
                       {"dataset": dataset, "text": text, **{k: p for k, (p, _) in models.items()}}.items()},
            "config": asdict(cfg),
        })
    print(tau_summary(result.kendall), flush=True)
    print(f"[analyze] wrote {out}", flush=True)
    return {"dataset_id": ds.dataset_id, "pairs": len(pairs), **result.scalars(), "kendall": result.kendall,
            "separation": result.separation}
