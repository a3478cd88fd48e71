"""Every relative link in README.md and docs/*.md points at a file or folder that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)  # fenced code blocks: their brackets are code
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target "title")


def relative_targets(text: str) -> list[str]:
    """The targets of `[x](target)` and `![x](target)` outside code, without web links, mail links,
    bare anchors and the `#anchor` part of a path."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def broken_links(md: Path) -> list[str]:
    return [t for t in relative_targets(md.read_text(encoding="utf-8")) if not (md.parent / t).exists()]


def test_the_link_reader_finds_relative_links_and_skips_the_rest(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x")
    md = tmp_path / "page.md"
    md.write_text("[a](there.md) ![img](missing.png) [web](https://example.org/x) [anchor](#usage)\n"
                  "[part](there.md#section) `[code](nowhere.md)`\n```\n[fenced](nowhere-either.md)\n```\n")
    assert relative_targets(md.read_text()) == ["there.md", "missing.png", "there.md"]
    assert broken_links(md) == ["missing.png"]


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(md: Path) -> None:
    assert broken_links(md) == [], f"{md.relative_to(ROOT)} links to files that do not exist"
