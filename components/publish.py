"""Component: the new model -> a new version of the model store, champion if still unchallenged (`padcore.steps.publish`)."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.base import pad_component


@pad_component("cpu")
def publish(
    dataset: Input[Dataset],
    text: Input[Dataset],
    model: Input[Model],
    comparison: Input[Artifact],
    metrics: Output[Metrics],
    store: str,
) -> str:
    """Publish `model` to `store`; promote it if the champion is still the one `comparison` beat. Returns the version.

    Args:
        store: model store, a folder or gs://bucket/prefix.
        comparison: the compare step's output; if another run changed the champion since, the version is kept
            in the store but not promoted.
    """
    from components.reports import log_metrics
    from padcore.compare import read_decision
    from padcore.steps import publish as step

    beaten = read_decision(comparison.path)["champion_version"]
    published = step(model.path, dataset.path, store, text=text.path, expected=beaten)
    log_metrics(metrics, {"promoted": float(published.promoted)})
    return published.version
