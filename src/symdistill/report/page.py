"""A run report as Markdown and as one self-contained HTML page (figures embedded)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from symdistill.io import write_text


@dataclass
class Report:
    """Sections of text, tables and figures; written as ``report.md`` and ``report.html``."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def code(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", (header, [[_fmt(c) for c in r] for r in rows])))

    def figure(self, path, caption: str = "") -> None:
        self.blocks.append(("img", (Path(path), caption)))

    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for kind, b in self.blocks:
            if kind == "h2":
                out += [f"## {b}", ""]
            elif kind == "p":
                out += [b, ""]
            elif kind == "pre":
                out += ["```", b, "```", ""]
            elif kind == "table":
                header, rows = b
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("")
            elif kind == "img":
                path, caption = b
                out += [f"![{caption}]({_relative(path, base)})", f"*{caption}*" if caption else "", ""]
        return "\n".join(out)

    def html(self) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
               "pre{background:#f4f4f4;padding:8px;overflow-x:auto}img{max-width:100%}</style></head><body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        for kind, b in self.blocks:
            if kind == "h2":
                out.append(f"<h2>{html.escape(b)}</h2>")
            elif kind == "p":
                out.append(f"<p>{html.escape(b)}</p>")
            elif kind == "pre":
                out.append(f"<pre>{html.escape(b)}</pre>")
            elif kind == "table":
                header, rows = b
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            elif kind == "img":
                path, caption = b
                data = base64.b64encode(Path(path).read_bytes()).decode()
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, folder) -> tuple[Path, Path]:
        folder = Path(folder)
        md, page = folder / "report.md", folder / "report.html"
        write_text(md, self.markdown(folder))
        write_text(page, self.html())
        return md, page


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)
