"""Component: the run's parameters checked on a CPU before any GPU step starts (`components.base.check_parameters`)."""

from components.base import pad_component


@pad_component("cpu")
def check(
    encoder: str,
    backbone: str,
    loss: str,
    epochs: int,
    gamma: float,
    seed: int,
    device: str,
    train_options: dict,
    analyze_options: dict,
    baselines: list,
) -> None:
    """Check the parameters the GPU steps and the analysis will use, so that a typo fails here, in seconds.

    A step of its own rather than part of preprocess: these parameters would enter
    preprocess's cache key, and a change of `dim` would preprocess the data again.

    Args:
        train_options: more TrainConfig fields for the three training phases, e.g. {"dim": 128}.
        analyze_options: AnalysisConfig fields, e.g. {"max_pairs": 50000}.
        baselines: registered model names to train beside PAD (`pad train --list`).
    """
    from components.base import check_parameters

    check_parameters(encoder=encoder, backbone=backbone, loss=loss, epochs=epochs, gamma=gamma, seed=seed,
                     device=device, train_options=train_options, analyze_options=analyze_options,
                     baselines=baselines)
