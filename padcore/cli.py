"""The `pad` command line: one verb per pipeline step, plus the pipeline verbs.

Each verb parses its options and calls the one padcore step function that the
KFP component and the container entrypoint call too.
"""

from __future__ import annotations

import argparse
import sys

from padcore.config import ALIGN_MODES, BACKBONES, KERNELS, LOSSES, TrainConfig
from padcore.errors import PadError


def _preprocess(args: argparse.Namespace) -> None:
    from padcore.steps import preprocess

    preprocess(args.source, args.out, max_len=args.max_len, min_len=args.min_len, buckets=args.buckets)


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
    g.add_argument("--backbone", choices=BACKBONES, help="sequence encoder (default sasrec)")
    g.add_argument("--loss", choices=LOSSES, help="bce: the paper's one sampled negative; ce: full softmax; sampled: shared negatives")
    g.add_argument("--dim", type=int, help="model width d (default 64)")
    g.add_argument("--epochs", type=int, help="maximum epochs (default 200; early stopping ends sooner)")
    g.add_argument("--patience", type=int, help="epochs without a better validation nDCG@10 before stopping (default 10)")
    g.add_argument("--batch-size", type=int, help="users per batch (default 128)")
    g.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
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

    opts = _training_options(args)
    if args.no_gate:
        opts["gate"] = False
    finetune(args.dataset, args.text, args.id_model, args.align_model, args.out, **opts)


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
    p.set_defaults(func=_preprocess)

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
    g.add_argument("--kernel", choices=KERNELS, help="gaussian = MK-MMD (default); others for the ablation")
    g.add_argument("--align-mode", choices=ALIGN_MODES,
                   help="anchored: L_REC + gamma MMD (default); non-anchored: MMD only; frozen: ID table frozen")
    p.set_defaults(func=_align)

    p = verbs.add_parser(
        "finetune",
        help="phase 3: fine-tune the triple experts with the frequency-aware gate",
        description="Phase 3 of PAD: ID, alignment and LLM experts fused per item by a frequency-aware gate, "
        "trained with L_REC only; text stays frozen.",
    )
    p.add_argument("--dataset", required=True, help="dataset artifact folder")
    p.add_argument("--text", required=True, help="text artifact folder")
    p.add_argument("--id-model", required=True, help="phase-1 model artifact")
    p.add_argument("--align-model", required=True, help="phase-2 model artifact")
    p.add_argument("--out", required=True, help="model artifact folder; rerun with the same --out to resume")
    _add_training_options(p)
    g = p.add_argument_group("experts")
    g.add_argument("--experts", type=lambda s: tuple(s.split(",")), help="comma list of id,align,llm (default all three)")
    g.add_argument("--no-gate", action="store_true", help="fuse experts with one learned weight vector (ablation)")
    p.set_defaults(func=_finetune)
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
