"""Files of the analysis artifact: kendall.json, separation.json, PNG plots,
report.md and report.html (the plots embedded as base64 PNGs)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

import numpy as np

from padcore.artifacts import write_json

Table = tuple[list[str], list[list[str]]]  # header, rows
SPACES = {"collaborative": "collaborative (ID) embeddings vs the phase-1 ID table",
          "text": "text embeddings vs the original text table"}


def _bucket_axis(n: int) -> str:
    return f"target-item frequency bucket (1 = warm … {n} = cold)"


def _cell(t: dict) -> str:
    if t["status"] == "too few pairs":
        return f"too few ({t['pairs']})"
    if t["tau"] is None:
        return "undefined"
    return f"{t['tau']:.3f}" + ("†" if t["used"] < t["pairs"] else "")


def tau_table(kendall: dict) -> Table:
    n = kendall["n_buckets"]
    head = ["comparison", "space", "all", *(str(b) for b in range(1, n + 1))]
    rows = [["pairs", "", f"{kendall['pairs']:,}", *(f"{p:,}" for p in kendall["pairs_per_bucket"])]]
    for c in kendall["comparisons"]:
        rows.append([c["name"], c["space"], _cell(c["overall"]), *(_cell(b) for b in c["buckets"])])
    return head, rows


def separation_tables(separation: dict) -> dict[str, Table]:
    head = ["view", "space", "AUC", "gap (d)", "mean top", "mean bottom"]
    out = {}
    for group, g in separation["groups"].items():
        rows = [[v["view"], v["space"], f"{v['auc']:.3f}", "—" if v["gap"] is None else f"{v['gap']:+.3f}",
                 f"{v['mean_top']:.4g}", f"{v['mean_bottom']:.4g}"] for v in g["views"]]
        out[group] = (head, rows)
    return out


def markdown_table(table: Table) -> str:
    head, rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_table(table: Table) -> str:
    head, rows = table
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table border='1' cellspacing='0' cellpadding='3'><tr>{th}</tr>{trs}</table>"


def tau_summary(kendall: dict) -> str:
    """A few plain-text lines: tau overall and per bucket for each comparison ('-' = not reported)."""
    n = kendall["n_buckets"]
    width = max([len(c["name"]) for c in kendall["comparisons"]] + [10])
    head = f"{'comparison':<{width}} {'all':>7}" + "".join(f"{b:>7}" for b in range(1, n + 1))

    def num(t: dict) -> str:
        return f"{t['tau']:>7.3f}" if t["tau"] is not None else f"{'-':>7}"

    lines = [f"Kendall's tau-b of behaviour-target distances (bucket 1 = warm ... {n} = cold)", head]
    for c in kendall["comparisons"]:
        lines.append(f"{c['name']:<{width}} {num(c['overall'])}" + "".join(num(b) for b in c["buckets"]))
    lines += [f"skipped: {s['name']} ({s['reason']})" for s in kendall["skipped"]]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tau(kendall: dict, space: str, path: Path) -> bool:
    """Tau per bucket, one line per comparison of `space` (like Fig. 6); False when there is none."""
    comps = [c for c in kendall["comparisons"] if c["space"] == space]
    if not comps:
        return False
    plt = _plt()
    n = kendall["n_buckets"]
    x = np.arange(1, n + 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for c in comps:
        y = [np.nan if b["tau"] is None else b["tau"] for b in c["buckets"]]
        overall = c["overall"]["tau"]
        ax.plot(x, y, marker="o", label=c["label"] + ("" if overall is None else f"  (all pairs: {overall:.3f})"))
    ax.set_xticks(x)
    ax.set_xlabel(_bucket_axis(n))
    ax.set_ylabel("Kendall's tau-b of pair distances")
    ax.set_title(f"Kendall's tau per bucket: {SPACES[space]}", fontsize=10)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylim(min(-0.05, np.nanmin([b["tau"] or 0 for c in comps for b in c["buckets"]]) - 0.05), 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    short = [str(b) for b, p in enumerate(kendall["pairs_per_bucket"], 1) if p < kendall["min_pairs"]]
    if short:
        fig.text(0.01, -0.02, f"not reported: bucket(s) {', '.join(short)} have fewer than "
                 f"{kendall['min_pairs']} pairs", fontsize=8)
    _save(fig, path)
    return True


def plot_pairs(samples: dict[str, tuple[np.ndarray, np.ndarray]], rows: Sequence[dict], group: str,
               top_fraction: float, reference: str, bins: int, path: Path) -> None:
    """Histograms like Fig. 3 / Fig. 7: per view, the distances of the far and the near pairs."""
    plt = _plt()
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False)
    pct = f"{100 * top_fraction:g}%"
    for ax, row in zip(axes.flat, rows):
        top, bottom = samples[row["view"]]
        edges = np.histogram_bin_edges(np.concatenate([top, bottom]), bins=bins)
        ax.hist(top, bins=edges, density=True, alpha=0.55, color="tab:red", label=f"top-{pct} (far in ID)")
        ax.hist(bottom, bins=edges, density=True, alpha=0.55, color="tab:blue", label=f"bottom-{pct} (near in ID)")
        gap = "" if row["gap"] is None else f", d={row['gap']:+.2f}"
        ax.set_title(f"{row['view']}\nAUC={row['auc']:.3f}{gap}", fontsize=9)
        ax.set_xlabel("Euclidean distance", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{group} target items: pairs with the {pct} largest / smallest {reference} distance, "
                 "under each embedding table\n(text = the original text table; model:expert.part = a phase's table)",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def gate_table(gate: dict) -> Table:
    head = ["bucket", "items", *gate["experts"]]
    rows = [[str(b), f"{n:,}", *(f"{x:.3f}" for x in w)]
            for b, (n, w) in enumerate(zip(gate["items"], gate["weights"]), 1)]
    return head, rows


def plot_gate(gate: dict, path: Path) -> None:
    """Stacked bars: the mean weight of each expert on the items of each frequency bucket."""
    plt = _plt()
    w = np.array(gate["weights"])
    x = np.arange(1, len(w) + 1)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    bottom = np.zeros(len(w))
    for e, name in enumerate(gate["experts"]):
        ax.bar(x, w[:, e], bottom=bottom, label=f"{name} expert")
        bottom += w[:, e]
    ax.set_xticks(x)
    ax.set_xlabel(_bucket_axis(len(w)))
    ax.set_ylabel("mean fusion weight")
    ax.set_title(f"Phase 3: what each expert weighs per bucket ({gate['fusion']} fusion)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    _save(fig, path)


def write_report(folder: str | Path, kendall: dict, sep: dict, samples: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]],
                 gate: dict | None = None, title: str = "embedding-space analysis", bins: int = 40) -> list[Path]:
    """Write every file of the analysis into `folder`; returns the PNGs written.

    `samples`: group -> view -> (far, near) pair distances, for the histograms;
    `gate`: the final model's mean expert weights per bucket (gate.json, gate.png).
    """
    folder = Path(folder)
    write_json(folder / "kendall.json", kendall)
    write_json(folder / "separation.json", sep)
    pngs = []
    if gate is not None:
        write_json(folder / "gate.json", gate)
        plot_gate(gate, folder / "gate.png")
        pngs.append(folder / "gate.png")
    pngs += [folder / f"tau_{space}.png" for space in SPACES if plot_tau(kendall, space, folder / f"tau_{space}.png")]
    for group, g in sep.get("groups", {}).items():
        if g["views"]:
            plot_pairs(samples[group], g["views"], group, sep["top_fraction"], sep["reference"], bins, folder / f"pairs_{group}.png")
            pngs.append(folder / f"pairs_{group}.png")
    (folder / "report.md").write_text(report_markdown(title, kendall, sep, gate, pngs))
    (folder / "report.html").write_text(report_html(title, kendall, sep, gate, pngs))
    return pngs


def _intro(kendall: dict, sep: dict) -> list[str]:
    n = kendall["n_buckets"]
    lines = [
        f"Pairs: every (behaviour item, target item) pair of the test sequences, {kendall['pairs']:,} in all; a pair's "
        f"bucket is its target item's training-frequency bucket (1 = warm … {n} = cold).",
        f"Kendall's tau: {kendall['tau_variant']}, between the pairs' Euclidean distances under two tables "
        f"(1 = same distance order, 0 = unrelated). Buckets with fewer than {kendall['min_pairs']} pairs are shown "
        "as 'too few (n)'." + (f" † = computed on a seeded subsample of {kendall['max_pairs']:,} pairs."
                               if kendall["pairs"] > kendall["max_pairs"] else ""),
    ]
    if sep.get("groups"):
        pct = f"{100 * sep['top_fraction']:g}%"
        lines.append(
            f"Separation (Fig. 3 / 7): among pairs with a cold (or warm) target, the {pct} with the largest and the "
            f"{pct} with the smallest {sep['reference']} distance; per table, AUC = P(a far pair is farther than a near "
            "pair) (0.5 = not separated, 1 = fully) and gap = difference of means over the pooled std."
        )
    return lines


def _sep_status(group: str, g: dict) -> str:
    return f"{group}: {g['pairs']:,} pairs, top/bottom sets of {g['selected']:,}" + (
        "" if g["status"] == "ok" else f" — {g['status']}, not analysed")


def _gate_intro(gate: dict) -> str:
    return (f"Phase 3's {gate['fusion']} fusion: the mean weight each expert gets on the items of each frequency "
            "bucket (1 = warm); a text expert taking over on cold buckets is what the gate is for.")


def report_markdown(title: str, kendall: dict, sep: dict, gate: dict | None, pngs: Sequence[Path]) -> str:
    parts = [f"# {title}", "", *(f"{line}\n" for line in _intro(kendall, sep))]
    if gate is not None:
        parts += ["## Expert weights per bucket", "", _gate_intro(gate), "", markdown_table(gate_table(gate))]
    parts += ["## Kendall's tau per target-item bucket", "", markdown_table(tau_table(kendall))]
    parts += [f"Skipped: {s['name']} ({s['reason']})\n" for s in kendall["skipped"]]
    if sep.get("groups"):
        parts += ["## Separation of far and near collaborative pairs", ""]
        tables = separation_tables(sep)
        for group, g in sep["groups"].items():
            parts += [f"**{_sep_status(group, g)}**", ""]
            if g["views"]:
                parts.append(markdown_table(tables[group]))
    parts += ["## Plots", "", *(f"- `{p.name}`" for p in pngs), "", "(embedded in `report.html`)", ""]
    return "\n".join(parts)


def report_html(title: str, kendall: dict, sep: dict, gate: dict | None, pngs: Sequence[Path]) -> str:
    body = [f"<h2>{html.escape(title)}</h2>", *(f"<p>{html.escape(line)}</p>" for line in _intro(kendall, sep))]
    if gate is not None:
        body += ["<h3>Expert weights per bucket</h3>", f"<p>{html.escape(_gate_intro(gate))}</p>",
                 html_table(gate_table(gate))]
    body += ["<h3>Kendall's tau per target-item bucket</h3>", html_table(tau_table(kendall))]
    body += [f"<p>Skipped: {html.escape(s['name'])} ({html.escape(s['reason'])})</p>" for s in kendall["skipped"]]
    for p in pngs:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        body.append(f"<figure><img alt='{html.escape(p.stem)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(p.name)}</figcaption></figure>")
    tables = separation_tables(sep) if sep.get("groups") else {}
    for group, g in sep.get("groups", {}).items():
        body.append(f"<h3>Separation, {html.escape(_sep_status(group, g))}</h3>")
        if g["views"]:
            body.append(html_table(tables[group]))
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title></head><body>" + "\n".join(body) + "</body></html>\n")
