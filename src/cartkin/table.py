"""A small result table: numeric columns for CSV, compact text for the terminal and Markdown."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def format_number(value: Any, digits: int = 3) -> str:
    """Three significant digits, no scientific notation for everyday magnitudes; NaN as '–'."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    v = float(value)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e6:
        decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
        return f"{v:.{decimals}f}"
    return f"{v:.{digits - 1}e}"


@dataclass(frozen=True)
class Table:
    """Rows of named values. `columns` fixes the order; `display` maps a heading to a function of a row
    giving the text shown in the terminal and in Markdown (CSV always holds the raw numbers)."""
    columns: tuple[str, ...]
    rows: tuple[dict, ...]
    display: tuple[tuple[str, Any], ...] = ()
    title: str = ""

    def column(self, name: str) -> list:
        return [row[name] for row in self.rows]

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.columns)
            for row in self.rows:
                writer.writerow([_csv_value(row[c]) for c in self.columns])

    def _text_cells(self) -> tuple[list[str], list[list[str]]]:
        if self.display:
            heads = [h for h, _ in self.display]
            body = [[fn(row) if callable(fn) else format_number(row[fn]) for _, fn in self.display]
                    for row in self.rows]
        else:
            heads = list(self.columns)
            body = [[format_number(row[c]) for c in self.columns] for row in self.rows]
        return heads, body

    def to_markdown(self) -> str:
        heads, body = self._text_cells()
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(heads) + " |")
        lines.append("|" + "|".join("---" for _ in heads) + "|")
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        heads, body = self._text_cells()
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(heads)]
        out = [self.title] if self.title else []
        out.append("  ".join(h.ljust(w) for h, w in zip(heads, widths)))
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in body]
        return "\n".join(out)


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def quantile_text(row: dict, name: str) -> str:
    """'median [p5–p95]' from row[name_median], row[name_p05], row[name_p95]."""
    return (f"{format_number(row[name + '_median'])} "
            f"[{format_number(row[name + '_p05'])}–{format_number(row[name + '_p95'])}]")

