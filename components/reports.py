"""The outputs the KFP UI renders for a step: scalar metrics, Markdown tables, HTML plots.

Training metrics come from a model artifact's `metrics.json` (values in
percent): `test` holds `hr@10`, `ndcg@10`, `groups` (warm/median/cold) and
`buckets` (1 = warmest).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Sequence

GROUPS = ("warm", "median", "cold")
METRICS = ("hr@10", "ndcg@10")
LABELS = {"hr@10": "HR@10", "ndcg@10": "nDCG@10"}

Row = tuple[str, dict]  # (model name, metrics.json)


def read_metrics(model_dir: str) -> dict:
    """A model artifact's `metrics.json`."""
    return json.loads((Path(model_dir) / "metrics.json").read_text())


def scalar_metrics(m: dict) -> dict[str, float]:
    """Test HR@10 / nDCG@10 overall and per group, plus the epochs, as flat names."""
    test = m["test"]
    out = {name: float(test[name]) for name in METRICS}
    for group in GROUPS:
        for name in METRICS:
            out[f"{group}-{name}"] = float(test["groups"][group][name])
    for key in ("best_epoch", "epochs", "wall_seconds"):
        if key in m:
            out[key] = float(m[key])
    return out


def log_metrics(artifact, values: dict[str, float]) -> None:
    """Log each finite value on a KFP `Metrics` artifact; a NaN or infinite one is left out, with a line saying so.

    The Go launcher reads the step's executor output with protojson, which takes strict JSON only: Python writes
    inf as `Infinity`, which fails the step on a cluster (kfp.local's Python reader passes it).
    """
    for name, value in values.items():
        value = float(value)
        if math.isfinite(value):
            artifact.log_metric(name, round(value, 4))
        else:
            print(f"[metrics] {name} is {value}: not a number KFP can record, left out", flush=True)


def _improvement(base: float, new: float) -> str:
    return f"{100.0 * (new - base) / base:+.2f}%" if base else "n/a"


def _ranked(vals: list[float]) -> list[str]:
    """Cells as the paper's Table 2 marks them (with three or more models): best bold, second underlined."""
    cells = [f"{v:.4f}" for v in vals]
    if len(vals) >= 3:
        order = sorted(range(len(vals)), key=lambda k: -vals[k])
        cells[order[0]] = f"**{cells[order[0]]}**"
        cells[order[1]] = f"<u>{cells[order[1]]}</u>"
    return cells


def results_markdown(dataset: str, rows: Sequence[Row]) -> str:
    """A Table-2-like result block (one column per model, Impr. of the last over the first),
    then the warm / median / cold breakdown of the paper's Figure 2."""
    names = [name for name, _ in rows]
    with_impr = len(rows) > 1
    head = ["Dataset", "Metric", *names] + (["Impr."] if with_impr else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, metric in enumerate(METRICS):
        vals = [float(m["test"][metric]) for _, m in rows]
        cells = [dataset if i == 0 else "", LABELS[metric], *_ranked(vals)]
        if with_impr:
            cells.append(_improvement(vals[0], vals[-1]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Per target-item group (test users whose target item is warm / median / cold):", ""]
    head = ["Group", "Users"] + [f"{n} {LABELS[metric]}" for metric in METRICS for n in names]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for group in GROUPS:
        users = rows[-1][1]["test"]["groups"][group].get("users", "")
        cells = [group, str(users)]
        cells += [f"{float(m['test']['groups'][group][metric]):.4f}" for metric in METRICS for _, m in rows]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def buckets_html(title: str, rows: Sequence[Row]) -> str:
    """A self-contained HTML page: HR@10 and nDCG@10 per frequency bucket, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    buckets = [b["bucket"] for b in rows[0][1]["test"]["buckets"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(rows)
    for ax, metric in zip(axes, METRICS):
        for k, (name, m) in enumerate(rows):
            vals = [float(b[metric]) for b in m["test"]["buckets"]]
            ax.bar(np.arange(len(buckets)) + k * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(buckets)) + width * (len(rows) - 1) / 2, [str(b) for b in buckets])
        ax.set_xlabel("target-item frequency bucket (1 = warmest)")
        ax.set_ylabel(f"{LABELS[metric]} (%)")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    image = _png(fig)
    plt.close(fig)
    return page(title, [f'<img alt="{html.escape(title)}" src="data:image/png;base64,{image}">'])


def page(title: str, body: Sequence[str]) -> str:
    """A minimal standalone HTML document."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h3>{html.escape(title)}</h3>" + "\n".join(body) + "</body></html>\n"
    )


def write_text(artifact, text: str) -> None:
    """Write a Markdown or HTML artifact's file."""
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def model_rows(folders: Sequence[str]) -> list[Row]:
    """(name in a results table, metrics.json) of each model artifact."""
    from padcore.checkpoint import model_title

    return [(model_title(folder), read_metrics(folder)) for folder in folders]


def dataset_name(dataset_dir: str) -> str:
    return json.loads((Path(dataset_dir) / "meta.json").read_text()).get("source", "dataset")


def publish_training(dataset_dir: str, models: Sequence[str], metrics, results, plots) -> None:
    """UI outputs of a training step; `models` are model folders to compare, this step's last."""
    rows = model_rows(models)
    name = dataset_name(dataset_dir)
    log_metrics(metrics, scalar_metrics(rows[-1][1]))
    write_text(results, results_markdown(name, rows))
    write_text(plots, buckets_html(f"{name}: test metrics per target-item frequency bucket", rows))


def publish_leaderboard(dataset_dir: str, models: Sequence[str], metrics, results, plots) -> None:
    """UI outputs of the leaderboard: every model's test metrics (the first is the reference of Impr.)."""
    rows = model_rows(models)
    name = dataset_name(dataset_dir)
    for title, m in rows:
        log_metrics(metrics, {f"{title}: {LABELS[k]}": m["test"][k] for k in METRICS})
    write_text(results, results_markdown(name, rows))
    write_text(plots, buckets_html(f"{name}: every model's test metrics per target-item frequency bucket", rows))


def publish_analysis(folder: str, result: dict, metrics, report, plots) -> None:
    """UI outputs of the analysis step: its scalar numbers, and its own Markdown and (self-contained) HTML report."""
    folder = Path(folder)
    log_metrics(metrics, {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    write_text(report, (folder / "report.md").read_text())
    write_text(plots, (folder / "report.html").read_text())


def compare_markdown(result: dict) -> str:
    """The champion/challenger table and the decision (a `padcore.compare.compare` result)."""
    rows = [("New model", result["challenger"])]
    if result["champion"]:
        rows.insert(0, (f"Champion `{result['champion_version']}`", result["champion"]))
    head = ["Model", *(LABELS[m] for m in METRICS), *(f"{g} {LABELS[m]}" for g in GROUPS for m in METRICS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows:
        cells = [name, *(f"{m[k]:.4f}" for k in METRICS), *(f"{m['groups'][g][k]:.4f}" for g in GROUPS for k in METRICS)]
        lines.append("| " + " | ".join(cells) + " |")
    verdict = "**publish**" if result["publish"] else "**keep the champion**"
    notes = [f"Decision: {verdict} — {result['reason']}."]
    if result["champion"]:
        notes.append(f"The champion knows {result['champion_items_known']:,} of the new items; "
                     f"{result['test_targets_new_to_champion']:,} test targets are items it never saw (never its hits).")
    return "\n".join(["### Champion vs new model (test split, full ranking, %)", "", *lines, "", *notes]) + "\n"
