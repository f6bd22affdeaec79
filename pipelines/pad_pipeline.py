"""The PAD DAG and its run parameters, with each step placed as the configuration says.

    check ─► fingerprint ─► preprocess ─► embed ×N (ParallelFor) ─► embed-merge ─┬─► align ─► finetune ─► analyze
                              └──────────► pretrain ───────────────────────────┴──────────────┴────────────┘
                                             └─► train ×baselines (ParallelFor) ─► leaderboard (with pretrain and finetune)
    with a `store`:  finetune ─► compare ─► if better: publish ─► recommend

Fresh data from any entry point: `fingerprint` (never cached) says what the
source holds now, and preprocess takes it as an input, so KFP's cache answers
preprocess, and with it every later step, exactly when the data is unchanged
(the cache key holds a task's input values and its input artifacts' ids:
kubeflow/pipelines 2.17.0 backend/src/v2/cacheutils/cache.go GenerateCacheKey).
No per-run value is an input of a cacheable step, so an identical resubmission
is answered from the cache whole.

A recurring run (`build_pipeline(..., recurring=True)`, what `pad pipeline
schedule` sends, pipeline `pad-recurring`) bounds the data by its scheduled
time unless the `as_of` parameter is set.

(No `from __future__ import annotations` here: KFP reads the real type annotations.)
"""

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
from components.fingerprint import fingerprint
from components.leaderboard import leaderboard
from components.preprocess import preprocess
from components.pretrain import pretrain
from components.publish import publish
from components.recommend import recommend
from components.train import train as train_model
from pipelines.placement import STORE_STEPS, TOLERATION_ARGS, Placement, seconds

PIPELINE_NAME = "pad"
RECURRING_NAME = "pad-recurring"  # its own pipeline in the UI, and its own cache (KFP keys it by pipeline name)
DESCRIPTION = "PAD (Pre-train, Align, and Disentangle): LLM text knowledge for sequential recommenders."
GCS_KEY_DIR = "/var/secrets/gcs"
MODEL_CACHE_DIR = "/mnt/models"  # embed's encoder weights (HF_HOME), on a volume sized for them
# The run's Argo Workflow name, which Argo puts on each of its pods (argo-workflows v4.0.5
# workflow/common/common.go LabelKeyWorkflow), read through Kubernetes' downward API.
RUN_FIELD = "metadata.labels['workflows.argoproj.io/workflow']"


class Outputs(NamedTuple):
    dataset: Dataset
    text: Dataset
    id_model: Model
    align_model: Model
    model: Model
    analysis: Artifact


