"""The `pad` command line: one verb per pipeline step, plus the pipeline verbs.

Each verb parses its options and calls the one padcore step function that the
KFP component and the container entrypoint call too.
"""

from __future__ import annotations

import argparse
import sys

from padcore.errors import PadError


def _preprocess(args: argparse.Namespace) -> None:
    from padcore.steps import preprocess

    preprocess(args.source, args.out, max_len=args.max_len, min_len=args.min_len, buckets=args.buckets)


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
