"""Component: the run's parameters checked on a CPU before any other step starts (`components.base.check_parameters`)."""

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
    as_of: str,
    store: str,
    min_gain: float,
    top_k: int,
    encoders: str = "",
    store_root: str = "*",
) -> None:
    """Check the parameters every later step will use, so that a typo fails here, in seconds, and never after a
    GPU step ran or a model was published.

    A step of its own rather than part of preprocess: these parameters would enter
    preprocess's cache key, and a change of `dim` would preprocess the data again.
    Its input errors are never retried (exit 2), and no later step sees one.

    Args:
        train_options: more TrainConfig fields for the three training phases, e.g. {"dim": 128}.
        analyze_options: AnalysisConfig fields, e.g. {"max_pairs": 50000}.
        baselines: registered model names to train beside PAD (`pad train --list`).
        encoders: the encoder families this package's embed step is sized for ("" = any): set by the placement.
        store_root: where a folder store may lie ("*" anywhere, "" nowhere: gs:// only): set by the placement.
    """
    from components.base import check_parameters

    check_parameters(encoder=encoder, backbone=backbone, loss=loss, epochs=epochs, gamma=gamma, seed=seed,
                     device=device, train_options=train_options, analyze_options=analyze_options,
                     baselines=baselines, as_of=as_of, store=store, min_gain=min_gain, top_k=top_k,
                     encoders=encoders, store_root=store_root)
