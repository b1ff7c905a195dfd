"""`mribench suite | tune | report`: a suite's cells, its learning-rate search, its report."""
from __future__ import annotations

import argparse

from mribench.cli.wiring import blank_to_none as _blank_to_none
from mribench.cli.wiring import positive
from mribench.cli.wiring import truthy as _truthy
from mribench.errors import UserError


def _overrides(args) -> dict:
    import yaml

    from mribench.config import strict_yaml
    out = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = strict_yaml.load(value)
        except yaml.YAMLError as err:
            raise UserError(f"--set {key}: value {value!r} is not valid YAML ({err})") from None
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


def _threads(args) -> None:
    """--threads N: torch threads per cell, beating every share (mribench.train.threads)."""
    from mribench.train import threads

    threads.request(args.threads)


def cmd_suite(args) -> int:
    from mribench.config.suite_file import load_suite

    _threads(args)

    suite = load_suite(args.suite, _overrides(args))
    if args.dry_run:
        from mribench.cli.wiring import device
        from mribench.run.suite import dry_run

        return dry_run(suite, args.json, _blank_to_none(args.data_dir),
                       device(args.device), cost=not args.no_estimate,
                       cache_dir=_blank_to_none(args.cache_dir), recalibrate=args.recalibrate)
    from mribench.cli.wiring import device
    from mribench.run.suite import SuiteOptions, run_suite

    # with Ray each task resolves the device where it runs (the driver may have no GPU)
    where = args.device if args.executor == "ray" else device(args.device)
    opts = SuiteOptions(device=where, data_dir=_blank_to_none(args.data_dir),
                        cache_dir=_blank_to_none(args.cache_dir), force=_truthy(args.force),
                        as_json=args.json, shard=args.shard, executor=args.executor,
                        address=_blank_to_none(args.address))
    return run_suite(suite, opts)


def cmd_report(args) -> int:
    from mribench.report.summary import report

    return report(args.suite, _blank_to_none(args.experiment), args.json, args.all,
                  args.compare, out=_blank_to_none(args.out), write_files=not args.no_files,
                  register=_blank_to_none(args.register))


def cmd_tune(args) -> int:
    from mribench.cli.wiring import device
    from mribench.config.suite_file import load_suite
    from mribench.run.suite import SuiteOptions
    from mribench.run.tuning import tune

    _threads(args)
    suite = load_suite(args.suite, _overrides(args))
    opts = SuiteOptions(device=device(args.device), data_dir=_blank_to_none(args.data_dir),
                        cache_dir=_blank_to_none(args.cache_dir), as_json=args.json)
    return tune(suite, args.model, args.strategy, args.dataset, args.trials, opts,
                args.storage, tuple(args.lr_range))


def register(sub) -> None:
    p = sub.add_parser("suite", help="run a suite (bare name from suites/ or a YAML path)")
    p.add_argument("suite", help="a shipped suite's name (e.g. smoke) or a path to a YAML file")
    p.add_argument("--dry-run", action="store_true", help="print the cell matrix, what the "
                   "suite needs here (data, weights) and its estimated cost, then exit")
    p.add_argument("--no-estimate", action="store_true", help="with --dry-run: skip the cost "
                   "estimate (and its calibration, under a minute per model and image size on a CPU)")
    p.add_argument("--recalibrate", action="store_true", help="with --dry-run: measure this "
                   "machine again (the rates are cached per machine, model, size, strategy, batch and "
                   "device)")
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
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: cells one after another here; ray: each cell a Ray task with "
                   "the suite's resources (pip install 'brain-mri-benchmark[ray]')")
    p.add_argument("--address", default=None, help="with --executor ray: the cluster (auto, "
                   "HOST:PORT or ray://HOST:10001); default: start Ray on this machine")
    _threads_option(p)
    p.add_argument("--json", action="store_true", help="print the result table as JSON on stdout")
    p.set_defaults(func=cmd_suite)

    p = sub.add_parser("tune", help="Optuna search over the learning rates of one "
                       "(dataset, model, strategy) of a suite, scored on validation loss")
    p.add_argument("suite", help="a shipped suite's name or a path to a YAML file")
    p.add_argument("--model", required=True, help="a model of the suite (its name or label)")
    p.add_argument("--strategy", required=True, help="a strategy of the suite")
    p.add_argument("--dataset", default=None, help="default: the suite's first dataset")
    p.add_argument("--trials", type=int, default=20, help="finished trials the study should "
                   "hold in total (a rerun on the same storage runs only the rest)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default "
                   "sqlite:///optuna.db); reuse it to resume or share a study")
    p.add_argument("--lr-range", type=float, nargs=2, default=(1e-5, 1e-2),
                   metavar=("LOW", "HIGH"), help="log-uniform range of the learning rate(s)")
    for flag, what in (("--epochs", "override training.epochs"),
                       ("--data-dir", "where datasets live (else BENCHMARK_DATA_DIR)"),
                       ("--cache-dir", "decoded-image cache directory"),
                       ("--experiment", "override the MLflow experiment name")):
        p.add_argument(flag, default=None, help=what)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any suite key")
    _threads_option(p)
    p.add_argument("--json", action="store_true", help="print the trials as JSON on stdout")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="compare a suite's runs from MLflow: table with 95%% "
                       "intervals on stdout; HTML page, Markdown, figures and CSVs to a folder")
    p.add_argument("suite", help="a shipped suite's name or a path to a YAML file")
    p.add_argument("--experiment", default=None, help="read this MLflow experiment instead of "
                   "the suite's")
    p.add_argument("--all", action="store_true",
                   help="include cells of older versions of the suite (other run_keys)")
    p.add_argument("--compare", action="store_true",
                   help="also print the paired tests between configurations (always in the "
                        "files and in --json)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="report folder (default ./reports/SUITE); also logged to the suite's "
                        "latest parent run under report/")
    p.add_argument("--no-files", action="store_true", help="console/JSON only: write no folder")
    p.add_argument("--register", default=None, metavar="NAME", help="register the best "
                   "configuration's model (its median-accuracy seed) in the MLflow Model Registry "
                   "as NAME with alias champion: then `mribench predict models:/NAME@champion`")
    p.add_argument("--json", action="store_true", help="print every table as JSON on stdout")
    p.set_defaults(func=cmd_report)


def _threads_option(p) -> None:
    p.add_argument("--threads", type=positive, default=None, metavar="N",
                   help="torch threads per cell (default: BENCHMARK_THREADS, else Ray's "
                   "cpus_per_cell, else OMP_NUM_THREADS, else the machine's cores); with K "
                   "shards or tune processes side by side on one node, give each cores/K")
