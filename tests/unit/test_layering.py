"""Dependencies run one way: the lower stages never import the training code (tunesmith.train).

config/, data/, model/, scoring/ and rewards/ (and the run directory contract, run_dir.py) sit below train/;
an import of tunesmith.train from them, at the top of a file or inside a function, is an arrow running back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tunesmith

PACKAGE = Path(tunesmith.__file__).parent
LOWER = ("config", "data", "model", "scoring", "rewards", "run_dir.py")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a module, `from a import b` giving both `a` and `a.b`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return found


def train_imports(root: Path, lower: tuple[str, ...] = LOWER) -> list[str]:
    """`file:line: name` for every import of tunesmith.train under the lower stages of the package at `root`."""
    files = []
    for part in lower:
        path = root / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else [])
    problems = []
    for file in files:
        for line, name in imported_modules(ast.parse(file.read_text(encoding="utf-8"))):
            if name == "tunesmith.train" or name.startswith("tunesmith.train."):
                problems.append(f"{file.relative_to(root)}:{line}: {name}")
    return problems


def test_lower_stages_do_not_import_train():
    assert all((PACKAGE / part).exists() for part in LOWER)
    assert train_imports(PACKAGE) == []


def test_a_planted_train_import_is_caught(tmp_path):
    # A copy of a real lower module with an import of the training code added inside a function.
    (tmp_path / "model").mkdir()
    source = (PACKAGE / "model" / "from_run.py").read_text(encoding="utf-8")
    planted = (
        source + "\n\ndef sneaky():\n    from tunesmith.train.prepare import prepare_run\n\n    return prepare_run\n"
    )
    (tmp_path / "model" / "from_run.py").write_text(planted, encoding="utf-8")
    (tmp_path / "rewards").mkdir()
    (tmp_path / "rewards" / "x.py").write_text("from tunesmith import train\n", encoding="utf-8")
    assert train_imports(tmp_path) == [
        f"model/from_run.py:{len(source.splitlines()) + 4}: tunesmith.train.prepare",
        f"model/from_run.py:{len(source.splitlines()) + 4}: tunesmith.train.prepare.prepare_run",
        "rewards/x.py:1: tunesmith.train",
    ]
