"""Command line: sub-commands only; the work lives in the modules they call."""
from __future__ import annotations

import argparse
import os
import sys

import yaml
from rich.markup import escape

from benchmark.console import console


def _truthy(value: str) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _blank_to_none(value: str | None) -> str | None:
    # MLproject passes unset parameters as empty strings
    return value if value not in (None, "") else None


def _overrides(args) -> dict:
    out = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    if _blank_to_none(args.epochs):
        out["training.epochs"] = int(args.epochs)
    if _blank_to_none(args.experiment):
        out["experiment"] = args.experiment
    return out


def _shard(value: str) -> tuple[int, int]:
    k, sep, n = str(value).partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise argparse.ArgumentTypeError(f"--shard expects K/N with 0 <= K < N, got {value!r}")
    return int(k), int(n)


def cmd_suite(args) -> int:
    from benchmark.config import load_suite
    from benchmark.engine import resolve_device
    from benchmark.suite import SuiteOptions, dry_run, run_suite

    suite = load_suite(args.suite, _overrides(args))
    if args.dry_run:
        return dry_run(suite, args.json)
    opts = SuiteOptions(device=resolve_device(args.device), data_dir=_blank_to_none(args.data_dir),
                        cache_dir=_blank_to_none(args.cache_dir), force=_truthy(args.force),
                        as_json=args.json, shard=args.shard)
    return run_suite(suite, opts)


def cmd_report(args) -> int:
    from benchmark.report import report

    return report(args.suite, _blank_to_none(args.experiment), args.json, args.all,
                  args.compare)


def cmd_tune(args) -> int:
    from benchmark.config import load_suite
    from benchmark.engine import resolve_device
    from benchmark.suite import SuiteOptions
    from benchmark.tuning import tune

    suite = load_suite(args.suite, _overrides(args))
    opts = SuiteOptions(device=resolve_device(args.device), data_dir=_blank_to_none(args.data_dir),
                        cache_dir=_blank_to_none(args.cache_dir), as_json=args.json)
    return tune(suite, args.model, args.strategy, args.dataset, args.trials, opts,
                args.storage, tuple(args.lr_range))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark",
        description="Transfer-learning benchmarks for brain MRI classification, tracked in MLflow.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("suite", help="run a suite (bare name from suites/ or a YAML path)")
    p.add_argument("suite")
    p.add_argument("--dry-run", action="store_true", help="print the cell matrix and exit")
    p.add_argument("--epochs", default=None, help="override training.epochs")
    p.add_argument("--data-dir", default=None, help="where datasets live (else "
                   "BENCHMARK_DATA_DIR, else ./data)")
    p.add_argument("--cache-dir", default=None, help="decoded-image cache directory")
    p.add_argument("--experiment", default=None, help="override the MLflow experiment name")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--force", nargs="?", const="true", default="false",
                   help="rerun cells that already have a finished run")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any suite key, e.g. --set preprocess.image_size=64")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N",
                   help="run only cells K, K+N, K+2N, ... (worker K of N, e.g. a job array)")
    p.add_argument("--json", action="store_true", help="print the result table as JSON on stdout")
    p.set_defaults(func=cmd_suite)

    p = sub.add_parser("tune", help="Optuna search over the learning rates of one "
                       "(dataset, model, strategy) of a suite, scored on validation loss")
    p.add_argument("suite")
    p.add_argument("--model", required=True)
    p.add_argument("--strategy", required=True)
    p.add_argument("--dataset", default=None, help="default: the suite's first dataset")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--storage", default=None, help="Optuna storage URL (default "
                   "sqlite:///optuna.db); reuse it to resume or share a study")
    p.add_argument("--lr-range", type=float, nargs=2, default=(1e-5, 1e-2),
                   metavar=("LOW", "HIGH"))
    for flag in ("--epochs", "--data-dir", "--cache-dir", "--experiment"):
        p.add_argument(flag, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="compare a suite's runs from MLflow (mean and 95%% CI)")
    p.add_argument("suite")
    p.add_argument("--experiment", default=None)
    p.add_argument("--all", action="store_true",
                   help="include cells of older versions of the suite (other run_keys)")
    p.add_argument("--compare", action="store_true",
                   help="paired McNemar tests between configurations on the same test images")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)

    from benchmark.data.commands import register as register_data
    from benchmark.models.commands import register as register_models

    from benchmark.perf import register as register_perf

    register_data(sub)
    register_models(sub)
    register_perf(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmark.config import SuiteError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SuiteError, ValueError, FileNotFoundError) as err:
        if os.environ.get("BENCHMARK_DEBUG"):
            raise
        # bad input: a clear message, no traceback (BENCHMARK_DEBUG=1 shows it)
        console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
