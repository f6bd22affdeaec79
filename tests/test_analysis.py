"""Analysis: separation scores, table checks, comparisons on synthetic tables, report files."""

import json

import numpy as np
import pandas as pd
import pytest

from padcore.analysis import (
    AnalysisConfig,
    analyze,
    auc_score,
    check_tables,
    default_comparisons,
    run_analysis,
    standardized_gap,
)
from padcore.artifacts import write_json
from padcore.dataset import Protocol, RawData, build_dataset, write_dataset
from padcore.errors import PadError
from padcore.kendall import behaviour_target_pairs
from padcore.report import tau_summary, write_report


def brute_auc(top, bottom) -> float:
    return float(np.mean([(t > b) + 0.5 * (t == b) for t in top for b in bottom]))


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    top, bottom = rng.integers(0, 5, 30).astype(float), rng.integers(0, 4, 25).astype(float)
    assert auc_score(top, bottom) == pytest.approx(brute_auc(top, bottom), abs=1e-12)


def test_separation_scores_sanity():
    rng = np.random.default_rng(1)
    same_a, same_b = rng.normal(size=4000), rng.normal(size=4000)
    assert auc_score(same_a, same_b) == pytest.approx(0.5, abs=0.02)
    assert standardized_gap(same_a, same_b) == pytest.approx(0.0, abs=0.05)
    far, near = rng.normal(10, 1, 500), rng.normal(0, 1, 500)
    assert auc_score(far, near) == 1.0
    assert auc_score(near, far) == 0.0
    pooled = np.sqrt((far.var(ddof=1) + near.var(ddof=1)) / 2)  # equal sizes
    assert standardized_gap(far, near) == pytest.approx((far.mean() - near.mean()) / pooled)
    assert standardized_gap(np.ones(5), np.ones(5)) is None


def test_tables_with_wrong_rows_or_values_are_refused():
    good = np.zeros((11, 4))
    check_tables({"a": good}, 10)
    with pytest.raises(PadError, match=r"'finetune:llm.text' from /m/final: 10 rows, expected n_items\+1 = 11"):
        check_tables({"a": good, "finetune:llm.text": np.zeros((10, 4))}, 10, {"finetune:llm.text": "/m/final"})
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(PadError, match="'text'.*NaN"):
        check_tables({"text": bad}, 10)


def test_unknown_or_bad_options_are_refused():
    with pytest.raises(PadError, match="unknown analysis option.*'bogus'"):
        AnalysisConfig.from_options(bogus=1)
    with pytest.raises(PadError, match="top_fraction"):
        AnalysisConfig(top_fraction=0.7)
    with pytest.raises(PadError, match="extra_align.*'align'"):
        AnalysisConfig(extra_align={"align": "/x"})


def synthetic_dataset(n_users=500, n_items=60, seed=0, buckets=5):
    """Sessions with Zipf-like popularity, so buckets 1..5 all hold items."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1)
    rows = []
    for u in range(n_users):
        for t, item in enumerate(rng.choice(n_items, size=rng.integers(5, 12), p=pop / pop.sum())):
            rows.append((f"u{u}", f"i{item}", t))
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    items = pd.DataFrame({"item": [f"i{i}" for i in range(n_items)], "text": [f"item {i}" for i in range(n_items)]})
    raw = RawData(inter, items, "interactions.csv", "items.csv", "synthetic")
    return build_dataset(raw, Protocol(max_len=8, min_len=5, buckets=buckets))


@pytest.fixture(scope="module")
def run():
    """A synthetic run's tables with known relations to the phase-1 ID table."""
    ds = synthetic_dataset()
    rng = np.random.default_rng(2)
    n = ds.n_items + 1
    ids = rng.normal(size=(n, 16))
    tables = {
        "pretrain:id": ids,
        "finetune:id.id": 2.5 * ids,  # same distance order: tau 1
        "finetune:align.id": rng.normal(size=(n, 16)),  # unrelated: tau ~ 0
        "align:align.id": ids + 0.3 * rng.normal(size=(n, 16)),
        "text": np.hstack([ids, np.zeros((n, 8))]),  # text distances = ID distances: AUC 1
        "finetune:llm.text": rng.normal(size=(n, 24)),  # unrelated
        "finetune:align.text": rng.normal(size=(n, 12)),
    }  # no "align:align.text": that comparison must be listed as skipped
    pairs = behaviour_target_pairs(ds)
    cfg = AnalysisConfig(min_pairs=20)
    result = run_analysis(tables, pairs, ds.item_column("group")[pairs.target], 5, default_comparisons(), cfg)
    return ds, tables, pairs, result


