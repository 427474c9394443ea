"""How a method is drawn: its label, colour (Okabe-Ito palette), marker, line style and hatch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    label: str
    color: str
    marker: str = "o"
    linestyle: str | tuple = "-"
    hatch: str = ""


# Method name -> its style, filled as each method class is defined (methods/base.py).
METHOD_STYLES: dict[str, Style] = {}
