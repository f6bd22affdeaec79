"""`pad recommend`: the same order as evaluation, Parquet rows, batches bounded in memory, histories by id."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from pad.cli import main
from padcore import trainer
from padcore.batches import split_tensors
from padcore.checkpoint import load_model
from padcore.config import TrainConfig
from padcore.dataset import load_dataset
from padcore.errors import PadError
from padcore.metrics import UNREACHABLE
from padcore.recommend import ranker_from_artifacts, read_sequences
from padcore.steps import recommend
from padcore.text import load_text
from padcore.trainer import rank_split


def histories_csv(path, ds, drop_last: int):
    """Every user's items but the last `drop_last`, as user,item,timestamp rows in shuffled order."""
    key = ds.item_column("item")
    rows = [(u, key[i], t) for n, u in enumerate(ds.users) for t, i in enumerate(ds.sequence(n)[: len(ds.sequence(n)) - drop_last])]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).sample(frac=1.0, random_state=0)
    df.to_csv(path, index=False)
    return path


def test_recommendations_follow_the_evaluation_ranking(shop, tmp_path):
    """For each test user: the target sits in the top-20 exactly at its evaluation rank, or is absent."""
    ds = load_dataset(shop["new_dataset"])
    model = load_model(shop["new_model"], load_text(shop["new_text"], ds))
    config = json.loads((shop["new_model"] / "config.json").read_text())
    test = split_tensors(ds, config["max_len"]).test
    ranks = rank_split(model, test, TrainConfig(), torch.device("cpu"))
    assert 0 < (ranks < 20).sum() < len(ranks)  # both cases occur
    out = tmp_path / "rec.parquet"
    rc = main(["recommend", "--model", str(shop["new_model"]), "--dataset", str(shop["new_dataset"]),
               "--text", str(shop["new_text"]), "--sequences", str(histories_csv(tmp_path / "h.csv", ds, 1)),
               "--k", "20", "--out", str(out)])
    assert rc == 0
    rec = pq.read_table(out).to_pandas()
    target = dict(zip(ds.users, ds.item_column("item")[test.targets.numpy()]))
    for user, rank in zip(ds.users, ranks):
        mine = rec[rec["user"] == user]
        hit = mine[mine["item"] == target[user]]
        if rank < 20:
            assert hit["rank"].tolist() == [rank + 1], user
        else:
            assert hit.empty, user
        if rank == UNREACHABLE:
            assert target[user] in set(ds.item_column("item")[ds.sequence(list(ds.users).index(user))[:-1]])


