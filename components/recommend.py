"""Component: top-K recommendations for every user of the dataset (`padcore.steps.recommend`)."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.base import pad_component


@pad_component("cpu")
def recommend(
    dataset: Input[Dataset],
    text: Input[Dataset],
    model: Input[Model],
    recommendations: Output[Dataset],
    metrics: Output[Metrics],
    k: int = 10,
) -> None:
    """Write the top `k` items per user (history excluded) as Parquet rows user, rank, item, score."""
    from components.reports import log_metrics
    from padcore.steps import recommend as step

    summary = step(model.path, recommendations.path, dataset=dataset.path, text=text.path, k=k)
    recommendations.metadata.update({"format": "parquet", "columns": "user,rank,item,score", "k": k})
    log_metrics(metrics, {name: summary[name] for name in ("users", "rows", "users_without_known_items")})
