"""The PAD DAG and its run parameters, with each step placed as the configuration says.

    preprocess ─► embed ×N (ParallelFor) ─► embed-merge ─┬─► align ─► finetune ─► analyze
        └──────────► pretrain ───────────────────────────┴──────────────┴────────────┘
                        └─► train ×baselines (ParallelFor) ─► leaderboard (with pretrain and finetune)
    with a `store`:  finetune ─► compare ─► if better: publish ─► recommend
    check ─► (before) embed, pretrain: the parameters of the GPU steps and the analysis, checked on a CPU

A recurring run (`build_pipeline(..., recurring=True)`, what `pad pipeline schedule`
sends) caches no step and bounds the data by the run's scheduled time.

(No `from __future__ import annotations` here: KFP reads the real type annotations.)
"""

import dataclasses
from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Model

from components.align import align
from components.analyze import analyze
from components.baselines import baselines_plan
from components.check import check
from components.compare import compare
from components.embed import embed
from components.embed_merge import embed_merge
from components.finetune import finetune
from components.leaderboard import leaderboard
from components.preprocess import preprocess
from components.pretrain import pretrain
from components.publish import publish
from components.recommend import recommend
from components.train import train as train_model
from pipelines.placement import TOLERATION_ARGS, Placement

PIPELINE_NAME = "pad"
GCS_KEY_DIR = "/var/secrets/gcs"


class Outputs(NamedTuple):
    dataset: Dataset
    text: Dataset
    id_model: Model
    align_model: Model
    model: Model
    analysis: Artifact


def place(task: dsl.PipelineTask, step: str, placement: Placement) -> dsl.PipelineTask:
    """Apply the step's image, resources, retries, caching and GPU-pool settings to `task`."""
    p = placement.steps[step]
    task.set_display_name(step.replace("_", "-"))
    task.set_container_image(placement.image(step))
    task.set_cpu_request(p.cpu).set_memory_request(p.memory)
    task.set_caching_options(enable_caching=p.caching)
    if p.retries > 0:
        task.set_retry(p.retries, backoff_duration=p.backoff, backoff_factor=p.backoff_factor,
                       backoff_max_duration=p.backoff_max)
    if p.gpus > 0:
        pool = placement.gpu_pool
        task.set_accelerator_type(pool.accelerator).set_accelerator_limit(p.gpus)
        for key, value in pool.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in pool.tolerations:
            kubernetes.add_toleration(task, **{TOLERATION_ARGS[k]: v for k, v in toleration.items()})
        if placement.volumes.checkpoint_pvc:
            kubernetes.mount_pvc(task, pvc_name=placement.volumes.checkpoint_pvc,
                                 mount_path=placement.volumes.checkpoint_path)
    if placement.volumes.gcs_secret:
        kubernetes.use_secret_as_volume(task, secret_name=placement.volumes.gcs_secret, mount_path=GCS_KEY_DIR)
        task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_DIR}/key.json")
    return task


def build_pipeline(placement: Placement, recurring: bool = False):
    """The PAD pipeline with `placement` applied to every step.

    `recurring`: for a schedule. No step is cached (KFP's cache key does not see new data at
    an unchanged source), and preprocess bounds the data by the run's scheduled time
    unless the `as_of` parameter is set.
    """
    if recurring:
        placement = dataclasses.replace(
            placement, steps={s: dataclasses.replace(p, caching=False) for s, p in placement.steps.items()})
    scheduled_time = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER if recurring else ""

    def resume(step: str) -> dict:
        # GPU steps on a checkpoint volume keep their checkpoints there, per run.
        if placement.steps[step].gpus > 0 and placement.volumes.checkpoint_pvc:
            return {"checkpoint_root": placement.volumes.checkpoint_path, "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
        return {}

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="PAD (Pre-train, Align, and Disentangle): LLM text knowledge for sequential recommenders.",
        pipeline_root=placement.pipeline_root or None,
    )
    def pad(
        source: str = "prime_pantry",
        encoder: str = "minilm",
        backbone: str = "sasrec",
        loss: str = "bce",
        epochs: int = 0,
        gamma: float = 0.2,
        buckets: int = 10,
        seed: int = 0,
        embed_shards: int = 1,
        max_len: int = 20,
        min_len: int = 5,
        device: str = "auto",
        train_options: dict = {},
        analyze_options: dict = {},
        baselines: list = [],
        as_of: str = "",
        store: str = "",
        min_gain: float = 0.0,
        force: bool = False,
        top_k: int = 10,
    ) -> Outputs:
        checked = place(check(encoder=encoder, backbone=backbone, loss=loss, epochs=epochs, gamma=gamma, seed=seed,
                              device=device, train_options=train_options, analyze_options=analyze_options,
                              baselines=baselines), "check", placement)
        prep = place(preprocess(source=source, max_len=max_len, min_len=min_len, buckets=buckets,
                                embed_shards=embed_shards, as_of=as_of, scheduled_time=scheduled_time),
                     "preprocess", placement)
        dataset = prep.outputs["dataset"]
        with dsl.ParallelFor(prep.outputs["Output"], name="embed-shards") as shard:
            part = place(embed(dataset=dataset, encoder=encoder, shard=shard, device=device, **resume("embed")),
                         "embed", placement).after(checked)
        merged = place(embed_merge(parts=dsl.Collected(part.outputs["text"])), "embed_merge", placement)
        text = merged.outputs["text"]
        train = dict(backbone=backbone, loss=loss, epochs=epochs, seed=seed, device=device, options=train_options)
        phase1 = place(pretrain(dataset=dataset, **train, **resume("pretrain")), "pretrain", placement).after(checked)
        phase2 = place(align(dataset=dataset, text=text, id_model=phase1.outputs["model"], gamma=gamma,
                             **train, **resume("align")), "align", placement)
        phase3 = place(finetune(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                                align_model=phase2.outputs["model"], **train, **resume("finetune")),
                       "finetune", placement)
        # The paper's comparisons: each baseline on its own (GPU) step, then one table of them all.
        plan = place(baselines_plan(baselines=baselines), "baselines_plan", placement)
        with dsl.If(plan.output == "train", name="with-baselines"):
            with dsl.ParallelFor(baselines, name="baselines") as name:
                baseline = place(train_model(dataset=dataset, text=text, id_model=phase1.outputs["model"], name=name,
                                             **train, **resume("train")), "train", placement)
            place(leaderboard(dataset=dataset, id_model=phase1.outputs["model"], model=phase3.outputs["model"],
                              baselines=dsl.Collected(baseline.outputs["model"])), "leaderboard", placement)
        report = place(analyze(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                               align_model=phase2.outputs["model"], final_model=phase3.outputs["model"],
                               options=analyze_options), "analyze", placement)

        # Retraining that ships: only with a store, and only a model better than its champion.
        final = phase3.outputs["model"]
        with dsl.If(store != "", name="with-store"):
            judged = place(compare(dataset=dataset, text=text, model=final, store=store, min_gain=min_gain,
                                   force=force), "compare", placement)
            with dsl.If(judged.outputs["Output"] == "publish", name="better"):
                published = place(publish(dataset=dataset, text=text, model=final,
                                          comparison=judged.outputs["comparison"], store=store), "publish", placement)
                ranked = place(recommend(dataset=dataset, text=text, model=final, k=top_k), "recommend", placement)
                ranked.after(published)
        return Outputs(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                       align_model=phase2.outputs["model"], model=phase3.outputs["model"],
                       analysis=report.outputs["analysis"])

    return pad
