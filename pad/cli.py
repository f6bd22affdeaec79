"""The `pad` command line: one verb per pipeline step, plus the pipeline verbs.

Each verb parses its options and calls the one padcore step function that the
KFP component and the container entrypoint call too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from padcore.config import ALIGN_MODES, TrainConfig
from padcore.errors import PadError
from padcore.serving import BATCH_WINDOW, MAX_BATCH


def _preprocess(args: argparse.Namespace) -> None:
    from padcore.steps import preprocess

    preprocess(args.source, args.out, max_len=args.max_len, min_len=args.min_len, buckets=args.buckets,
               as_of=args.as_of or "")


def _embed(args: argparse.Namespace) -> None:
    from padcore.steps import embed

    options = {
        k: v
        for k, v in vars(args).items()
        if k in ("base_model", "adapter", "pooling", "max_length", "instruction") and v is not None
    }
    embed(
        args.dataset, args.out, encoder=args.encoder, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        shard=args.shard or "", on_empty=args.on_empty, placeholder=args.placeholder, cache=not args.no_cache, **options,
    )


def _embed_merge(args: argparse.Namespace) -> None:
    from padcore.steps import embed_merge

    embed_merge(args.parts, args.out, cache=not args.no_cache)


def _training_options(args: argparse.Namespace) -> dict:
    """The training options the user set (unset ones inherit from the earlier phase or the defaults)."""
    opts = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise PadError(f"--set {item!r}: expected KEY=VALUE")
        opts[key.replace("-", "_")] = _parse_value(value)
    return opts


def _parse_value(value: str):
    import json

    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (unset options keep the earlier phase's value, else the default)")
    g.add_argument("--backbone", help="sequence encoder: sasrec (default) | gru4rec | caser")
    g.add_argument("--loss", help="bce (default): the paper's one sampled negative; ce: full softmax; sampled: shared negatives")
    g.add_argument("--dim", type=int, help="model width d (default 64)")
    g.add_argument("--epochs", type=int, help="epochs of the cosine rate schedule, the most a phase runs (default 60)")
    g.add_argument("--patience", type=int, help="epochs without a better validation nDCG@10 before stopping (default 10)")
    g.add_argument("--batch-size", type=int, help="users per batch (default 256)")
    g.add_argument("--lr", type=float, help="peak AdamW learning rate of this phase (default 5e-3 for pretrain, "
                   "1e-3 for align and finetune; never inherited)")
    g.add_argument("--seed", type=int, help="random seed (default 0)")
    g.add_argument("--device", help="auto | cpu | cuda (default auto)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other training option, e.g. --set dropout=0.2")


def _pretrain(args: argparse.Namespace) -> None:
    from padcore.steps import pretrain

    pretrain(args.dataset, args.out, **_training_options(args))


def _align(args: argparse.Namespace) -> None:
    from padcore.steps import align

    align(args.dataset, args.text, args.id_model, args.out, **_training_options(args))


def _finetune(args: argparse.Namespace) -> None:
    from padcore.steps import finetune

    finetune(args.dataset, args.text, args.id_model, args.align_model, args.out, **_training_options(args))


def _train(args: argparse.Namespace) -> None:
    from padcore.steps import train

    if args.list:
        return _registered_models()
    missing = [f"--{name}" for name in ("model", "dataset", "out") if getattr(args, name) is None]
    if missing:
        raise PadError(f"{', '.join(missing)} required (or --list)")
    parents = {}
    for item in args.parent or []:
        stage, sep, path = item.partition("=")
        if not sep or not stage:
            raise PadError(f"--parent {item!r}: expected STAGE=MODEL_FOLDER")
        parents[stage] = path
    train(args.model, args.dataset, args.text, args.out, parents=parents, **_training_options(args))


def _registered_models() -> None:
    from padcore.registry import MODELS

    for name in MODELS:
        spec = MODELS[name]
        stages = " -> ".join(s.name for s in spec.stages)
        print(f"{name:<8} {spec.summary}  [{stages}{'; text' if spec.needs_text else ''}]")


def _analyze(args: argparse.Namespace) -> None:
    from padcore.steps import analyze

    extra = {}
    for item in args.extra_align or []:
        label, sep, path = item.partition("=")
        if not sep or not label:
            raise PadError(f"--extra-align {item!r}: expected LABEL=MODEL_FOLDER")
        extra[label] = path
    opts = {k: v for k, v in vars(args).items() if k in ("min_pairs", "max_pairs", "top_fraction", "seed") and v is not None}
    analyze(args.dataset, args.text, args.id_model, args.align_model, args.final_model, args.out,
            extra_align=extra, **opts)


def _recommend(args: argparse.Namespace) -> None:
    from padcore.steps import recommend

    recommend(args.model, args.out, dataset=args.dataset, text=args.text, sequences=args.sequences, k=args.k,
              device=args.device, batch_users=args.batch_users)


def _compare(args: argparse.Namespace) -> None:
    from padcore.steps import compare

    compare(args.dataset, args.model, args.out, text=args.text, store=args.store, min_gain=args.min_gain,
            force=args.force, device=args.device)


def _publish(args: argparse.Namespace) -> None:
    from padcore.steps import publish

    published = publish(args.model, args.dataset, args.to, text=args.text, promote=not args.no_promote)
    if not published.promoted and not args.no_promote:
        raise PadError(published.message)


def _models_list(args: argparse.Namespace) -> None:
    from padcore.store import Store

    store = Store(args.store)
    champion = store.champion()
    rows = [("", "version", "created", "source", "as_of", "items", "phase", "HR@10", "nDCG@10")]
    for m in store.versions():
        test = m["model"].get("test", {})
        rows.append(("*" if m["version"] == champion else "", m["version"], m["created"], str(m["dataset"]["source"]),
                     str(m["dataset"].get("as_of") or "-"), f"{m['items']['count']:,}", str(m["model"]["phase"]),
                     f"{test.get('hr@10', float('nan')):.4f}", f"{test.get('ndcg@10', float('nan')):.4f}"))
    if len(rows) == 1:
        print(f"{store.uri}: no published version")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"(* = champion; {len(rows) - 1} version(s) in {store.uri})")


def _models_show(args: argparse.Namespace) -> None:
    import json

    from padcore.store import Store

    store = Store(args.store)
    version = args.version or store.champion()
    if version is None:
        raise PadError(f"{store.uri}: no champion yet; name a version")
    print(json.dumps({**store.manifest(version), "champion": version == store.champion()}, indent=2))


def _models_promote(args: argparse.Namespace) -> None:
    from padcore.store import Store

    store = Store(args.store)
    store.open(args.version)  # refuse a version whose files do not match its manifest
    store.promote(args.version)
    print(f"{args.version} is the champion of {store.uri}")


def _models_rollback(args: argparse.Namespace) -> None:
    from padcore.store import Store

    store = Store(args.store)
    print(f"rolled back: {store.rollback()} is the champion of {store.uri}")


def _serve(args: argparse.Namespace) -> None:
    from padcore.serving import serve

    serve(args.store, args.port, host=args.host, name=args.name, poll=args.poll, device=args.device,
          batch_window=args.batch_window / 1000, max_batch=args.max_batch, log_requests=args.log_requests)


def _run(args: argparse.Namespace) -> None:
    from pipelines.local import report, run_local

    params = {
        "source": args.source, "encoder": args.encoder, "backbone": args.backbone, "loss": args.loss,
        "epochs": args.epochs, "gamma": args.gamma, "buckets": args.buckets, "seed": args.seed,
        "embed_shards": args.embed_shards, "device": args.device, "as_of": args.as_of or "",
        "store": str(Path(args.store).resolve()) if args.store and not args.store.startswith("gs://") else args.store,
        "min_gain": args.min_gain, "force": args.force,
        "baselines": [name for name in (args.baselines or "").split(",") if name],
    }
    run = run_local(params, args.param, out=args.out, placement_path=args.config, cache=args.cache,
                    verbose=args.verbose, threads=args.threads, runner=args.runner)
    print(report(run))


def _pipeline_compile(args: argparse.Namespace) -> None:
    from pipelines.client import compile_package

    print(f"wrote {compile_package(args.out, args.config, recurring=args.recurring, images=args.images, allow_unbuilt=args.allow_unbuilt_images)}")


def _submission(args: argparse.Namespace):
    from pipelines.client import Endpoint, Submission

    endpoint = Endpoint(host=args.host, token=args.token, namespace=args.namespace, kube_context=args.kube_context,
                        kfp_namespace=args.kfp_namespace)
    run = {k: getattr(args, k) for k in ("experiment", "name", "service_account") if hasattr(args, k)}  # not upload's
    return Submission(endpoint, pairs=args.param, package=args.package, placement=args.config, images=args.images,
                      allow_unbuilt=args.allow_unbuilt_images, **run)


def _pipeline_upload(args: argparse.Namespace) -> None:
    from pipelines.client import upload_only

    pipeline_id, version_id = upload_only(_submission(args), recurring=args.recurring)
    print(f"pipeline {pipeline_id}, version {version_id}: start runs or recurring runs of it in the KFP UI")


def _pipeline_submit(args: argparse.Namespace) -> None:
    from pipelines.client import submit

    print(f"run {submit(_submission(args))} started")


def _pipeline_schedule(args: argparse.Namespace) -> None:
    from pipelines.client import schedule

    print(f"recurring run {schedule(_submission(args), args.cron)} created ({args.cron}; one at a time, no catch-up)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pad",
        description="PAD (Pre-train, Align, and Disentangle) for sequential recommendation, as a KFP pipeline.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser(
        "preprocess",
        help="turn a raw source into a dataset artifact",
        description="Apply the paper's protocol (App. A) to a raw source and write the dataset artifact.",
    )
    p.add_argument(
        "--source",
        required=True,
        help="prime_pantry | amazon2018:<Category> | mind | files:<folder or gs://bucket/prefix>",
    )
    p.add_argument("--out", required=True, help="output folder (replaced atomically on success)")
    p.add_argument("--max-len", type=int, default=20, help="model input length; the latest max-len+3 items are kept (default 20)")
    p.add_argument("--min-len", type=int, default=5, help="minimum interactions per user (default 5)")
    p.add_argument("--buckets", type=int, default=10, help="frequency buckets of equal training mass, 1 = warmest (default 10)")
    p.add_argument("--as-of", help="keep the interactions up to this time (ISO 8601, e.g. 2026-11-30T03:00:00Z; a date "
                   "alone = its end; numeric timestamps count as Unix seconds) and, for files:, the partitions "
                   "date=YYYY-MM-DD up to its date (default: everything)")
    p.set_defaults(func=_preprocess)

    p = verbs.add_parser(
        "embed",
        help="phase 0: embed every item text into the text artifact",
        description="Embed each item's text with a frozen text encoder and write the text artifact "
        "(embeddings.npy [n_items+1, dim], row 0 = padding zeros, and meta.json). "
        "A matching table in $PAD_DATA_HOME/text-cache is reused; a matching --out is left as it is.",
    )
    p.add_argument("--dataset", required=True, help="dataset artifact folder (from pad preprocess)")
    p.add_argument("--out", required=True, help="text artifact folder (replaced atomically on success)")
    p.add_argument("--encoder", default="minilm", help="minilm (offline, 384-d) | llm2vec (the paper's, GPU) | hf:<model-or-path> (default minilm)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per batch (default 64)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto: cuda when present)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored precision (default float16)")
    p.add_argument("--shard", help="I/N: embed only the I-th (from 0) of N contiguous item slices; join them with pad embed-merge")
    p.add_argument("--on-empty", choices=("placeholder", "fail"), default="placeholder",
                   help="an item without text: embed --placeholder and count it in meta.json, or fail (default placeholder)")
    p.add_argument("--placeholder", default="(no text)", help="text embedded for items without one (default '(no text)')")
    p.add_argument("--no-cache", action="store_true", help="neither reuse nor add to $PAD_DATA_HOME/text-cache")
    g = p.add_argument_group("encoder options")
    g.add_argument("--base-model", help="llm2vec base model, hub id or folder (default McGill-NLP/LLM2Vec-Meta-Llama-3-8B-Instruct-mntp)")
    g.add_argument("--adapter", help="llm2vec LoRA: unsup-simcse (default, the paper's) | supervised | none | hub id or folder")
    g.add_argument("--pooling", help="mean (default); llm2vec also weighted_mean | eos_token | last_token | bos_token")
    g.add_argument("--max-length", type=int, help="tokens per text (default: minilm 256, hf the model's up to 512, llm2vec 512)")
    g.add_argument("--instruction", help="llm2vec instruction put before every text (default none)")
    p.set_defaults(func=_embed)

    p = verbs.add_parser(
        "embed-merge",
        help="join the shards of pad embed --shard into one text artifact",
        description="Join the N shard artifacts of one table (pad embed --shard I/N) into the whole text artifact, "
        "checking that every shard is there once and all were made from the same texts and settings.",
    )
    p.add_argument("parts", nargs="+", help="the shard folders, in any order")
    p.add_argument("--out", required=True, help="text artifact folder (replaced atomically on success)")
    p.add_argument("--no-cache", action="store_true", help="do not add the table to $PAD_DATA_HOME/text-cache")
    p.set_defaults(func=_embed_merge)

    p = verbs.add_parser(
        "pretrain",
        help="phase 1: train the ID backbone",
        description="Phase 1 of PAD: a sequential recommender (SASRec, GRU4Rec or Caser) on item IDs only.",
    )
    p.add_argument("--dataset", required=True, help="dataset artifact folder (from pad preprocess)")
    p.add_argument("--out", required=True, help="model artifact folder; rerun with the same --out to resume")
    _add_training_options(p)
    p.set_defaults(func=_pretrain)

    p = verbs.add_parser(
        "align",
        help="phase 2: train the alignment expert (L_REC + gamma MK-MMD)",
        description="Phase 2 of PAD: the alignment expert, initialised from the ID model, trained with the "
        "recommendation-anchored alignment loss L_REC + gamma * MK-MMD^2(reduced text, ID embeddings).",
    )
    p.add_argument("--dataset", required=True, help="dataset artifact folder")
    p.add_argument("--text", required=True, help="text artifact folder (from pad embed)")
    p.add_argument("--id-model", required=True, help="phase-1 model artifact (from pad pretrain)")
    p.add_argument("--out", required=True, help="model artifact folder; rerun with the same --out to resume")
    _add_training_options(p)
    g = p.add_argument_group("alignment")
    g.add_argument("--gamma", type=float, help="weight of the alignment loss (default 0.2)")
    g.add_argument("--kernel", help="gaussian = MK-MMD (default); laplacian | linear | cosine | infonce for the ablation")
    g.add_argument("--align-mode", choices=ALIGN_MODES,
                   help="anchored: L_REC + gamma MMD (default); non-anchored: MMD only; frozen: ID table frozen")
    p.set_defaults(func=_align)

    p = verbs.add_parser(
        "finetune",
        help="phase 3: the experts and their frequency-aware fusion",
        description="Phase 3 of PAD: ID, alignment, LLM and text-similarity experts fused per item by a "
        "frequency-aware gate. By default the experts are kept as trained and the gate's per-bucket weights over "
        "their logits (each at unit spread) are fitted on held-out interactions (--fusion; README, 'Phase 3'); "
        "text stays frozen. The paper's PAD: --experts id,align,llm --fusion paper.",
    )
    p.add_argument("--dataset", required=True, help="dataset artifact folder")
    p.add_argument("--text", required=True, help="text artifact folder")
    p.add_argument("--id-model", required=True, help="phase-1 model artifact")
    p.add_argument("--align-model", required=True, help="phase-2 model artifact")
    p.add_argument("--out", required=True, help="model artifact folder; rerun with the same --out to resume")
    _add_training_options(p)
    g = p.add_argument_group("experts")
    g.add_argument("--experts", help="comma list of id,align,llm,sim,tuned (default all five; the paper's: "
                   "id,align,llm; tuned = text similarity under a metric phase 3 learns)")
    g.add_argument("--fusion", help="bucket (default): per-bucket weights over the experts' logits, fitted on "
                   "held-out targets | global: one weight vector, so fitted (no gate) | paper: eq. 11's gate "
                   "trained jointly with the experts | equal: the untrained equal-weight average")
    p.set_defaults(func=_finetune)

    p = verbs.add_parser(
        "train",
        help="train any registered model (PAD or a baseline), all its stages",
        description="Train every stage of a registered model (`pad train --list` names them) and write its model "
        "artifact; earlier stages' artifacts are kept in <out>/stages/. Rerun with the same --out to resume.",
    )
    p.add_argument("--model", help="registered model name, e.g. pad, id, hybrid, morec (see --list)")
    p.add_argument("--list", action="store_true", help="list the registered models and exit")
    p.add_argument("--dataset", help="dataset artifact folder")
    p.add_argument("--text", help="text artifact folder (models that read item texts)")
    p.add_argument("--out", help="model artifact folder; rerun with the same --out to resume")
    p.add_argument("--parent", action="append", metavar="STAGE=MODEL_FOLDER",
                   help="take an earlier stage from this artifact instead of training it, e.g. pretrain=runs/m1")
    _add_training_options(p)
    p.set_defaults(func=_train)

    p = verbs.add_parser(
        "analyze",
        help="Kendall's tau per frequency bucket and near/far pair separation of a run's item spaces",
        description="Compare the item embedding tables of a PAD run (paper Sec. 4.3, Fig. 3, 6, 7): Kendall's tau-b "
        "between behaviour-target distances of the phase-1 ID table and each later ID table, and of the original "
        "text table and each expert's reduced text, per target-item frequency bucket (1 = warm); and how well each "
        "table separates the pairs nearest and farthest in the phase-1 ID space. Writes kendall.json, "
        "separation.json, PNG plots, report.md and report.html.",
    )
    p.add_argument("--dataset", required=True, help="dataset artifact folder")
    p.add_argument("--text", required=True, help="text artifact folder the models were trained with")
    p.add_argument("--id-model", required=True, help="phase-1 model artifact")
    p.add_argument("--align-model", required=True, help="phase-2 model artifact")
    p.add_argument("--final-model", required=True, help="phase-3 model artifact")
    p.add_argument("--out", required=True, help="analysis artifact folder (replaced atomically on success)")
    p.add_argument("--extra-align", action="append", metavar="LABEL=MODEL_FOLDER",
                   help="another phase-2 model to compare with the phase-1 table, e.g. non-anchored=runs/na (repeatable)")
    p.add_argument("--min-pairs", type=int, help="report buckets with fewer pairs as too few (default 100)")
    p.add_argument("--max-pairs", type=int, help="above this many pairs, tau uses a seeded subsample (default 2000000)")
    p.add_argument("--top-fraction", type=float, help="share of nearest / farthest pairs in the separation (default 0.1)")
    p.add_argument("--seed", type=int, help="subsample seed (default 0)")
    p.set_defaults(func=_analyze)

    p = verbs.add_parser(
        "run",
        help="run the whole PAD pipeline locally (kfp.local)",
        description="Run the PAD pipeline (preprocess, embed, pretrain, align, finetune, analyze; with --store also "
        "compare, publish if better, recommend) on this machine with kfp.local, print each step as it starts and "
        "ends, then the metrics table and every artifact's path.",
    )
    p.add_argument("--source", default="prime_pantry", help="data source, as for `pad preprocess` (default prime_pantry)")
    p.add_argument("--encoder", default="minilm", help="text encoder: minilm | llm2vec | hf:<model> (default minilm)")
    p.add_argument("--out", default="runs", help="pipeline root; each run writes runs/pad-<time>/ (default runs)")
    p.add_argument("--backbone", default="sasrec", choices=("sasrec", "gru4rec", "caser"), help="default sasrec")
    p.add_argument("--loss", default="bce", choices=("bce", "ce", "sampled"), help="default bce (the paper's)")
    p.add_argument("--epochs", type=int, default=0,
                   help="epochs per training phase (the rate schedule's length; early stopping may end sooner); "
                        "default 0 = the training default, 60")
    p.add_argument("--gamma", type=float, default=0.2, help="weight of the MK-MMD alignment loss (default 0.2)")
    p.add_argument("--buckets", type=int, default=10, help="frequency buckets (default 10)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--embed-shards", type=int, default=1, help="embedding fan-out width (default 1)")
    p.add_argument("--baselines", help="comma list of registered models to train beside PAD and rank in a "
                   "leaderboard, e.g. hybrid,morec,smem (`pad train --list`; default none)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other pipeline parameter, e.g. train_options='{\"dim\": 32}' (repeatable)")
    p.add_argument("--config", help="placement: a file, or a shipped cluster shape: gke (the default), kind, minikube "
                   "(only its images matter here, with --runner docker)")
    p.add_argument("--threads", type=int, help="CPU threads per step (default: the cores not busy with other work)")
    p.add_argument("--runner", choices=("subprocess", "docker"), default="subprocess",
                   help="subprocess: each step in this Python environment (default); docker: each step in its image "
                        "of the placement file, on the Docker-API engine at $DOCKER_HOST (Docker or podman)")
    p.add_argument("--cache", action="store_true", help="reuse outputs of identical earlier tasks under --out")
    p.add_argument("--verbose", action="store_true", help="also show the KFP executor's own log lines")
    p.add_argument("--as-of", help="train on the data up to this time (as for pad preprocess; default: everything)")
    p.add_argument("--store", default="", help="model store (folder or gs://bucket/prefix): compare the new model with "
                   "its champion, publish it if better, and write its recommendations (default: no store)")
    p.add_argument("--min-gain", type=float, default=0.0,
                   help="relative nDCG@10 gain over the champion needed to publish, e.g. 0.02 (default 0)")
    p.add_argument("--force", action="store_true", help="publish and promote even if not better than the champion")
    p.set_defaults(func=_run)

    p = verbs.add_parser(
        "recommend",
        help="top-K recommendations per user, as Parquet",
        description="Rank every item for each user with a model and write the top K (history excluded, the order "
        "evaluation uses) as Parquet rows user, rank (1 = best), item (the source's id), score.",
    )
    p.add_argument("--model", required=True, help="model artifact, or a published version folder (STORE/versions/V)")
    p.add_argument("--dataset", help="dataset artifact: its users (and, for a model artifact, its item ids)")
    p.add_argument("--text", help="text artifact the model was trained with (models with text experts)")
    p.add_argument("--sequences", help="rank these histories instead: CSV or Parquet with user,item,timestamp rows")
    p.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    p.add_argument("--out", required=True, help="Parquet file (written through a temporary file and a rename)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--batch-users", type=int, default=1024,
                   help="users per batch; fewer when the catalogue is large (at most 16M scores at once)")
    p.set_defaults(func=_recommend)

    p = verbs.add_parser(
        "compare",
        help="the new model against the store's champion on the dataset's test split",
        description="Rank the dataset's test split with the new model and with the store's champion (which scores "
        "only the items it knows, matched by id), decide whether to publish, and write decision.json.",
    )
    p.add_argument("--dataset", required=True, help="the new dataset artifact")
    p.add_argument("--model", required=True, help="the new model artifact (trained on that dataset)")
    p.add_argument("--text", help="its text artifact (models with text experts)")
    p.add_argument("--store", default="", help="model store (folder or gs://bucket/prefix); none = no champion")
    p.add_argument("--min-gain", type=float, default=0.0, help="relative nDCG@10 gain needed to publish (default 0)")
    p.add_argument("--force", action="store_true", help="decide to publish whatever the comparison says")
    p.add_argument("--out", required=True, help="output folder for decision.json")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.set_defaults(func=_compare)

    p = verbs.add_parser(
        "publish",
        help="add a model to a model store as a new version and make it the champion",
        description="Copy a model artifact, its item ids and its text table into the store as an immutable version "
        "<time>-<hash> with a manifest, then make it the champion (unless --no-promote). The champion pointer is "
        "replaced by compare-and-swap: if it changed while publishing, the version stays but is not promoted.",
    )
    p.add_argument("--model", required=True, help="model artifact folder")
    p.add_argument("--dataset", required=True, help="the dataset artifact it was trained on")
    p.add_argument("--text", help="its text artifact (models with text experts)")
    p.add_argument("--to", required=True, help="model store: a folder or gs://bucket/prefix")
    p.add_argument("--no-promote", action="store_true", help="publish without making it the champion")
    p.set_defaults(func=_publish)

    models = verbs.add_parser("models", help="list, show, promote or roll back the versions of a model store",
                              description="Work with the versions of a model store.")
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="every version, its test metrics, and which is champion")
    p.set_defaults(func=_models_list)
    p.add_argument("--store", required=True, help="a folder or gs://bucket/prefix")
    p = actions.add_parser("show", help="a version's manifest (default: the champion's)")
    p.add_argument("version", nargs="?", help="version name (default: the champion)")
    p.add_argument("--store", required=True, help="a folder or gs://bucket/prefix")
    p.set_defaults(func=_models_show)
    p = actions.add_parser("promote", help="make a version the champion")
    p.add_argument("version", help="version name")
    p.add_argument("--store", required=True, help="a folder or gs://bucket/prefix")
    p.set_defaults(func=_models_promote)
    p = actions.add_parser("rollback", help="make the previous champion the champion again")
    p.add_argument("--store", required=True, help="a folder or gs://bucket/prefix")
    p.set_defaults(func=_models_rollback)

    p = verbs.add_parser(
        "serve",
        help="serve the store's champion over KServe's V1 protocol ([serve] extra)",
        description="A KServe model server answering POST /v1/models/<name>:predict with "
        '{"instances": [{"items": [ids, oldest first], "k": 10}]} -> {"predictions": [{"items", "scores", "unknown", '
        '"fallback", "version"}]}. It loads the champion (refusing a corrupt or incompatible one) and follows the '
        "pointer: a new champion is swapped in once it has loaded; one that fails to load is logged and the old one "
        "keeps serving. Concurrent requests are scored together; a history with no known item gets the training "
        'data\'s most popular items, flagged "fallback": "popular".',
    )
    p.add_argument("--store", required=True, help="model store: a folder or gs://bucket/prefix")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--name", default="pad", help="model name in the URL (default pad)")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between checks of the champion pointer (default 30)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--batch-window", type=float, default=BATCH_WINDOW * 1000, metavar="MS",
                   help="milliseconds a batch waits for more requests once it has one "
                   f"(default {BATCH_WINDOW * 1000:g}: it takes those already waiting)")
    p.add_argument("--max-batch", type=int, default=MAX_BATCH,
                   help=f"histories scored in one call at most (default {MAX_BATCH})")
    p.add_argument("--log-requests", action="store_true",
                   help="log every request (uvicorn's access log and kserve's timings; off by default: under load "
                   "they cost much of the server's CPU)")
    p.set_defaults(func=_serve)

    pipeline = verbs.add_parser(
        "pipeline",
        help="compile the KFP package, submit a run, or schedule retraining on a cluster",
        description="Work with the PAD pipeline on a Kubeflow Pipelines cluster.",
    )
    actions = pipeline.add_subparsers(dest="action", metavar="ACTION", required=True)
    images_help = "image record of docker/build.py (default $PAD_IMAGES, else pad-images.json here or in the checkout)"
    unbuilt_help = ("name unbuilt images (pad-<target>:<version>-unbuilt), to read the package: no cluster can pull "
                    "them")
    config_help = "placement: a file, or a shipped cluster shape: gke (the default), kind, minikube"
    p = actions.add_parser("compile", help="write the pipeline package (IR YAML) to upload in the KFP UI")
    p.add_argument("--config", help=config_help)
    p.add_argument("--out", default="pad.yaml", help="package path (default pad.yaml)")
    p.add_argument("--recurring", action="store_true", help="the package for recurring runs (pipeline "
                   "pad-recurring): each run's data as of its scheduled time unless as_of is set")
    p.add_argument("--images", help=images_help)
    p.add_argument("--allow-unbuilt-images", action="store_true", help=unbuilt_help)
    p.set_defaults(func=_pipeline_compile)
    for action, helptext in (("upload", "upload the package, with its parameters described, for runs from the UI"),
                             ("submit", "upload the package and start a run"),
                             ("schedule", "upload the package and create a recurring run")):
        p = actions.add_parser(action, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        p.add_argument("--host", help="KFP API endpoint, e.g. http://localhost:8080 (default $KFP_HOST)")
        p.add_argument("--token", help="bearer token (default $KFP_TOKEN, else the kube context's credentials)")
        p.add_argument("--namespace", help="your profile namespace on multi-user KFP (experiments and runs go there)")
        p.add_argument("--kfp-namespace", default="kubeflow",
                       help="namespace KFP itself runs in, for --kube-context's API-server proxy (default kubeflow)")
        p.add_argument("--kube-context", help="kubeconfig context whose API-server proxy reaches KFP (instead of --host)")
        p.add_argument("--package", help="a compiled package to send (default: compile from --config)")
        p.add_argument("--config", help=config_help)
        p.add_argument("--images", help=images_help)
        p.add_argument("--allow-unbuilt-images", action="store_true", help=unbuilt_help)
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="pipeline parameter, read as its declared type, e.g. source=prime_pantry epochs=50 "
                            "(repeatable)")
        if action == "upload":
            p.add_argument("--recurring", action="store_true", help="upload the recurring package (pad-recurring)")
            p.set_defaults(func=_pipeline_upload)
            continue
        p.add_argument("--experiment", default="pad", help="experiment name (created if missing; default pad)")
        p.add_argument("--name", default="", help="run / recurring-run name")
        p.add_argument("--service-account", help="Kubernetes service account of the run's pods (default: the KFP "
                       "install's, pad-runner with k8s/kfp)")
        if action == "schedule":
            p.add_argument("--cron", required=True,
                           help="6 fields, seconds first: '0 0 3 * * 1' = 03:00 every Monday")
        p.set_defaults(func=_pipeline_submit if action == "submit" else _pipeline_schedule)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except PadError as exc:
        print(f"pad {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pad {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
