"""`mribench predict | evaluate`: using the models that suites logged (mribench/inference/)."""
from __future__ import annotations

import argparse

from mribench.cli.wiring import blank_to_none
from mribench.errors import UserError

MODEL_HELP = ("a run id, runs:/<run id>/model, models:/<name>@<alias> or /<version>, or "
              "models:/m-<logged model id>; or name a suite cell with --suite/--model/--strategy/"
              "--seed")


def _mapping(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"{flag} expects FROM=TO, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _uri(args, positional: str | None) -> str:
    from mribench.inference.locate import model_uri

    return model_uri(positional, blank_to_none(args.suite), args.model, args.strategy, args.seed,
                     blank_to_none(args.dataset))


def _device(name: str) -> str:
    from mribench.cli.wiring import device

    return device(name)


def cmd_predict(args) -> int:
    from mribench.inference.predict import predict

    targets = list(args.targets)
    model = None if args.suite else (targets.pop(0) if targets else None)
    if not targets:
        raise UserError("predict: name at least one image, folder or CSV manifest after the model")
    return predict(_uri(args, model), targets, _device(args.device), blank_to_none(args.csv),
                   args.json, args.explain, blank_to_none(args.out), args.raw_probabilities,
                   args.abstain_below)


def cmd_evaluate(args) -> int:
    from pydantic import ValidationError

    from mribench.config.external import ExternalConfig
    from mribench.inference.evaluate import evaluate

    sources = [x for x in (args.dataset_name, args.root, args.manifest) if x]
    if len(sources) != 1:
        raise UserError("evaluate: give exactly one of --dataset NAME, --root DIR, --manifest CSV")
    name = args.dataset_name or args.name or (args.root or args.manifest)
    try:
        cfg = ExternalConfig(name=name, root=args.root, manifest=args.manifest,
                             label_map=_mapping(args.label_map, "--label-map"),
                             prediction_map=_mapping(args.prediction_map, "--prediction-map"),
                             near_bits=args.near_bits, on_bad_image=args.on_bad_image,
                             alias=args.alias)
    except ValidationError as err:  # one line per flag at fault, named as typed
        from mribench.config.problems import lines

        flags = {"name": "--dataset" if args.dataset_name else "--name", "near_bits": "--near-bits",
                 "alias": "--alias", "label_map": "--label-map",
                 "prediction_map": "--prediction-map"}
        raise UserError("\n".join(f"evaluate: {line}" for line in lines(
            err, ExternalConfig, flags))) from None
    return evaluate(_uri(args, args.model_ref), cfg, blank_to_none(args.data_dir),
                    _device(args.device), args.json)


def _cell_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None, help="find the model of this suite's cell (the "
                   "newest finished run of its run_key)")
    p.add_argument("--model", default=None, help="with --suite or a suite's run id: the "
                   "cell's model")
    p.add_argument("--strategy", default=None, help="with --suite or a suite's run id: the "
                   "cell's strategy")
    p.add_argument("--seed", type=int, default=None, help="with --suite or a suite's run id: "
                   "the cell's seed")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def register(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities of a logged model for new images "
                       "(files, folders, CSV manifests)")
    p.add_argument("targets", nargs="*", metavar="[MODEL] PATH",
                   help=f"MODEL: {MODEL_HELP}; then images, folders or CSV manifests "
                        "(a `path` column, optionally `label`)")
    _cell_flags(p)
    p.add_argument("--dataset", default=None, help="with --suite: the cell's dataset, when "
                   "the suite has several")
    p.add_argument("--csv", default=None, metavar="FILE", help="write the rows to this CSV "
                   "instead of printing the table")
    p.add_argument("--explain", choices=("gradcam", "lime"), default=None,
                   help="also write one overlay image per input (needs --out)")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for --explain overlays")
    p.add_argument("--raw-probabilities", action="store_true", help="the network's raw softmax "
                   "instead of the calibrated probabilities (temperature fitted on the cell's "
                   "validation split)")
    p.add_argument("--abstain-below", type=float, default=None, metavar="P",
                   help="add a `refer` column: True where the highest class probability is "
                   "below P (0 < P <= 1); the summary counts the referred images")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="test a logged model on a set it has not seen, with the "
                       "duplicate audit against its own training images; logged as a nested run")
    p.add_argument("model_ref", nargs="?", default=None, metavar="MODEL", help=MODEL_HELP)
    _cell_flags(p)
    p.add_argument("--dataset", dest="dataset_name", default=None, metavar="NAME",
                   help="a registered dataset, used whole")
    p.add_argument("--root", default=None, metavar="DIR", help="a folder of class folders")
    p.add_argument("--manifest", default=None, metavar="CSV", help="a CSV with path,label")
    p.add_argument("--name", default=None, help="the set's name with --root/--manifest")
    p.add_argument("--alias", default=None, help="the name inside metric keys "
                   "(external_<alias>_accuracy)")
    p.add_argument("--label-map", action="append", metavar="FROM=TO",
                   help="the set's label -> the model's class (repeatable)")
    p.add_argument("--prediction-map", action="append", metavar="FROM=TO",
                   help="the model's class -> an evaluation label; several may fold into one, "
                        "e.g. glioma=yes (repeatable)")
    p.add_argument("--near-bits", type=int, default=16,
                   help="near duplicates: at most this many of 256 hash bits differ")
    p.add_argument("--on-bad-image", choices=("error", "skip"), default="error")
    p.add_argument("--data-dir", default=None, help="where datasets live (else "
                   "BENCHMARK_DATA_DIR, else ./data)")
    p.set_defaults(func=cmd_evaluate, dataset=None)