def test_dataset_users_as_parquet_against_brute_force(shop, tmp_path, capsys):
    out = tmp_path / "rec.parquet"
    assert main(["recommend", "--model", str(shop["new_model"]), "--dataset", str(shop["new_dataset"]),
                 "--text", str(shop["new_text"]), "--k", "5", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    table = pq.read_table(out)
    assert [(f.name, str(f.type)) for f in table.schema] == [("user", "string"), ("rank", "int32"),
                                                             ("item", "string"), ("score", "float")]
    assert json.loads(table.schema.metadata[b"pad"])["k"] == 5
    rec = table.to_pandas()
    ds = load_dataset(shop["new_dataset"])
    assert len(rec) == 5 * ds.n_users and rec["rank"].tolist() == [1, 2, 3, 4, 5] * ds.n_users
    model = load_model(shop["new_model"], load_text(shop["new_text"], ds)).eval()
    key = ds.item_column("item")
    for n in (0, 7, ds.n_users - 1):  # brute force: PadModel scores over the whole history, sorted by hand
        seq = ds.sequence(n)
        with torch.no_grad():
            scores = model.scores(torch.tensor(seq[-10:], dtype=torch.long)[None])[0].numpy()
        order = sorted((i for i in range(1, ds.n_items + 1) if i not in set(seq)), key=lambda i: (-scores[i], i))[:5]
        mine = rec[rec["user"] == ds.users[n]]
        assert mine["item"].tolist() == [key[i] for i in order]
        assert np.allclose(mine["score"], scores[order], atol=1e-5)


def test_batches_bound_the_score_matrix(shop, monkeypatch):
    ds = load_dataset(shop["new_dataset"])
    ranker = ranker_from_artifacts(shop["new_model"], ds, shop["new_text"])
    users = ranker.dataset_users(ds)
    assert ranker.table is not None  # PAD's fusion is linear: its scores are taken a block of items at a time
    monkeypatch.setattr(trainer, "CACHE_BUDGET", 5 * 1024)  # blocks of 5 items for a batch of 1024 users
    blocked = np.concatenate([ranker.top_k(i, h, 10)[0] for _, i, h in ranker.batches(users)])
    ranker.table = None  # as a model that is not linear: each batch's whole score matrix, bounded by max_cells
    cells = len(ranker.keys) * 7  # room for 7 users' scores at a time
    batches = list(ranker.batches(users, batch_users=1024, max_cells=cells))
    assert max(inputs.shape[0] for _, inputs, _ in batches) == 7
    assert sum(inputs.shape[0] for _, inputs, _ in batches) == ds.n_users
    whole = np.concatenate([ranker.top_k(i, h, 10)[0] for _, i, h in batches])
    assert np.array_equal(whole, blocked)


def test_histories_by_id_and_unknown_items(shop, tmp_path, capsys):
    path = tmp_path / "s.parquet"
    pd.DataFrame({"user": ["a", "a", "b", "a", "c"], "item": ["i1", "nope", "zzz", "i2", "i3"],
                  "timestamp": [3, 1, 1, 2, 9]}).to_parquet(path)
    users, seqs = read_sequences(str(path))
    assert users.tolist() == ["a", "b", "c"] and [s.tolist() for s in seqs] == [["nope", "i2", "i1"], ["zzz"], ["i3"]]
    out = tmp_path / "r.parquet"
    assert main(["recommend", "--model", str(shop["new_model"]), "--dataset", str(shop["new_dataset"]), "--text",
                 str(shop["new_text"]), "--sequences", str(path), "--k", "3", "--out", str(out)]) == 0
    assert "left out 2 interactions" in capsys.readouterr().out
    rec = pq.read_table(out).to_pandas()
    assert sorted(set(rec["user"])) == ["a", "c"]  # b knew nothing the model knows
    assert not set(rec.loc[rec["user"] == "a", "item"]) & {"i1", "i2"}


@pytest.mark.parametrize("args, message", [
    (["--model", "{new_model}", "--k", "3"], "needs the dataset it was trained on"),
    (["--model", "{new_model}", "--dataset", "{new_dataset}"], "pass the text artifact"),
    (["--model", "{new_model}", "--dataset", "{old_dataset}", "--text", "{new_text}"], "trained on another item set"),
    (["--model", "{new_model}", "--dataset", "{new_dataset}", "--text", "{old_text}"], "text"),
    (["--model", "{new_id_model}", "--dataset", "{new_dataset}", "--k", "0"], "k is 0"),
    (["--model", "{new_id_model}", "--dataset", "{new_dataset}", "--sequences", "{missing}"], "missing.csv: file not found"),
])
def test_bad_input_is_named(shop, tmp_path, capsys, args, message):
    paths = {**{k: str(v) for k, v in shop.items()}, "missing": str(tmp_path / "missing.csv")}
    out = tmp_path / "r.parquet"
    assert main(["recommend", *[a.format(**paths) for a in args], "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".r.parquet*"))


def test_a_store_version_ranks_another_dataset_by_id(shop, tmp_path):
    """Last month's model, published, ranks this month's users: new items are left out of inputs and answers."""
    from padcore.store import Store

    store = Store(tmp_path / "store")
    version = store.publish(shop["old_model"], shop["old_dataset"], shop["old_text"]).version
    out = tmp_path / "r.parquet"
    summary = recommend(store.open(version), out, dataset=shop["new_dataset"], k=10)
    new = load_dataset(shop["new_dataset"])
    old_items = set(load_dataset(shop["old_dataset"]).items["item"])
    assert summary["unknown_interactions"] == int(np.isin(new.item_column("item")[new.flat], list(old_items),
                                                          invert=True).sum()) > 0
    assert set(pq.read_table(out).to_pandas()["item"]) <= old_items
    with pytest.raises(PadError, match="nothing to rank"):
        recommend(store.open(version), out)
