"""`mribench models list` and `mribench models describe`: the registry as tables (or --json)."""
from __future__ import annotations

import os

from mribench.console import emit_table
from mribench.models import strategies


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="the model zoo: list entries, describe a setup")
    sub = parser.add_subparsers(dest="models_command", required=True)

    lst = sub.add_parser("list", help="registered models, parameter counts, weight sources")
    lst.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    lst.set_defaults(func=cmd_list)

    desc = sub.add_parser("describe", help="parameter and layer counts for model+head+strategy")
    desc.add_argument("model", help="a registered model name (see `mribench models list`)")
    desc.add_argument("--head", default="linear",
                      choices=["linear", "gap_mlp", "flatten_mlp", "conv_gap_mlp"])
    desc.add_argument("--hidden", type=int, default=1024, help="hidden units of an MLP head")
    desc.add_argument("--dropout", type=float, default=0.0)
    desc.add_argument("--strategy", default=strategies.FULL.name, choices=strategies.names())
    desc.add_argument("--blocks", type=int, default=1, help="partial: last N block groups trained")
    desc.add_argument("--num-classes", type=int, required=True)
    desc.add_argument("--in-chans", type=int, default=3, choices=[1, 3])
    desc.add_argument("--image-size", type=int, default=None,
                      help="input side in pixels (default: the model's own input size)")
    desc.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    desc.set_defaults(func=cmd_describe)

    fetch = sub.add_parser("fetch", help="copy pretrained weights into a folder for offline use "
                                         "(then set BENCHMARK_WEIGHTS_DIR to it)")
    fetch.add_argument("models", nargs="+", help="registered model names")
    fetch.add_argument("--dir", required=True, help="destination folder")
    fetch.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    fetch.set_defaults(func=cmd_fetch)


def weight_sources(spec) -> str:
    """Where `pretrained: imagenet` would come from, in resolution order (no download)."""
    from mribench import environment
    from mribench.models.weights import EXTENSIONS, pip_file

    out = []
    wdir = environment.weights_dir()
    if wdir and any(os.path.isfile(os.path.join(wdir, spec.name + e)) for e in EXTENSIONS):
        out.append(f"weights_dir ({wdir})")
    if spec.pip:
        out.append(f"pip:{spec.pip}" + ("" if pip_file(spec.pip) else " (not installed)"))
    if spec.hub:
        out.append(f"hub:{spec.source}:{spec.hub}")
    return ", ".join(out) or "none (scratch only)"


def cmd_list(args) -> int:
    import torch

    from mribench.models import registry
    from mribench.models.archs import create_network, make_trunk

    rows = []
    for name in registry.names():
        spec = registry.get(name)
        with torch.device("meta"):  # shapes only: no memory, no init cost
            net = create_network(spec)
            imagenet = sum(p.numel() for p in net.parameters())
            backbone = sum(p.numel() for p in make_trunk(net, spec, False, 3).parameters())
        rows.append({"name": name, "source": spec.source, "arch": spec.arch,
                     "input_size": spec.input_size, "block_groups": len(spec.groups),
                     "params_backbone": backbone, "params_imagenet": imagenet,
                     "gradcam_layer": spec.gradcam, "weights": weight_sources(spec)})
    emit_table(rows, "Registered models", args.json)
    return 0


def cmd_describe(args) -> int:
    from mribench.config.schema import HeadConfig, ModelConfig, StrategyConfig
    from mribench.models.build import build

    model = ModelConfig(name=args.model, head=HeadConfig(type=args.head, hidden=args.hidden,
                                                          dropout=args.dropout))
    strategy = StrategyConfig(name=args.strategy, blocks=args.blocks)
    built = build(model, strategy, args.num_classes, args.in_chans, image_size=args.image_size,
                  load_weights=False)
    keep = ("params_total", "params_trainable", "params_non_trainable", "params_bn_statistics",
            "params_backbone",
            "params_head", "layers_conv", "layers_dense", "layers_activation", "layers_norm",
            "layers_other", "model_block_groups", "model_trainable_groups",
            "model_feature_shape", "model_image_size")
    rows = [{"name": key.removeprefix("model_"), "value": built.info[key]} for key in keep]
    emit_table(rows, f"{args.model} + {args.head} head + {args.strategy}", args.json,
               extra={"model": args.model, "head": args.head, "strategy": args.strategy,
                      "trainable_block_groups": [list(g) for g in built.trainable_group_names()],
                      "weights": weight_sources(built.spec)})
    return 0


def cmd_fetch(args) -> int:
    import shutil

    from mribench.models import registry
    from mribench.models.weights import resolve
    from mribench.outputs import folder_target

    dest = folder_target(args.dir, "--dir")
    dest.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models:
        found = resolve(registry.get(name))  # raises with every place searched
        target = dest / f"{name}{found.path.suffix}"
        if found.path.resolve() != target.resolve():
            shutil.copyfile(found.path, target)
        rows.append({"model": name, "source": found.source, "file": str(target),
                     "sha256": found.sha256})
    emit_table(rows, f"Weights in {dest} (export BENCHMARK_WEIGHTS_DIR={dest})", args.json)
    return 0
