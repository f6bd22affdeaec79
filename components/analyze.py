"""Component: Kendall's-tau analysis of the embedding spaces per frequency bucket (`padcore.steps.analyze`)."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components.base import pad_component


@pad_component("cpu")
def analyze(
    dataset: Input[Dataset],
    text: Input[Dataset],
    id_model: Input[Model],
    align_model: Input[Model],
    final_model: Input[Model],
    analysis: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    plots: Output[HTML],
    options: dict = {},
) -> None:
    """Compare the three phases' item spaces (Sec. 4.3) and publish the report and its plots."""
    from components.reports import publish_analysis
    from padcore.steps import analyze as step

    result = step(dataset.path, text.path, id_model.path, align_model.path, final_model.path, analysis.path, **options)
    publish_analysis(analysis.path, result, metrics, report, plots)
