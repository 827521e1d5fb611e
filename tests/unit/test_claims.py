"""The rule behind docs/claims.md: every promise of README.md and docs/ names the test that proves it.

docs/claims.md has a `## <file>` heading per page and, under it, a `### <section>` entry per `## `
section of that page (README.md's opening text is `(introduction)`). Each line of an entry names tests
as `path::function`, or is a `figure:` line (the command and the file it writes) or a `no claim:` line
(why the section promises nothing). These tests read the files only: they do not run pytest; a test
"exists" when its file defines that function (a top-level `def test_...`, or one in a `Test...` class).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = ROOT / "docs" / "claims.md"
INTRODUCTION = "(introduction)"
TEST_ID = re.compile(r"`(tests/[\w/.-]+\.py)::(\w+)(?:\[[^\]`]*\])?`")
BACKTICKED = re.compile(r"`([^`]+)`")
NAMED_TEST = re.compile(r"`(test_\w+)`")
NAMED_FILE = re.compile(r"`?(tests/[\w/.-]+\.py)")


def pages() -> list[Path]:
    """README.md and every page of docs/, except the claims page itself."""
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p != CLAIMS)]


def section_titles(text: str, *, introduction: bool = False) -> list[str]:
    """The `## ` headings outside fenced code blocks, in order (and `(introduction)` first if asked)."""
    titles = [INTRODUCTION] if introduction else []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            titles.append(line[3:].strip())
    return titles


def parse_claims(text: str) -> dict[str, dict[str, list[str]]]:
    """claims.md as {file: {section: [lines]}}; a line is one `- ` item."""
    entries: dict[str, dict[str, list[str]]] = {}
    page: str | None = None
    section: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            page, section = line[3:].strip(), None
            entries[page] = {}
        elif line.startswith("### ") and page is not None:
            section = line[4:].strip()
            entries[page][section] = []
        elif line.startswith("- ") and page is not None and section is not None:
            entries[page][section].append(line[2:].strip())
    return entries


@functools.cache
def defined_tests(path: Path) -> frozenset[str]:
    """The test functions a file defines, found by reading it (nothing is imported or run)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test_")
            }
    return frozenset(names)


def line_problems(line: str, root: Path = ROOT) -> list[str]:
    """What is wrong with one line of an entry (nothing, for a line that holds)."""
    if line.startswith("no claim:"):
        return [] if len(line) > len("no claim:") + 10 else [f"a no-claim line says why: {line!r}"]
    if line.startswith("figure:"):
        paths = [t for t in BACKTICKED.findall(line) if " " not in t and ("/" in t or t == "Makefile")]
        if not paths:
            return [f"a figure names the command that measures it and the file it writes: {line!r}"]
        return [f"{path} does not exist (in {line!r})" for path in paths if not (root / path).exists()]
    ids = TEST_ID.findall(line)
    if not ids:
        return [f"names no test (`tests/...py::test_function`): {line!r}"]
    problems = []
    for file, function in ids:
        path = root / file
        if not path.is_file():
            problems.append(f"{file} does not exist")
        elif function not in defined_tests(path):
            problems.append(f"{file} defines no {function}")
    return problems


def entry_problems(claims_text: str, page_texts: dict[str, str], root: Path = ROOT) -> list[str]:
    """Every problem of claims.md against the pages: missing or stale entries, lines that prove nothing."""
    claims = parse_claims(claims_text)
    problems = [f"claims.md has no `## {name}`" for name in page_texts if name not in claims]
    problems += [f"claims.md names {name}, which is not a page" for name in claims if name not in page_texts]
    for name, text in page_texts.items():
        sections = section_titles(text, introduction=name == "README.md")
        entries = claims.get(name, {})
        problems += [f"{name}: section {title!r} has no entry" for title in sections if title not in entries]
        problems += [
            f"{name}: entry {title!r} is not a section" for title in entries if title not in sections
        ]
        for title, lines in entries.items():
            if not lines:
                problems.append(f"{name}: entry {title!r} has no line")
            for line in lines:
                problems += [f"{name} / {title}: {problem}" for problem in line_problems(line, root)]
    return problems


def test_every_section_of_the_readme_and_docs_has_an_entry_that_names_existing_tests() -> None:
    page_texts = {str(page.relative_to(ROOT)): page.read_text() for page in pages()}
    assert entry_problems(CLAIMS.read_text(), page_texts) == []


def test_every_test_compatibility_md_names_exists() -> None:
    text = (ROOT / "docs" / "compatibility.md").read_text()
    every_test = frozenset().union(*(defined_tests(p) for p in (ROOT / "tests").rglob("test_*.py")))
    missing_files = sorted({f for f in NAMED_FILE.findall(text) if not (ROOT / f).is_file()})
    missing_tests = sorted({name for name in NAMED_TEST.findall(text) if name not in every_test})
    assert (missing_files, missing_tests) == ([], [])


def test_the_rule_catches_what_it_is_for(tmp_path: Path) -> None:
    """Not vacuous: a section without an entry, a stale entry, an unknown test, a bare promise."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_real() -> None:\n    pass\n")
    page = "# Page\n\n## Kept\n\ntext\n\n```sh\n## not a heading\n```\n\n## New\n\nmore\n"
    claims = (
        "## docs/page.md\n\n### Kept\n- works — `tests/test_x.py::test_real`\n"
        "- also works — `tests/test_x.py::test_gone`\n- a promise with no test\n\n"
        "### Removed\n- no claim: gone\n"
    )
    assert entry_problems(claims, {"docs/page.md": page}, tmp_path) == [
        "docs/page.md: section 'New' has no entry",
        "docs/page.md: entry 'Removed' is not a section",
        "docs/page.md / Kept: tests/test_x.py defines no test_gone",
        "docs/page.md / Kept: names no test (`tests/...py::test_function`): 'a promise with no test'",
        "docs/page.md / Removed: a no-claim line says why: 'no claim: gone'",
    ]
    fixed = claims.replace("- also works — `tests/test_x.py::test_gone`\n- a promise with no test\n", "")
    fixed = fixed.replace("### Removed\n- no claim: gone\n", "### New\n- no claim: more text, no promise\n")
    assert entry_problems(fixed, {"docs/page.md": page}, tmp_path) == []
