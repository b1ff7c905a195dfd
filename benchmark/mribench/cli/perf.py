"""`mribench perf` arguments; the measuring lives in mribench.train.perf (imported when it runs)."""
from __future__ import annotations

from mribench.cli.wiring import positive


def register(subparsers) -> None:
    p = subparsers.add_parser("perf", help="measure pipeline vs synthetic throughput, fp32 vs "
                              "the fast path, and frozen vs full epochs (repeated, interleaved)")
    p.add_argument("--model", default="efficientnet_lite0",
                   help="a registered model with pretrained weights available (default has "
                   "pip-shipped weights, so it works offline)")
    p.add_argument("--dataset", default="brain-tumor-mri-7023")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--per-class", type=int, default=40, help="training images per class")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="the fast path's precision (auto: what training.precision: auto picks; "
                   "bf16 where that is fp32, i.e. on CPU)")
    p.add_argument("--repeats", type=positive, default=5,
                   help="interleaved rounds; ratios are reported as median and min-max")
    p.add_argument("--passes", type=positive, default=1,
                   help="read the training images this many times per measurement (a small "
                   "image set still gives a GPU enough batches to time)")
    p.add_argument("--concurrent", type=positive, default=None, metavar="N",
                   help="instead: N processes training at once, each with its share of the "
                   "cores, against one process with every core (CPU; see docs/speed.md)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_perf)


def cmd_perf(args) -> int:
    if args.concurrent:
        from mribench.train import perf_share

        return perf_share.run(args)
    from mribench.train.perf import run

    return run(args)

