"""Component: what the source's data is now, for preprocess's cache key (`padcore.sources.fingerprint`)."""

from typing import NamedTuple

from kfp.dsl import Metrics, Output

from components.base import pad_component


@pad_component("cpu")
def fingerprint(
    source: str,
    metrics: Output[Metrics],
    as_of: str = "",
    scheduled_time: str = "",
) -> NamedTuple("Fingerprint", [("fingerprint", str), ("as_of", str)]):
    """Fingerprint the data `source` holds now (never cached), so preprocess is answered from KFP's cache only when
    that data is unchanged: new files, a new GCS object generation, a grown log all change it.

    Args:
        as_of: the run parameter: keep the data up to this time ("" = all of it).
        scheduled_time: a recurring run's scheduled time; the bound when `as_of` is "".
    Returns the fingerprint and the bound preprocess applies (`as_of`, else `scheduled_time`).
    """
    from collections import namedtuple

    from components.reports import log_metrics
    from padcore.sources import fingerprint as step

    bound = as_of or scheduled_time
    found = step(source, bound)
    print(f"[fingerprint] {source}{f' as of {bound}' if bound else ''}: {found['files']} file(s), "
          f"{found['fingerprint'][:12]}", flush=True)
    log_metrics(metrics, {"files": found["files"]})
    return namedtuple("Fingerprint", ["fingerprint", "as_of"])(found["fingerprint"], bound)
