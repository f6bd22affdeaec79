"""Component: the run's `baselines`, checked against the model registry on a CPU before any is trained."""

from components.base import pad_component


@pad_component("cpu")
def baselines_plan(baselines: list) -> str:
    """'train' when the run trains baselines (every name a registered model, `pad train --list`), else 'none'.

    Args:
        baselines: registered model names to train beside PAD, e.g. ["hybrid", "morec"]; [] = none.
    """
    from padcore.training import check_baselines

    return "train" if check_baselines(baselines) else "none"
