"""`report --compare` on a console: one line per pair of configurations, narrow enough for a
100-column terminal. The test used is a short code with a legend below the table, and so are
the configurations when their names would make the table too wide (the full names, the
repeats and what the interval covers are in --json and the report files)."""
from __future__ import annotations

from mribench.console import emit_table

PAIR_WIDTH = 30  # the widest "a - b" shown in full; wider pairs name configurations by letter


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _p(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2g}" if value < 0.001 else f"{value:.4f}".rstrip("0").rstrip(".")


def _letters(i: int) -> str:
    """A, B, ..., Z, AA, AB, ...: short names for configurations."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def compact_rows(pairs: list[dict], with_dataset: bool) -> tuple[list[dict], dict[str, str]]:
    """(rows, legend): `a - b` with its difference and 95% interval, the raw and Holm-adjusted
    p-values, the smallest difference the test could detect, and the test's code."""
    legend: dict[str, str] = {}  # the tests' codes
    rows = []
    names = list(dict.fromkeys(n for p in pairs for n in (p.get("a"), p.get("b"))))
    wide = any(len(f"{p.get('a')} - {p.get('b')}") > PAIR_WIDTH for p in pairs)
    letter = {n: _letters(i) for i, n in enumerate(names)} if wide else {n: n for n in names}
    for p in pairs:
        test = " ".join(str(p.get(k)) for k in ("test", "covers") if p.get(k))
        code = next((c for c, t in legend.items() if t == test), None)
        if code is None and test:
            code = f"T{len(legend) + 1}"
            legend[code] = test
        ci = p.get("ci95") or [None, None]
        row = {**({"dataset": p.get("dataset")} if with_dataset else {}),
               "subset": p.get("subset"), "a - b": f"{letter[p.get('a')]} - {letter[p.get('b')]}"}
        if "error" in p:
            rows.append({**row, "difference [95% CI]": p["error"]})
            continue
        acc = [p.get("accuracy_a"), p.get("accuracy_b")]
        rows.append({**row,
                     "acc a / b": ("-" if None in acc else f"{acc[0]:.3f} / {acc[1]:.3f}"),
                     "difference [95% CI]": f"{_signed(p.get('difference'))} "
                                            f"[{_signed(ci[0])}, {_signed(ci[1])}]",
                     "p": _p(p.get("p_value")), "p_holm": _p(p.get("p_holm")),
                     "detectable": ("-" if p.get("detectable") is None
                                    else f"{p['detectable']:.3f}"),
                     "n": f"{p.get('images', '-')}x{p.get('repeats', p.get('seeds', '-'))}",
                     "test": code or "-"})
    configs = {letter[n]: str(n) for n in names} if wide else {}
    return rows, configs | legend


def print_pairs(pairs: list[dict], with_dataset: bool) -> None:
    rows, legend = compact_rows(pairs, with_dataset)
    extra = {code: text for code, text in legend.items()}
    extra["n"] = "test images x repeats (seeds, folds or resamples)"
    emit_table(rows, "paired tests on the test images both configurations scored "
               "(Holm-adjusted per subset)", False, extra=extra)
