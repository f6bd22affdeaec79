"""Component: the new model -> a new version of the model store, champion if still unchallenged (`padcore.steps.publish`)."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.base import pad_component


@pad_component("cpu")
def publish(
    dataset: Input[Dataset],
    text: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    store: str,
    champion: str = "",
) -> NamedTuple("Outputs", [("version", str)]):
    """Publish `model` to `store` and promote it if the champion is still `champion` (the one compared with).

    Args:
        store: model store, a folder or gs://bucket/prefix.
        champion: the champion version the comparison beat ("" = there was none); if another run changed the
            champion meanwhile, the version is kept in the store but not promoted.
    """
    from collections import namedtuple

    from components.reports import log_metrics
    from padcore.steps import publish as step

    published = step(model.path, dataset.path, store, text=text.path, expected=champion or None)
    log_metrics(metrics, {"promoted": float(published.promoted)})
    return namedtuple("Outputs", ["version"])(published.version)
