"""QR codes for the cars' safety tags: one printable SVG per elevator that opens its public
page, `{public_base_url}/e/{elevator_id}`, with the registration code written under it (so a
tag can be checked against its car, and the code read out on the phone without a scan).

SVG scales to any print size without blur; error correction level Q still reads with a
quarter of the symbol scratched or dirty, as tags in a busy car get."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape

import segno

_SCALE: Final = 10  # user units per module
_BORDER: Final = 4  # modules of quiet zone, as the standard asks
_LABEL_HEIGHT: Final = 64
_FONT_SIZE: Final = 34


def public_url(base_url: str, elevator_id: str) -> str:
    return f"{base_url.rstrip('/')}/e/{elevator_id}"


def tag_svg(url: str, label: str) -> str:
    """A standalone SVG: the QR code of `url` on white, `label` centred under it."""
    qr = segno.make_qr(url, error="q")
    symbol = io.BytesIO()
    qr.save(symbol, kind="svg", scale=_SCALE, border=_BORDER, xmldecl=False, nl=False)
    width, height = qr.symbol_size(scale=_SCALE, border=_BORDER)
    total = height + _LABEL_HEIGHT
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" '
        f'viewBox="0 0 {width} {total}">'
        f'<rect width="{width}" height="{total}" fill="#fff"/>'
        f"{symbol.getvalue().decode()}"
        f'<text x="{width / 2:g}" y="{height + _FONT_SIZE / 2:g}" text-anchor="middle" '
        f'font-family="DejaVu Sans Mono, monospace" font-size="{_FONT_SIZE}">{escape(label)}</text>'
        "</svg>\n"
    )


def write_tags(base_url: str, elevator_ids: Iterable[str], out: Path) -> list[Path]:
    """`out/{elevator_id}.svg` for each elevator; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for elevator_id in elevator_ids:
        path = out / f"{elevator_id}.svg"
        path.write_text(tag_svg(public_url(base_url, elevator_id), elevator_id), encoding="utf-8")
        written.append(path)
    return written