def place(task: dsl.PipelineTask, step: str, placement: Placement, images: dict[str, str],
          local: bool = False) -> dsl.PipelineTask:
    """Apply the step's image, resources, timeout, retries, caching, GPU pool and volumes to `task`.

    `local`: no retries, since kfp.local retries too and a failure on this machine fails the same way again.
    """
    from components.base import RUN_ENV

    p, volumes = placement.steps[step], placement.volumes
    task.set_display_name(step.replace("_", "-"))
    task.set_container_image(images[p.image])
    # memory limit = request: an overrun is this pod's OOM kill, never the eviction of its neighbours
    task.set_cpu_request(p.cpu).set_memory_request(p.memory).set_memory_limit(p.memory)
    task.set_caching_options(enable_caching=p.caching)
    kubernetes.set_timeout(task, seconds(p.timeout))
    # Every step gets its own retry policy, even none: a template without one takes the install's default
    # (KFP standalone's workflow-controller ConfigMap: templateDefaults.retryStrategy). The window covers
    # every attempt whole (StepPlacement.retry_window).
    if not local:
        task.set_retry(p.retries, backoff_duration=p.backoff, backoff_factor=p.backoff_factor,
                       backoff_max_duration=f"{p.retry_window()}s")
    if p.gpus > 0:
        pool = placement.gpu_pool
        task.set_accelerator_type(pool.accelerator).set_accelerator_limit(p.gpus)
        for key, value in pool.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for toleration in pool.tolerations:
            kubernetes.add_toleration(task, **{TOLERATION_ARGS[k]: v for k, v in toleration.items()})
        if volumes.checkpoint_pvc:
            kubernetes.mount_pvc(task, pvc_name=volumes.checkpoint_pvc, mount_path=volumes.checkpoint_path)
            kubernetes.use_field_path_as_env(task, env_name=RUN_ENV, field_path=RUN_FIELD)
    if step in STORE_STEPS and volumes.store_pvc:
        kubernetes.mount_pvc(task, pvc_name=volumes.store_pvc, mount_path=volumes.store_path)
    if step == "embed" and volumes.model_cache:
        kubernetes.add_ephemeral_volume(task, volume_name="models", mount_path=MODEL_CACHE_DIR,
                                        access_modes=["ReadWriteOnce"], size=volumes.model_cache,
                                        storage_class_name=volumes.model_cache_class or None)
        task.set_env_variable("HF_HOME", MODEL_CACHE_DIR)
        if volumes.hf_token_secret:
            # optional: a run of an ungated encoder needs no Secret, a gated one says it lacks the token
            kubernetes.use_secret_as_env(task, secret_name=volumes.hf_token_secret, secret_key_to_env={"token": "HF_TOKEN"},
                                         optional=True)
    if volumes.gcs_secret:
        kubernetes.use_secret_as_volume(task, secret_name=volumes.gcs_secret, mount_path=GCS_KEY_DIR)
        task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_DIR}/key.json")
    return task


