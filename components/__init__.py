"""KFP v2 components of the PAD pipeline: one file per step.

Each component is a thin adapter: typed artifacts in, one `padcore.steps` call,
typed artifacts plus the outputs the KFP UI renders (Metrics, Markdown, HTML)
out. Imports live inside the function bodies, so the same components run under
`kfp.local` and in the images of `docker/`.

Every body imports from this package, so importing it marks a step's input
errors for the cluster (`components.errors`): a step that fails on its input
is never retried.
"""

from components.errors import mark_input_errors

mark_input_errors()
