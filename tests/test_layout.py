"""The package's shape: the import contract holds, the root stays small, and every folder says what it is.

The contract itself lives in pyproject.toml ([tool.importlinter]); these tests run the real `lint-imports`.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "goalkeeper"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_ROOT_MODULES = 5


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts over the `goalkeeper` package found in `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_import_contract_is_kept() -> None:
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_back_arrow_breaks_the_import_contract(tmp_path: Path) -> None:
    # The contract must actually bite: core importing the CLI is the worst back-arrow there is.
    shutil.copytree(PACKAGE, tmp_path / "goalkeeper", ignore=shutil.ignore_patterns("__pycache__"))
    decide = tmp_path / "goalkeeper" / "core" / "decide.py"
    decide.write_text(decide.read_text(encoding="utf-8") + "\nimport goalkeeper.cli.app  # noqa\n",
                      encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "goalkeeper.core.decide -> goalkeeper.cli.app" in result.stdout


def test_the_package_root_holds_at_most_five_modules() -> None:
    modules = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(modules) <= MAX_ROOT_MODULES, f"the package root holds {modules}: move the new one into a folder"


def package_inits() -> list[Path]:
    """Every package's `__init__.py` below the root; the sample repositories are data, not packages of ours."""
    return sorted(path for path in PACKAGE.glob("*/**/__init__.py") if "samples" not in path.parts)


def test_every_folder_says_what_it_holds_and_what_it_may_import() -> None:
    vague = []
    for init in package_inits():
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        says_what_it_holds = len(doc.splitlines()[0]) >= 40 if doc else False
        says_what_it_imports = "May import:" in doc or "import only" in doc
        if not (says_what_it_holds and says_what_it_imports):
            vague.append(str(init.relative_to(REPO)))
    assert not vague, f"give these a docstring that says what the folder holds and 'May import: ...': {vague}"
