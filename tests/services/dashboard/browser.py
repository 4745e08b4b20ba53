"""Headless Chromium for the dashboard tests: find it, dump the rendered DOM, screenshot it.

Chromium is Debian's ``chromium`` package (``apt-get install chromium``); FEDSEG_CHROMIUM
names another binary. Without one the browser tests are skipped with that reason, loudly
(``-ra`` lists every skip), never silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VOID = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()  # noqa: SIM905
)
REPO_ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts"


def chromium() -> str:
    """The browser binary, or a skip that says how to install one."""
    named = os.environ.get("FEDSEG_CHROMIUM")
    found = named or next((p for c in CANDIDATES if (p := shutil.which(c))), None)
    if not found:
        pytest.skip(
            "BROWSER TEST SKIPPED: no headless Chromium found (looked for "
            f"$FEDSEG_CHROMIUM, {', '.join(CANDIDATES)}); install it with "
            "`apt-get install chromium`"
        )
    return found


def _run(url: str, profile: Path, *flags: str) -> str:
    command = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", *flags, url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    # The page's console: a script error or a CSP refusal fails the test.
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    problems = [line for line in console if "Uncaught" in line or "Refused to" in line]
    assert not problems, "\n".join(problems)
    return done.stdout


def dump_dom(url: str, profile: Path) -> Element:
    """The page's DOM after its scripts ran (virtual time: about one poll)."""
    return parse(_run(url, profile, "--dump-dom"))


def screenshot(url: str, profile: Path, out: Path) -> None:
    _run(url, profile, f"--screenshot={out}", "--window-size=1280,1600")
    assert out.stat().st_size > 10_000, f"{out} looks empty"


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All text inside, whitespace collapsed."""
        raw = "".join(p if isinstance(p, str) else p.text + " " for p in self.parts)
        return " ".join(raw.split())

    def iter(self) -> list[Element]:
        found = [self]
        for child in self.children:
            found += child.iter()
        return found

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Elements with ``tag`` whose attributes equal ``attrs`` (``data_x`` is data-x)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag) and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]

    def one(self, tag: str | None = None, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} elements {tag} {attrs}"
        return found[0]

    def by_id(self, element_id: str) -> Element:
        return self.one(id=element_id)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        self.stack[-1].parts.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root
