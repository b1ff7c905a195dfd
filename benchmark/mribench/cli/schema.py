"""`mribench schema`: the JSON Schema of suite files, for editors (no heavy imports here)."""
from __future__ import annotations

from mribench.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("schema", help="write the JSON Schema of suite files (editors "
                              "validate and complete suite keys with it)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write it to FILE (default: print it on stdout)")
    p.set_defaults(func=cmd_schema)


def cmd_schema(args) -> int:
    from pathlib import Path

    from mribench.config.json_schema import render
    from mribench.console import console, esc, results_stream

    text = render()
    if args.out is None:
        results_stream().write(text)
        return 0
    out = Path(args.out)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"--out {out}: cannot be written ({err.strerror or err})") from None
    console.print(f"wrote the suite schema to {esc(out)}; a suite beside it uses it with the "
                  f"first line `# yaml-language-server: $schema={esc(out.name)}`", highlight=False)
    return 0
