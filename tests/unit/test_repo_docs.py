"""The repository documents itself: docs/ exists, its links resolve, and no file points at notes outside it.

Comments, docstrings and documents must state their reasons themselves or point to a file in this repository
(``docs/``), never to design notes kept elsewhere or to tracker numbers, which a reader of the tree cannot follow.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from support.machine import unavailable

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REQUIRED_DOCS = ("README.md", "rest-api.md", "architecture.md", "operations.md")
EXCLUDED = {"uv.lock"}

# Built from pieces so that this file does not match itself.
_SHARED_DIR = "shared" + "/"
"""The design-notes folder, which no Python file names at all (a ``grep`` of the tree for it stays empty)."""
_OUTSIDE_NOTES = re.compile(r"(?:\.\./" + r"shared\b|\b" + _SHARED_DIR + r"[\w.-]+\.md\b)")
_TRACKER_NUMBER = re.compile(r"\bissues?\s+#?\d", re.IGNORECASE)
_MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_ANCHOR_LINK = re.compile(r"\]\(#([^)\s]+)\)")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def tracked_files() -> list[Path]:
    """Every file git tracks, except the lock file (its hashes are not prose)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        unavailable(f"not a git checkout: {exc}")
    names = [n for n in out.decode().split("\0") if n]
    return [ROOT / n for n in names if n not in EXCLUDED and (ROOT / n).is_file()]


def _text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def test_no_python_file_names_the_design_notes_folder() -> None:
    offenders = [
        str(path.relative_to(ROOT)) for path in tracked_files()
        if path.suffix == ".py" and _SHARED_DIR in (_text(path) or "")
    ]
    assert not offenders, offenders


def test_no_file_refers_to_notes_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE_NOTES.search(line) or _TRACKER_NUMBER.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offenders, "references a reader cannot follow (say the reason or point to docs/):\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize("name", REQUIRED_DOCS)
def test_docs_exist(name: str) -> None:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    assert path.read_text(encoding="utf-8").strip(), f"docs/{name} is empty"


def relative_links(markdown: str) -> list[str]:
    """Targets of the inline links and images of ``markdown`` that point into the repository."""
    without_code = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    without_code = re.sub(r"`[^`\n]*`", "", without_code)
    return [t for t in _MARKDOWN_LINK.findall(without_code) if not _EXTERNAL.match(t)]


def test_reference_patterns() -> None:
    assert _OUTSIDE_NOTES.search("see ``shared" + "/ARCHITECTURE.md``")
    assert _OUTSIDE_NOTES.search("../" + _SHARED_DIR + "notes")
    assert not _OUTSIDE_NOTES.search("PUT /v1/files/" + _SHARED_DIR + "data.bin")
    assert _TRACKER_NUMBER.search("(FUSE client contract, iss" + "ue 6)")
    assert _TRACKER_NUMBER.search("fixed in Iss" + "ue #12")
    assert not _TRACKER_NUMBER.search("issue apiserver certificates; RFC 9110 §13")


def test_every_error_code_is_documented() -> None:
    from callfs.errors import CallFSError

    text = (DOCS / "rest-api.md").read_text(encoding="utf-8")
    classes: list[type[CallFSError]] = [CallFSError]
    missing = []
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        if f"| {cls.status} | `{cls.code}` |" not in text:
            missing.append(f"{cls.status} {cls.code}")
    assert not missing, f"docs/rest-api.md (Errors) lacks: {missing}"


def test_relative_links_extraction() -> None:
    text = "[a](x.md) [b](../y/z.md#part) [c](https://e.org) [d](#top) `[e](no.md)` ![i](img.png)"
    assert relative_links(text) == ["x.md", "../y/z.md#part", "img.png"]


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("document", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(document: Path) -> None:
    if not document.is_file():
        pytest.fail(f"{document.relative_to(ROOT)} is missing")
    broken = []
    text = document.read_text(encoding="utf-8")
    for target in relative_links(text) + [f"#{a}" for a in _ANCHOR_LINK.findall(text)]:
        file_part, _, anchor = target.partition("#")
        resolved = (document.parent / file_part).resolve() if file_part else document
        if not _resolves(resolved, anchor):
            broken.append(target)
    assert not broken, f"{document.relative_to(ROOT)} has links to missing files or headings: {broken}"


def _resolves(path: Path, anchor: str) -> bool:
    if not path.exists():
        return False
    return not anchor or path.suffix != ".md" or anchor in anchors(path.read_text(encoding="utf-8"))


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown``: lower case, punctuation dropped, spaces → ``-``."""
    without_code = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", without_code, flags=re.MULTILINE):
        out.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return out


def test_anchors() -> None:
    assert anchors("# Files: /v1/files\n## A forwarded request\n```\n# not a heading\n```") == {
        "files-v1files", "a-forwarded-request"}
