"""Each distribution declares exactly the third-party packages its source imports (static, AST-based).

For every ``packages/<pkg>/src`` present at test time, the top-level names of all ``import`` statements
(module level and inside functions) are mapped to distributions and compared with the pyproject:

* every imported third-party package is declared in ``[project] dependencies`` (an import guarded by
  ``try: ... except ImportError`` may be declared in an optional-dependency extra instead);
* every declared third-party dependency is imported somewhere, except the short list of runtime-only
  dependencies in :data:`RUNTIME_ONLY` (used by configuration, not by an import statement);
* imports of sibling vitlab packages (``vitlab.<name>``) are declared as ``vitlab-<name>``.
"""

from __future__ import annotations

import ast
import re
import sys
from functools import lru_cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

REPO = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (REPO / "packages").glob("*/pyproject.toml") if (p.parent / "src").is_dir())

# import name -> distributions that provide it, where the import name is not the distribution's name and
# several distributions are interchangeable; everything else is looked up in the installed environment.
ALIASES: dict[str, set[str]] = {
    "PIL": {"pillow"},
    "yaml": {"pyyaml"},
    "cv2": {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"},
    "sklearn": {"scikit-learn"},
    "skimage": {"scikit-image"},
    "lightning": {"lightning"},
    "pytorch_lightning": {"pytorch-lightning", "lightning"},
}

# Declared but never imported on purpose: distribution -> {dependency: why}.
RUNTIME_ONLY: dict[str, dict[str, str]] = {
    "vitlab-core": {
        "jsonargparse": "LightningCLI parses configs with jsonargparse (its `signatures` extra)",
        "wandb": "the shipped configs log through lightning's WandbLogger, which imports wandb itself",
    },
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;@]", req.strip(), maxsplit=1)[0])


def _is_import_error_guard(node: ast.Try) -> bool:
    for handler in node.handlers:
        names = []
        if isinstance(handler.type, ast.Name):
            names = [handler.type.id]
        elif isinstance(handler.type, ast.Tuple):
            names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
        if {"ImportError", "ModuleNotFoundError"} & set(names):
            return True
    return False


def collect_imports(src: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(required, optional): top-level import name -> files, for all ``.py`` under ``src``.

    ``vitlab.<name>`` imports are reported as ``vitlab.<name>``; relative imports are skipped.
    """
    required: dict[str, set[str]] = {}
    optional: dict[str, set[str]] = {}

    def visit(node: ast.AST, rel: str, guarded: bool) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "vitlab" else [f"vitlab.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            top = ".".join(parts[:2]) if parts[0] == "vitlab" else parts[0]
            (optional if guarded else required).setdefault(top, set()).add(rel)
        if isinstance(node, ast.Try) and _is_import_error_guard(node):
            for child in node.body:
                visit(child, rel, True)
            for child in [*node.handlers, *node.orelse, *node.finalbody]:
                visit(child, rel, guarded)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, rel, guarded)

    for path in sorted(src.rglob("*.py")):
        rel = str(path.relative_to(src))
        visit(ast.parse(path.read_text(), filename=str(path)), rel, False)
    return required, optional


@lru_cache(maxsize=1)
def _installed_providers() -> dict[str, list[str]]:
    return packages_distributions()


def _distributions_of(import_name: str) -> set[str]:
    if import_name.startswith("vitlab."):
        return {"vitlab-" + import_name.split(".", 1)[1]}
    if import_name in ALIASES:
        return ALIASES[import_name]
    found = {_norm(d) for d in _installed_providers().get(import_name, [])}
    return found or {_norm(import_name)}


def _is_third_party_or_sibling(import_name: str) -> bool:
    return import_name not in sys.stdlib_module_names and import_name != "__future__"


@pytest.mark.parametrize("pkg_dir", PACKAGES, ids=[p.name for p in PACKAGES])
def test_declared_dependencies_match_imports(pkg_dir: Path) -> None:
    meta = tomllib.loads((pkg_dir / "pyproject.toml").read_text())["project"]
    own = _norm(meta["name"])
    declared = {_req_name(r) for r in meta.get("dependencies", [])}
    extras = {_req_name(r) for reqs in meta.get("optional-dependencies", {}).values() for r in reqs}
    required, optional = collect_imports(pkg_dir / "src")
    own_import = "vitlab." + own.removeprefix("vitlab-")

    problems = []
    used: set[str] = set()
    for imports, allowed, kind in ((required, declared, "dependencies"), (optional, declared | extras, "an extra")):
        for name, files in sorted(imports.items()):
            if not _is_third_party_or_sibling(name) or name == own_import:
                continue
            dists = _distributions_of(name)
            used |= dists
            if not dists & allowed:
                problems.append(f"`import {name}` ({', '.join(sorted(files))}) needs one of {sorted(dists)} in {kind}")

    runtime_only = {_norm(k) for k in RUNTIME_ONLY.get(own, {})}
    unused = sorted(d for d in declared - used - runtime_only if not d.startswith("vitlab-"))
    if unused:
        problems.append(f"declared but never imported: {unused} (add to RUNTIME_ONLY with a reason if intended)")
    stale = sorted(runtime_only - declared)
    if stale:
        problems.append(f"RUNTIME_ONLY lists {stale}, which {own} does not declare")
    assert not problems, f"{pkg_dir.name}/pyproject.toml:\n  " + "\n  ".join(problems)


def test_scanner_sees_lazy_and_guarded_imports(tmp_path: Path) -> None:
    """The collector finds imports inside functions and tells ImportError-guarded ones apart."""
    (tmp_path / "m.py").write_text(
        "import os\nfrom vitlab.core import ViT\nfrom vitlab import peft\n"
        "def f():\n    import timm.layers\n"
        "try:\n    import cv2\nexcept ImportError:\n    cv2 = None\n"
        "from . import sibling\n"
    )
    required, optional = collect_imports(tmp_path)
    assert set(required) == {"os", "vitlab.core", "vitlab.peft", "timm"}
    assert set(optional) == {"cv2"}
    assert _distributions_of("PIL") == {"pillow"} and _distributions_of("yaml") == {"pyyaml"}
    assert _distributions_of("vitlab.peft") == {"vitlab-peft"}


def _sibling_imports(src: Path) -> list[tuple[str, int, str, list[str]]]:
    """(file, line, module, names) of every absolute ``from vitlab.<pkg>... import`` under ``src``."""
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vitlab."):
                found.append((str(path.relative_to(src)), node.lineno, node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                found += [(str(path.relative_to(src)), node.lineno, a.name, []) for a in node.names
                          if a.name.startswith("vitlab.")]
    return found


def _module_file(module: str) -> Path | None:
    """The source of ``vitlab.<pkg>.<...>`` in this checkout (a package's ``__init__.py`` or a module)."""
    parts = module.split(".")
    base = REPO / "packages" / parts[1] / "src" / Path(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


@pytest.mark.parametrize("pkg_dir", PACKAGES, ids=[p.name for p in PACKAGES])
def test_siblings_use_public_namespaces(pkg_dir: Path) -> None:
    """A package reaches into another only through its sub-packages' ``__init__`` (``vitlab.core.data``,
    ``vitlab.core.backbones`` ...) or its top-level modules (``vitlab.core.cli``), never into the files of a
    sub-package (``vitlab.core.data.io``) nor for a private name: a sibling then survives core moving code
    between files, as it did when ``data/dense.py`` and ``data/synthetic.py`` were split."""
    own = pkg_dir.name
    problems = []
    for rel, line, module, names in _sibling_imports(pkg_dir / "src"):
        parts = module.split(".")
        if parts[1] == own:
            continue
        where = f"{rel}:{line} `{module}`"
        target = _module_file(module)
        if target is None:
            problems.append(f"{where}: no such module in packages/{parts[1]}")
            continue
        parent = target.parent if target.name != "__init__.py" else target.parent.parent
        if target.name != "__init__.py" and len(parts) > 3 and (parent / "__init__.py").is_file():
            problems.append(f"{where}: a module inside a sub-package; import from `{'.'.join(parts[:-1])}`")
        private = [n for n in names if n.startswith("_")]
        if private:
            problems.append(f"{where}: private names {private}")
    assert not problems, f"packages/{own}:\n  " + "\n  ".join(problems)
