"""The registry of trainable models: PAD and the baselines of the paper's Table 2, one module each.

`padcore.registry.MODELS[name]` gives a `ModelSpec` (padcore/models/spec.py);
importing this package registers every model below. A new model is one module
here, its name in this import list, and its test.
"""

from padcore.models import ctrl, disco, hybrid, idonly, llmesr, make, morec, pad  # noqa: F401  (each registers)
