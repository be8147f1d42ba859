"""What a stage's code means: the package modules its script imports, and a fingerprint of their syntax trees.

A rule reruns when its code changes. File contents (or modification times) are the wrong key: a comment,
a docstring or reformatting would retrain every model downstream. :func:`fingerprint` hashes each module's
syntax tree with docstrings removed (the parser already drops comments and formatting), over the modules the
stage's script imports transitively within this package (:func:`closure`), so only an edit that can change
what the code does changes it. The rules put the fingerprint in their ``params``; Snakemake reruns a job
whose params changed (``snakemake --list-changes params`` names them).

Imports are read statically (``import``/``from`` statements anywhere in a module, relative or absolute);
a module loaded by name at run time (the learners) is added by the rule that selects it.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

PACKAGE = "datamodels_pipeline"
ROOT = Path(__file__).resolve().parent


def _module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a package module named ``datamodels_pipeline.a.b`` (a package's ``__init__.py``), or None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path = ROOT) -> str:
    relative = path.resolve().relative_to(root).with_suffix("")
    parts = [PACKAGE, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _Parsed(NamedTuple):
    imports: tuple[Path, ...]
    """The package modules the file imports directly, with the packages that contain them."""
    digest: str
    """SHA-256 of its syntax tree without docstrings, comments and formatting."""


def _parsed(path: Path, root: Path = ROOT) -> _Parsed:
    """One parse per version of the file (a workflow's rules share most modules)."""
    path = path.resolve()
    stat = path.stat()
    return _parsed_cached(path, root.resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _parsed_cached(path: Path, root: Path, mtime_ns: int, size: int) -> _Parsed:
    tree = ast.parse(path.read_text(), filename=str(path))
    imports = set()
    for name in _import_names(tree, path, root):  # absolute names of its modules and `from` targets
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            module = _module_file(".".join(parts[:k]), root)
            if module is not None:
                imports.add(module.resolve())
    text = ast.dump(_StripDocstrings().visit(tree), annotate_fields=True, include_attributes=False)
    return _Parsed(tuple(sorted(imports)), hashlib.sha256(text.encode()).hexdigest())


def _import_names(tree: ast.AST, path: Path, root: Path) -> frozenset[str]:
    inside = path.is_relative_to(root)
    here = _module_name(path, root) if inside else ""
    package = here if inside and path.name == "__init__.py" else here.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def closure(paths: Iterable[str | Path], root: Path = ROOT) -> list[Path]:
    """Every package module the given files import, transitively, with the packages that contain them; sorted."""
    seen: set[Path] = set()
    stack = [Path(p) for p in paths]
    while stack:
        path = stack.pop()
        for found in _parsed(path, root).imports:
            if found not in seen:
                seen.add(found)
                stack.append(found)
    return sorted(seen)


class _StripDocstrings(ast.NodeTransformer):
    """Remove the docstring of every module, class and function (the only strings that are not code)."""

    def _strip(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _strip


def fingerprint(paths: Iterable[str | Path], root: Path = ROOT) -> str:
    """SHA-256 (first 16 hex digits) over the names and normalised-tree digests of the given files and every module
    they import (each file is parsed and hashed once per process and version of it: a workflow has many rules)."""
    files = sorted({Path(p).resolve() for p in paths} | set(closure(paths, root)))
    digest = hashlib.sha256()
    for path in files:
        name = _module_name(path, root) if path.is_relative_to(root) else path.name
        digest.update(f"{name}\n{_parsed(path, root).digest}\n".encode())
    return digest.hexdigest()[:16]
