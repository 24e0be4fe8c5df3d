"""docs/architecture.md stays true: every module of the packages is in its tables, every link into it has its
section, and nothing points at a design document users do not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
PACKAGES = ("cache", "preprocess", "train", "evaluate")


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lower case, spaces to '-', other punctuation dropped."""
    return {re.sub(r"[^a-z0-9 \-_]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", markdown, re.M)}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines()]


def test_every_module_is_in_the_tables():
    text = ARCHITECTURE.read_text()
    modules = [p for p in tracked_files() if p.suffix == ".py" and p.relative_to(REPO).parts[0] in PACKAGES]
    missing = [str(p.relative_to(REPO)) for p in modules if p.name != "__init__.py" and f"`{p.name}`" not in text]
    assert not missing, f"add these modules to docs/architecture.md: {missing}"


def test_links_into_the_architecture_page_name_its_sections():
    known = anchors(ARCHITECTURE.read_text())
    wrong = []
    for path in tracked_files():
        if path.suffix in (".py", ".md", ".toml", ".sh", ".sbatch") and path.is_file():
            for anchor in re.findall(r"architecture\.md#([a-z0-9\-_]+)", path.read_text(errors="replace")):
                if anchor not in known:
                    wrong.append(f"{path.relative_to(REPO)}: #{anchor}")
    assert not wrong, f"no such section in docs/architecture.md: {wrong}"


def test_nothing_cites_the_design_brief():
    needle = "DESIGN" + " §"  # split, so this file does not cite it either
    cited = [str(p.relative_to(REPO)) for p in tracked_files()
             if p.is_file() and p.suffix in (".py", ".md", ".toml") and needle in p.read_text(errors="replace")]
    assert not cited, f"point these at docs/architecture.md instead: {cited}"
