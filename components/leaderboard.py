"""Component: the Table-2-style leaderboard of a run — SASRec, the baselines, PAD (`components.reports`)."""

from typing import List

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("cpu")
def leaderboard(
    dataset: Input[Dataset],
    id_model: Input[Model],
    model: Input[Model],
    baselines: Input[List[Model]],
    metrics: Output[Metrics],
    results: Output[Markdown],
    plots: Output[HTML],
) -> None:
    """Every model's test HR@10 / nDCG@10, overall and per warm / median / cold group and bucket; Impr. = PAD vs SASRec."""
    from components.reports import publish_leaderboard

    folders = [id_model.path, *(b.path for b in baselines), model.path]
    publish_leaderboard(dataset.path, folders, metrics, results, plots)