def test_comparisons_follow_the_table_relations(run):
    ds, _, pairs, result = run
    by_name = {c["name"]: c for c in result.kendall["comparisons"]}
    same = by_name["pretrain:id vs finetune:id.id"]
    assert same["overall"]["tau"] == pytest.approx(1.0)
    assert all(b["tau"] == pytest.approx(1.0) for b in same["buckets"] if b["status"] == "ok")
    assert abs(by_name["pretrain:id vs finetune:align.id"]["overall"]["tau"]) < 0.1
    assert 0.3 < by_name["pretrain:id vs align:align.id"]["overall"]["tau"] < 1.0
    assert [s["name"] for s in result.kendall["skipped"]] == ["text vs align:align.text"]
    per_bucket = [b["pairs"] for b in same["buckets"]]
    assert per_bucket == result.kendall["pairs_per_bucket"] and sum(per_bucket) == len(pairs)


def test_separation_on_cold_and_warm_targets(run):
    _, _, _, result = run
    for group in ("cold", "warm"):
        g = result.separation["groups"][group]
        assert g["status"] == "ok" and g["selected"] == int(0.1 * g["pairs"])
        views = {v["view"]: v for v in g["views"]}
        assert "pretrain:id" not in views
        assert views["text"]["auc"] == 1.0 and views["finetune:id.id"]["auc"] == 1.0
        unrelated = views["finetune:llm.text"]  # few distinct items: pair-level AUC varies widely around 0.5
        assert 0.2 < unrelated["auc"] < 0.8 and (unrelated["auc"] > 0.5) == (unrelated["gap"] > 0)
        top, bottom = result.samples[group]["text"]
        assert len(top) == len(bottom) == g["selected"] and top.min() >= bottom.max()


def test_too_few_pairs_are_reported_everywhere(tmp_path, run):
    ds, tables, pairs, _ = run
    groups = ds.item_column("group")[pairs.target]
    result = run_analysis(tables, pairs, groups, 7, default_comparisons(), AnalysisConfig(min_pairs=400))
    buckets = result.kendall["comparisons"][0]["buckets"]
    assert [b["bucket"] for b in buckets] == list(range(1, 8))
    assert {b["status"] for b in buckets[5:]} == {"too few pairs"} and buckets[6]["pairs"] == 0
    assert result.separation["groups"]["cold"]["status"] == "too few pairs"
    write_report(tmp_path, result.kendall, result.separation, result.samples)
    md = (tmp_path / "report.md").read_text()
    assert "too few (0)" in md and "too few pairs, not analysed" in md
    assert "fewer than 400 pairs" in (tmp_path / "report.html").read_text()
    assert not (tmp_path / "pairs_cold.png").exists()
    assert json.loads((tmp_path / "kendall.json").read_text())["comparisons"][0]["buckets"][6]["status"] == "too few pairs"


def test_report_files(tmp_path, run):
    _, _, _, result = run
    pngs = write_report(tmp_path, result.kendall, result.separation, result.samples, title="synthetic")
    assert sorted(p.name for p in pngs) == ["pairs_cold.png", "pairs_warm.png", "tau_collaborative.png", "tau_text.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    k = json.loads((tmp_path / "kendall.json").read_text())
    assert {"tau_variant", "pairs", "pairs_per_bucket", "n_buckets", "comparisons", "skipped"} <= set(k)
    assert {"name", "a", "b", "space", "label", "overall", "buckets"} <= set(k["comparisons"][0])
    assert {"bucket", "tau", "pairs", "used", "status"} == set(k["comparisons"][0]["buckets"][0])
    s = json.loads((tmp_path / "separation.json").read_text())
    assert {"auc", "gap", "view", "space"} <= set(s["groups"]["cold"]["views"][0])
    page = (tmp_path / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 4
    md = (tmp_path / "report.md").read_text()
    assert "| comparison | space | all | 1 | 2 | 3 | 4 | 5 |" in md
    assert "| pretrain:id vs finetune:id.id | collaborative | 1.000 |" in md
    assert "1 = warm … 5 = cold" in md
    summary = tau_summary(k)
    assert "bucket 1 = warm ... 5 = cold" in summary and "pretrain:id vs finetune:id.id" in summary


def test_analyze_refuses_models_of_another_dataset(tmp_path):
    ds = synthetic_dataset(n_users=60)
    write_dataset(ds, tmp_path / "dataset")
    model = tmp_path / "id"
    model.mkdir()
    write_json(model / "meta.json", {"kind": "model", "phase": "pretrain", "dataset_id": "0123456789abcdef"})
    with pytest.raises(PadError, match=r"id/meta.json: made from dataset 0123456789abcdef"):
        analyze(tmp_path / "dataset", tmp_path / "text", model, model, model, tmp_path / "out")
    assert not (tmp_path / "out").exists()
