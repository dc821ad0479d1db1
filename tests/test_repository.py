"""Repository hygiene: every citation of the method resolves inside the repository (issue 10, item 7).

Code, tests and documents cite docs/METHOD.md as "METHOD §n" (n = 1, 2.4, ...). These tests read every text file
of the repository (not the virtual environment, run folders or caches) and check that each cited section has a
heading in docs/METHOD.md, and that nothing cites the old external document or points outside the repository.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHOD = ROOT / "docs" / "METHOD.md"
SUFFIXES = {".py", ".md", ".sh", ".toml", ".cfg", ".txt"}
SKIP_DIRS = {".git", ".venv", "runs", "build", "__pycache__", ".pytest_cache", ".whl"}
# "METHOD §2.4", also ranges "METHOD §1–§2"; a sentence's final dot is not part of the number
CITATION = re.compile(r"METHOD (§\d+(?:\.\d+)*(?:\s*[–-]\s*§\d+(?:\.\d+)*)?)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)
# built from pieces so that this file does not match itself
FORBIDDEN = ("SPEC" + " §", "../" + "shared", "/work/" + "shared", "SPEC" + ".md")


def _text_files():
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if path.is_file() and (path.suffix in SUFFIXES or path.name in ("Makefile", "run")):
            yield rel, path.read_text(encoding="utf-8")


def _method_sections():
    return set(HEADING.findall(METHOD.read_text(encoding="utf-8")))


def test_method_headings_are_numbered():
    sections = _method_sections()
    # the seven numbered sections and the five subsections of §2 (see docs/METHOD.md's introduction)
    assert {str(i) for i in range(1, 8)} | {f"2.{i}" for i in range(1, 6)} <= sections, sorted(sections)


def test_every_method_citation_names_an_existing_section():
    sections = _method_sections()
    cited, missing = 0, []
    for rel, text in _text_files():
        for match in CITATION.finditer(text):
            for number in SECTION.findall(match.group(1)):
                cited += 1
                if number not in sections:
                    line = text.count("\n", 0, match.start()) + 1
                    missing.append(f"{rel}:{line}: METHOD §{number}")
    assert cited > 50, f"only {cited} citations found: is the pattern still right?"
    assert not missing, "citations of sections that docs/METHOD.md lacks:\n" + "\n".join(missing)


def test_nothing_points_outside_the_repository():
    hits = [f"{rel}:{text.count(chr(10), 0, text.index(s)) + 1}: {s!r}"
            for rel, text in _text_files() for s in FORBIDDEN if s in text]
    assert not hits, "references to a document outside the repository:\n" + "\n".join(hits)