def build_pipeline(placement: Placement, images: dict[str, str], recurring: bool = False, local: bool = False):
    """The PAD pipeline with `placement` applied to every step, each in its image of `images` (target -> ref).

    `recurring`: for a schedule: preprocess bounds the data by the run's scheduled time unless the `as_of`
    parameter is set. `local`: for kfp.local on this machine, where a folder store is shared by every step
    and any encoder runs.
    """
    scheduled_time = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER if recurring else ""
    if local:
        store_root, encoders = "*", ""
    else:
        store_root = placement.volumes.store_path if placement.volumes.store_pvc else ""
        encoders = ",".join(placement.encoders)

    def step(name: str, task: dsl.PipelineTask) -> dsl.PipelineTask:
        return place(task, name, placement, images, local)

    def resume(name: str) -> dict:
        # GPU steps on a checkpoint volume keep their checkpoints there (a folder per run: components.base.work_folder)
        if placement.steps[name].gpus > 0 and placement.volumes.checkpoint_pvc:
            return {"checkpoint_root": placement.volumes.checkpoint_path}
        return {}

    @dsl.pipeline(
        name=RECURRING_NAME if recurring else PIPELINE_NAME,
        description=DESCRIPTION,
        pipeline_root=placement.pipeline_root or None,
        pipeline_config=dsl.PipelineConfig(active_deadline_seconds=seconds(placement.run_timeout)),
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
        """PAD: preprocess, embed item texts, pretrain, align, finetune, analyze; with a store, publish if better.

        Args:
            source: data source: prime_pantry, amazon2018:<Category>, mind[:large|small], files:<folder or gs://bucket/prefix>.
            encoder: text encoder: minilm (offline, CPU), llm2vec (the paper's, GPU), hf:<model>.
            backbone: sequential backbone: sasrec, gru4rec, caser.
            loss: recommendation loss: bce (the paper's), ce, sampled.
            epochs: epochs per training phase (the rate schedule's length); 0 = the training default, 60.
            gamma: weight of the MK-MMD alignment loss (phase 2).
            buckets: item frequency buckets of the dataset (the gate's input).
            seed: training seed.
            embed_shards: embedding fan-out width (one pod each).
            max_len: longest history kept per user.
            min_len: shortest history kept (users with fewer interactions are dropped).
            device: auto, cpu or cuda, for embedding and training.
            train_options: any other training option as JSON, e.g. {"dim": 128, "lr": 0.0005}.
            analyze_options: analysis options as JSON, e.g. {"max_pairs": 50000}.
            baselines: registered models to train beside PAD as a JSON list, e.g. ["sasrec", "morec"].
            as_of: keep the data up to this ISO 8601 time; "" = all of it (a recurring run: its scheduled time).
            store: model store (gs://bucket/prefix, or a folder on the placement's store claim): compare, publish if better, recommend; "" = none.
            min_gain: relative nDCG@10 gain over the champion needed to publish (0.02 = 2 %).
            force: publish and promote whatever the comparison says.
            top_k: recommendations per user.
        """
        checked = step("check", check(encoder=encoder, backbone=backbone, loss=loss, epochs=epochs, gamma=gamma,
                                      seed=seed, device=device, train_options=train_options,
                                      analyze_options=analyze_options, baselines=baselines, as_of=as_of, store=store,
                                      min_gain=min_gain, top_k=top_k, encoders=encoders, store_root=store_root))
        fresh = step("fingerprint", fingerprint(source=source, as_of=as_of, scheduled_time=scheduled_time)).after(checked)
        prep = step("preprocess", preprocess(source=source, max_len=max_len, min_len=min_len, buckets=buckets,
                                             embed_shards=embed_shards, as_of=fresh.outputs["as_of"],
                                             fingerprint=fresh.outputs["fingerprint"]))
        dataset = prep.outputs["dataset"]
        with dsl.ParallelFor(prep.outputs["Output"], name="embed-shards") as shard:
            part = step("embed", embed(dataset=dataset, encoder=encoder, shard=shard, device=device, **resume("embed")))
        merged = step("embed_merge", embed_merge(parts=dsl.Collected(part.outputs["text"])))
        text = merged.outputs["text"]
        train = dict(backbone=backbone, loss=loss, epochs=epochs, seed=seed, device=device, options=train_options)
        phase1 = step("pretrain", pretrain(dataset=dataset, **train, **resume("pretrain")))
        phase2 = step("align", align(dataset=dataset, text=text, id_model=phase1.outputs["model"], gamma=gamma,
                                     **train, **resume("align")))
        phase3 = step("finetune", finetune(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                                           align_model=phase2.outputs["model"], **train, **resume("finetune")))
        # The paper's comparisons: each baseline on its own (GPU) step, then one table of them all.
        plan = step("baselines_plan", baselines_plan(baselines=baselines))
        with dsl.If(plan.output == "train", name="with-baselines"):
            with dsl.ParallelFor(baselines, name="baselines") as name:
                baseline = step("train", train_model(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                                                     name=name, **train, **resume("train")))
            step("leaderboard", leaderboard(dataset=dataset, id_model=phase1.outputs["model"],
                                            model=phase3.outputs["model"],
                                            baselines=dsl.Collected(baseline.outputs["model"])))
        report = step("analyze", analyze(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                                         align_model=phase2.outputs["model"], final_model=phase3.outputs["model"],
                                         options=analyze_options))

        # Retraining that ships: only with a store, and only a model better than its champion.
        final = phase3.outputs["model"]
        with dsl.If(store != "", name="with-store"):
            judged = step("compare", compare(dataset=dataset, text=text, model=final, store=store,
                                             min_gain=min_gain, force=force))
            with dsl.If(judged.outputs["Output"] == "publish", name="better"):
                published = step("publish", publish(dataset=dataset, text=text, model=final,
                                                    comparison=judged.outputs["comparison"], store=store))
                ranked = step("recommend", recommend(dataset=dataset, text=text, model=final, k=top_k))
                ranked.after(published)
        return Outputs(dataset=dataset, text=text, id_model=phase1.outputs["model"],
                       align_model=phase2.outputs["model"], model=phase3.outputs["model"],
                       analysis=report.outputs["analysis"])

    return pad
