"""Component: the new model against the store's champion on the new test split (`padcore.steps.compare`)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("cpu")
def compare(
    dataset: Input[Dataset],
    text: Input[Dataset],
    model: Input[Model],
    comparison: Output[Artifact],
    metrics: Output[Metrics],
    summary: Output[Markdown],
    store: str,
    min_gain: float = 0.0,
    force: bool = False,
) -> str:
    """Rank the test split with both models; decide `publish` or `keep`.

    Args:
        store: model store, a folder or gs://bucket/prefix; its champion is the one to beat.
        min_gain: relative nDCG@10 gain over the champion needed to publish (0.02 = 2 %).
        force: publish whatever the comparison says.
    Returns the decision, `publish` or `keep` (one output: kfp.local resolves conditions on a task's `Output`);
    `comparison` holds decision.json with both models' metrics and the champion compared with.
    """
    from components.reports import compare_markdown, log_metrics, write_text
    from padcore.steps import compare as step

    result = step(dataset.path, model.path, comparison.path, text=text.path, store=store, min_gain=min_gain, force=force)
    values = {"publish": float(result["publish"]), **{f"challenger-{k}": result["challenger"][k] for k in ("hr@10", "ndcg@10")}}
    if result["champion"]:
        values.update({f"champion-{k}": result["champion"][k] for k in ("hr@10", "ndcg@10")})
        if result["gain"] is not None:
            values["gain"] = result["gain"]
    log_metrics(metrics, values)
    write_text(summary, compare_markdown(result))
    comparison.metadata.update({"publish": result["publish"], "champion": result["champion_version"] or ""})
    return "publish" if result["publish"] else "keep"
