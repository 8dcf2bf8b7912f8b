"""HTML to PDF through headless Chromium's own print (A4, as the page's `@page` asks), so the
PDF is what a regulator would get printing the HTML file from the browser."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

BINARIES: Final = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S: Final = 120


class ChromiumMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "PDF output needs headless Chromium, and none was found on PATH "
            f"({', '.join(BINARIES)}); install it (Debian: apt-get install chromium) or write "
            "--format html and print that file from a browser"
        )


def chromium() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissing


def print_pdf(html: str, out: Path) -> None:
    """Write `html` (self-contained: nothing to fetch) as a PDF to `out`."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="gateway-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, encoding="utf-8")
        command = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={Path(tmp) / 'profile'}", "--no-pdf-header-footer",
            f"--print-to-pdf={out.resolve()}", page.as_uri(),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"Chromium could not print the PDF: {done.stderr.strip()[-500:]}")
