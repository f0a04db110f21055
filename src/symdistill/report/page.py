"""A run report as Markdown and as one self-contained HTML page (figures embedded as data: URIs, no
external URL, no script), so the page can be mailed or archived as one file."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from symdistill.io import write_text

_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
          "h1{font-size:1.5em;margin-bottom:.3em}table{border-collapse:collapse;margin:.5em 0}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
          "pre{background:#f4f4f4;padding:8px;overflow-x:auto}img{max-width:100%}"
          "figure{margin:1em 0}figcaption{color:#444;font-size:.92em}"
          ".verdict{font-size:1.15em;padding:.5em .8em;border-left:6px solid #999;background:#f7f7f7}"
          ".verdict.good{border-color:#2a8a3e}.verdict.bad{border-color:#c0392b}.verdict.partial{border-color:#d68910}"
          "details{margin:.4em 0 1em}summary{cursor:pointer;color:#1a5276}td.pass{color:#2a8a3e}td.fail{color:#c0392b}")


@dataclass
class Report:
    """Sections of text, tables and figures; written as ``report.md`` and ``report.html``."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def verdict(self, text: str, tone: str) -> None:
        """The one-line verdict, ``tone`` one of good, partial, bad."""
        self.blocks.append(("verdict", (text, tone)))

    def code(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", (header, [[_fmt(c) for c in r] for r in rows])))

    def details(self, summary: str, tables: list[tuple[str, list[str], list[list]]]) -> None:
        """A folded block: ``summary`` shown, then each (title, header, rows) table when opened."""
        self.blocks.append(("details", (summary, [(t, h, [[_fmt(c) for c in r] for r in rows])
                                                  for t, h, rows in tables])))

    def figure(self, path, caption: str = "") -> None:
        self.blocks.append(("img", (Path(path), caption)))

    def markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for kind, b in self.blocks:
            out += _MARKDOWN[kind](b, base) + [""]
        return "\n".join(out)

    def html(self) -> str:
        out = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(self.title)}</title>",
               f"<style>{_STYLE}</style></head><body>", f"<h1>{_e(self.title)}</h1>"]
        out += [_HTML[kind](b) for kind, b in self.blocks]
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, folder) -> tuple[Path, Path]:
        folder = Path(folder)
        md, page = folder / "report.md", folder / "report.html"
        write_text(md, self.markdown(folder))
        write_text(page, self.html())
        return md, page


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    cell = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return (["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def _md_figure(b, base: Path) -> list[str]:
    path, caption = b
    return [f"![{caption}]({_relative(path, base)})", f"*{caption}*" if caption else ""]


def _md_details(b, base: Path) -> list[str]:
    summary, tables = b
    out = ["<details>", f"<summary>{_e(summary)}</summary>", ""]
    for title, header, rows in tables:
        out += [f"**{title}**", ""] + _md_table(header, rows) + [""]
    return out + ["</details>"]


_MARKDOWN = {
    "h2": lambda b, base: [f"## {b}"],
    "p": lambda b, base: [b],
    "verdict": lambda b, base: [f"**{b[0]}**"],
    "pre": lambda b, base: ["```", b, "```"],
    "table": lambda b, base: _md_table(*b),
    "details": _md_details,
    "img": _md_figure,
}


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    def td(c: str) -> str:
        tone = {"yes": " class='pass'", "no": " class='fail'"}.get(c, "")
        return f"<td{tone}>{_e(c)}</td>"
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    return "<table>" + head + "".join("<tr>" + "".join(td(c) for c in r) + "</tr>" for r in rows) + "</table>"


def _html_details(b) -> str:
    summary, tables = b
    body = "".join(f"<p><b>{_e(t)}</b></p>{_html_table(h, rows)}" for t, h, rows in tables)
    return f"<details><summary>{_e(summary)}</summary>{body}</details>"


def _html_figure(b) -> str:
    path, caption = b
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{_e(caption)}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


_HTML = {
    "h2": lambda b: f"<h2>{_e(b)}</h2>",
    "p": lambda b: f"<p>{_e(b)}</p>",
    "verdict": lambda b: f"<p class='verdict {_e(b[1])}'>{_e(b[0])}</p>",
    "pre": lambda b: f"<pre>{_e(b)}</pre>",
    "table": lambda b: _html_table(*b),
    "details": _html_details,
    "img": _html_figure,
}


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(base).resolve()))
    except ValueError:
        return str(path)
