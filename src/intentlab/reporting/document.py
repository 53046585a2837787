"""A tiny document model rendered twice: Markdown (images linked) and one self-contained HTML file
(images embedded as data URIs, inline CSS, no external URL), so both report files say the same thing.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.5}
h1{border-bottom:2px solid #4C72B0;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f3f5f9}td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#fafafa}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}code,pre{background:#f5f5f5;padding:.1em .3em;border-radius:3px}
pre{padding:.8em;overflow-x:auto}.finding{background:#eef5ee;border-left:4px solid #55A868;padding:.4em .8em;margin:.4em 0}
.warn{background:#fdf3e7;border-left:4px solid #DD8452;padding:.4em .8em;margin:.4em 0}details{margin:.3em 0}
"""


# Click a header of a table.sortable to sort by that column (numbers numerically), again to reverse.
SORT_JS = """
document.querySelectorAll("table.sortable th").forEach((th, col) => {
  th.style.cursor = "pointer";
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const dir = th.dataset.dir === "asc" ? -1 : 1;
    th.dataset.dir = dir === 1 ? "asc" : "desc";
    const key = (tr) => { const t = tr.cells[col].textContent.trim(); const n = parseFloat(t.replace(/,/g, ""));
                          return isNaN(n) ? t.toLowerCase() : n; };
    [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * dir)
      .forEach((tr) => body.appendChild(tr));
  });
});
"""


@dataclass
class Doc:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str, kind: str = "") -> None:
        self.blocks.append(("p", (text, kind)))

    def bullets(self, items: list[str], kind: str = "") -> None:
        self.blocks.append(("ul", (items, kind)))

    def table(
        self, header: list[str], rows: list[list[str]], caption: str = "", sortable: bool = False
    ) -> None:
        """A table; `sortable` ones sort by a column when its header is clicked (in the HTML)."""
        self.blocks.append(("table", (header, rows, caption, sortable)))

    def img(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def details(self, summary: str, inner: Doc) -> None:
        self.blocks.append(("details", (summary, inner)))

    # ------------------------------------------------------------------ renderers
    def markdown(self, base: Path, top: bool = True) -> str:
        out = [f"# {_md(self.title)}\n"] if top else []
        for kind, value in self.blocks:
            if kind == "h":
                out.append(f"## {_md(str(value))}\n")
            elif kind == "p":
                text, _ = value  # type: ignore[misc]
                out.append(f"{_md(text)}\n")
            elif kind == "ul":
                items, _ = value  # type: ignore[misc]
                out.append("".join(f"- {_md(i)}\n" for i in items))
            elif kind == "table":
                header, rows, caption, _ = value  # type: ignore[misc]
                lines = [
                    "| " + " | ".join(map(_cell, header)) + " |",
                    "|" + "|".join("---" for _ in header) + "|",
                ]
                lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
                out.append((f"*{_md(caption)}*\n\n" if caption else "") + "\n".join(lines) + "\n")
            elif kind == "img":
                path, alt = value  # type: ignore[misc]
                out.append(f"![{_md(alt)}]({Path(path).relative_to(base).as_posix()})\n")
            elif kind == "code":
                out.append(f"```\n{value}\n```\n")
            elif kind == "details":
                summary, inner = value  # type: ignore[misc]
                out.append(f"### {_md(summary)}\n\n{inner.markdown(base, top=False)}")
        return "\n".join(out)

    def html(self, top: bool = True) -> str:
        e = html.escape
        out = []
        for kind, value in self.blocks:
            if kind == "h":
                out.append(f"<h2>{e(str(value))}</h2>")
            elif kind == "p":
                text, cls = value  # type: ignore[misc]
                out.append(f'<p class="{cls}">{_inline(text)}</p>' if cls else f"<p>{_inline(text)}</p>")
            elif kind == "ul":
                items, cls = value  # type: ignore[misc]
                lis = "".join(f'<li class="{cls}">{_inline(i)}</li>' for i in items)
                out.append(f"<ul>{lis}</ul>")
            elif kind == "table":
                header, rows, caption, sortable = value  # type: ignore[misc]
                cap = f"<caption>{e(caption)}</caption>" if caption else ""
                head = "".join(f"<th>{_inline(h)}</th>" for h in header)
                body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                cls = ' class="sortable"' if sortable else ""
                out.append(f"<table{cls}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "img":
                path, alt = value  # type: ignore[misc]
                data = base64.b64encode(Path(path).read_bytes()).decode()
                out.append(f'<img alt="{e(alt)}" src="data:image/png;base64,{data}">')
            elif kind == "code":
                out.append(f"<pre><code>{e(str(value))}</code></pre>")
            elif kind == "details":
                summary, inner = value  # type: ignore[misc]
                out.append(f"<details><summary>{e(summary)}</summary>{inner.html(top=False)}</details>")
        body = "\n".join(out)
        if not top:
            return body
        return (
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{e(self.title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{e(self.title)}</h1>\n{body}\n<script>{SORT_JS}</script></body></html>\n"
        )


def _md(text: str) -> str:
    """Text for Markdown: HTML in run records (names, labels, paths) shows as text, never as markup."""
    return html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")


def _cell(text: str) -> str:
    return _md(text).replace("|", "\\|")


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans."""
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
