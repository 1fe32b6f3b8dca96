"""Import contracts over the real import graph, transitive imports included.

The contracts (``docs/architecture.md`` explains them):

* nothing in ``medpipe/`` imports ``prefect`` or ``flows/``, except the CLI front door
  (``medpipe.cli``);
* ``medpipe.preprocess`` does not import ``medpipe.io``;
* ``medpipe.models`` does not import ``medpipe.preprocess``;
* nothing imports the CLI;
* ``flows/`` imports only the public names of ``medpipe``.

The first four are import-linter ``forbidden`` contracts, checked by ``lint-imports``
(import-linter builds the graph with grimp, so a chain ``a -> b -> c`` counts as ``a``
importing ``c``).  The fifth is an AST check of ``flows/``.

How it fails on purpose (the recipe the second half of this file runs for every
contract): copy ``medpipe/`` and ``flows/`` to a temporary folder, add one forbidden
import to a module there (for example ``import prefect`` at the end of
``medpipe/preprocess/filters.py``, or ``from medpipe.store import atomic`` inside a
module that ``preprocess`` imports and that imports ``medpipe.io``), run the same check on
the copy, and it fails naming the broken contract.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: contract id -> (name, source modules or None for "all of medpipe but the CLI",
#: forbidden modules, whether ``flows`` is a source too)
CONTRACTS: dict[str, tuple[str, list[str] | None, list[str], bool]] = {
    "no-prefect": (
        "medpipe never imports prefect or flows, except the CLI front door",
        None, ["prefect", "flows"], False,
    ),
    "preprocess-io": ("preprocess does not import io", ["medpipe.preprocess"], ["medpipe.io"],
                      False),
    "models-preprocess": (
        "models does not import preprocess", ["medpipe.models"], ["medpipe.preprocess"], False,
    ),
    "no-cli": ("nothing imports the CLI", None, ["medpipe.cli"], True),
}


def library_modules(root: Path) -> list[str]:
    """The top-level modules and packages of ``medpipe`` under ``root``, the CLI excepted."""
    names = [m.name for m in pkgutil.iter_modules([str(root / "medpipe")])]
    return sorted(f"medpipe.{n}" for n in names if n != "cli")


def write_contracts(root: Path, path: Path) -> Path:
    """Write the import-linter contracts for the tree at ``root`` as an INI file."""
    lines = [
        "[importlinter]",
        "root_packages =",
        "    medpipe",
        "    flows",
        "include_external_packages = True",
        "",
    ]
    for ident, (name, sources, forbidden, with_flows) in CONTRACTS.items():
        src = list(sources or library_modules(root)) + (["flows"] if with_flows else [])
        lines += [
            f"[importlinter:contract:{ident}]",
            f"name = {name}",
            "type = forbidden",
            "source_modules =",
            *(f"    {s}" for s in src),
            "forbidden_modules =",
            *(f"    {f}" for f in forbidden),
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def lint_imports(root: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` on the tree at ``root``; returns the finished process."""
    config = write_contracts(root, tmp / "contracts.ini")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )


def private_imports(root: Path) -> list[str]:
    """Imports in ``flows/`` of a private ``medpipe`` module or name, as ``file:line``."""
    hits = []
    for path in sorted((root / "flows").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if not node.module.startswith("medpipe"):
                    continue
                names = node.module.split(".") + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [p for a in node.names if a.name.startswith("medpipe")
                         for p in a.name.split(".")]
            else:
                continue
            if any(n.startswith("_") and n != "*" for n in names):
                hits.append(f"{path.relative_to(root)}:{node.lineno}")
    return hits


def test_import_contracts_hold(tmp_path: Path) -> None:
    result = lint_imports(REPO, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken" in result.stdout


def test_flows_import_only_public_names() -> None:
    assert private_imports(REPO) == []


# ---- each contract fails when a forbidden import is added -------------------------------

BREAKS = {
    # contract id -> (module file in the copy, line appended to it)
    "no-prefect": ("medpipe/preprocess/filters.py", "import prefect  # noqa"),
    "preprocess-io": ("medpipe/preprocess/filters.py", "import medpipe.io  # noqa"),
    "models-preprocess": ("medpipe/models/metrics.py", "import medpipe.preprocess  # noqa"),
    "no-cli": ("flows/_runner.py", "import medpipe.cli  # noqa"),
}


def _copy_tree(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for pkg in ("medpipe", "flows"):
        shutil.copytree(REPO / pkg, dst / pkg, ignore=ignore)
    return dst


@pytest.mark.parametrize("contract", sorted(BREAKS))
def test_contract_breaks_when_a_forbidden_import_is_added(tmp_path: Path, contract: str) -> None:
    root = _copy_tree(tmp_path / "tree")
    rel, line = BREAKS[contract]
    target = root / rel
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(root, tmp_path)
    assert result.returncode != 0
    name = CONTRACTS[contract][0]
    assert f"{name} BROKEN" in result.stdout, result.stdout


def test_private_import_in_flows_is_found(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path / "tree")
    target = root / "flows" / "_runner.py"
    target.write_text(target.read_text() + "\nfrom medpipe.preprocess import _core  # noqa\n")
    assert private_imports(root) == ["flows/_runner.py:" + str(
        len(target.read_text().splitlines()))]
