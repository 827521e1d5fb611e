"""docs/architecture.md's "Rooms" table, checked: no package imports what its row says it may not.

The table is read from the page, so a row that changes without this test knowing its words fails here.
Every import statement counts, at module level or inside a function (a lazy import still pulls the
module into that process). Relative imports stay inside their own package and are not checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "moorage"
ROW = re.compile(r"^\| `(\w+)/` \| [^|]+ \| ([^|]+) \|$")

# What each phrase of the "may not import" column means, as module prefixes.
MEANS = {
    "torch": ("torch", "torchvision"),
    "sqlite3": ("sqlite3",),
    "asyncio": ("asyncio", "uvloop"),
    "HTTP": ("moorage.httpd", "moorage.api", "httptools"),
    "HTTP server": ("moorage.httpd", "moorage.api"),
    "server internals": (
        "moorage.api",
        "moorage.control",
        "moorage.runtime",
        "moorage.httpd",
        "moorage.worker",
        "moorage.backends",
        "moorage.s3",
    ),
}
FOUNDATIONS = ("moorage.settings", "moorage.errors")  # shared by every room, the HTTP server's included


def rooms() -> dict[str, tuple[str, ...]]:
    """{package: forbidden module prefixes}, from the table's rows."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table: dict[str, tuple[str, ...]] = {}
    for line in text.split("## Rooms", 1)[1].splitlines():
        match = ROW.match(line.strip())
        if not match:
            continue
        package, column = match.group(1), match.group(2).strip()
        if column == "-":
            table[package] = ()
        elif column.startswith("the rest of moorage"):
            table[package] = ("moorage",)
        else:
            table[package] = tuple(prefix for phrase in column.split(", ") for prefix in MEANS[phrase])
    return table


def imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def breaks(package: str, module: str, forbidden: tuple[str, ...]) -> bool:
    if forbidden == ("moorage",):  # everything of moorage but its own package and the foundations
        own = f"moorage.{package}"
        inside = module == own or module.startswith(own + ".") or module in FOUNDATIONS
        return module.startswith("moorage.") and not inside
    return any(module == prefix or module.startswith(prefix + ".") for prefix in forbidden)


def test_the_table_names_every_package() -> None:
    packages = {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    table = rooms()
    assert set(table) <= packages
    assert {"httpd", "api", "control", "artifacts", "handler", "worker", "runtime", "s3", "sdk"} <= set(table)
    assert table["api"] == ("torch", "torchvision", "sqlite3")
    assert breaks("httpd", "moorage.api.errors", table["httpd"])
    assert not breaks("httpd", "moorage.errors", table["httpd"])


def test_no_package_imports_what_its_room_forbids() -> None:
    found = []
    for package, forbidden in rooms().items():
        for path in sorted((SOURCE / package).rglob("*.py")):
            found += [
                f"{path.relative_to(ROOT)} imports {module}"
                for module in sorted(imports(path))
                if breaks(package, module, forbidden)
            ]
    assert found == []
