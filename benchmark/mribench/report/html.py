"""Lay a report out as one self-contained HTML page (figures embedded as base64 PNG, no script,
no external resource) and as Markdown (figures as PNG files beside it), from sections."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}.meta{color:#666;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0;max-width:100%}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:right;vertical-align:top;
overflow-wrap:anywhere}.wide{overflow-x:auto;max-width:100%}
th{background:#f4f4f6}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafc}img{max-width:100%;height:auto}
figure{margin:.6rem 0}.files{font-size:.8rem;color:#666}
.gallery td,.gallery th{text-align:center}.note li{margin:.3rem 0}
.gallery img{max-width:min(460px,24vw)}.note{background:#f6f8fa;border-left:3px solid #8aa;
padding:.2rem .8rem;font-size:.9rem}.note ul{padding-left:1.2rem}
"""


@dataclass
class Section:
    title: str
    paragraphs: list[str] = field(default_factory=list)  # plain text, escaped on output
    table: list[dict] | None = None
    figure: str | None = None  # a PNG file name in the report folder
    gallery: dict[str, dict[str, str]] | None = None  # row -> column -> PNG file name
    files: list[str] = field(default_factory=list)  # CSV files behind the table/figure
    note: bool = False  # paragraphs shown as a highlighted note


def _png(folder: Path, name: str) -> str:
    data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _html_table(rows: list[dict], css: str = "") -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r.get(c)))}</td>" for c in cols)
                   + "</tr>" for r in rows)
    # a wide table wraps its cells (overflow-wrap) and, at worst, scrolls inside its own box:
    # the page itself never scrolls sideways (checked at 1280 px in tests/report)
    return (f"<div class='wide'><table{css}><thead><tr>{head}</tr></thead><tbody>{body}"
            "</tbody></table></div>")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_html(folder: Path, title: str, meta: list[str], sections: list[Section]) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='meta'>{html.escape(m)}</p>" for m in meta]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.note:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in s.paragraphs)
            parts.append(f"<div class='note'><ul>{items}</ul></div>")
        else:
            parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        if s.table:
            parts.append(_html_table(s.table))
        if s.figure:
            parts.append(f"<figure><img src='{_png(folder, s.figure)}' "
                         f"alt='{html.escape(s.title)}'></figure>")
        if s.gallery:
            cols = list(dict.fromkeys(c for row in s.gallery.values() for c in row))
            head = "".join(f"<th>{html.escape(c)}</th>" for c in ["configuration", *cols])
            body = ""
            for name, row in s.gallery.items():
                cells = "".join(f"<td><img src='{_png(folder, row[c])}' alt='{html.escape(c)} "
                                f"{html.escape(name)}'></td>" if c in row else "<td>-</td>"
                                for c in cols)
                body += f"<tr><td>{html.escape(name)}</td>{cells}</tr>"
            parts.append(f"<div class='wide'><table class='gallery'><thead><tr>{head}</tr>"
                         f"</thead><tbody>{body}</tbody></table></div>")
        if s.files:
            parts.append(f"<p class='files'>data: {html.escape(', '.join(s.files))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _md_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def esc(v) -> str:
        return _cell(v).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(title: str, meta: list[str], sections: list[Section]) -> str:
    parts = [f"# {title}", "", *[f"{m}  " for m in meta]]
    for s in sections:
        parts += ["", f"## {s.title}", ""]
        for p in s.paragraphs:
            parts += [("- " if s.note else "") + p, "" if not s.note else None]
        parts = [p for p in parts if p is not None] + ([""] if s.note else [])
        if s.table:
            parts += [_md_table(s.table), ""]
        if s.figure:
            parts += [f"![{s.title}]({s.figure})", ""]
        if s.gallery:
            gallery = [{"configuration": name, **{c: f"![{c}]({f})" for c, f in row.items()}}
                       for name, row in s.gallery.items()]
            parts += [_md_table(gallery), ""]
        if s.files:
            parts += ["data: " + ", ".join(f"[{f}]({f})" for f in s.files), ""]
    return "\n".join(parts) + "\n"


def write(folder: Path, title: str, meta: list[str], sections: list[Section]) -> tuple[Path, Path]:
    """index.html and report.md into folder (which already holds the PNG and CSV files)."""
    page, md = folder / "index.html", folder / "report.md"
    page.write_text(render_html(folder, title, meta, sections), encoding="utf-8")
    md.write_text(render_markdown(title, meta, sections), encoding="utf-8")
    return page, md
