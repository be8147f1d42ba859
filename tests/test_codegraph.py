"""Code fingerprints: comments, docstrings and formatting change nothing; code changes exactly its dependents."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datamodels_pipeline import codegraph

from conftest import REPO

SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


@pytest.fixture
def package(tmp_path):
    """A private copy of the package and the scripts, to edit."""
    shutil.copytree(REPO / "workflow" / "datamodels_pipeline", tmp_path / "datamodels_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "workflow" / "scripts", tmp_path / "scripts")
    return tmp_path


def _fingerprints(root: Path) -> dict[str, str]:
    return {script.stem: codegraph.fingerprint([script], root=root / "datamodels_pipeline")
            for script in sorted((root / "scripts").glob("*.py"))}


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in (root / "datamodels_pipeline").rglob("*.py") if "examples" not in p.parts)


def test_comments_docstrings_and_formatting_change_no_fingerprint(package):
    before = _fingerprints(package)
    for module in _modules(package):
        text = module.read_text()
        edited = text.replace('"""', '"""An edited docstring.\n\n', 1) + "\n\n# a comment\n"
        module.write_text(edited.replace("\n\n\n", "\n\n\n\n"))  # and a blank line more between definitions
    assert _fingerprints(package) == before


def test_a_semantic_edit_changes_exactly_the_scripts_that_import_the_module(package):
    root = package / "datamodels_pipeline"
    before = _fingerprints(package)
    closures = {script.stem: set(codegraph.closure([script], root=root)) for script in (package / "scripts").glob("*.py")}
    for name in ("lasso.py", "training.py", "statistics.py", "applications/brittleness.py"):
        module = root / name
        text = module.read_text()
        module.write_text(text + "\n_EDIT = 1\n")
        after = _fingerprints(package)
        module.write_text(text)
        changed = {script for script in before if after[script] != before[script]}
        assert changed == {script for script, files in closures.items() if module in files}, name
        assert changed, name
    assert "train_chunk" not in {s for s, files in closures.items() if root / "lasso.py" in files}
    assert {s for s, files in closures.items() if root / "applications/brittleness.py" in files} == {"brittleness"}


def test_a_package_module_counts_for_the_scripts_that_import_its_package(package):
    """applications/modeldiff/ is a package: its __init__ and relative imports (``.x``, ``..x``, ``...x``) are followed."""
    root = package / "datamodels_pipeline"
    before = _fingerprints(package)
    module = root / "applications" / "modeldiff" / "directions.py"
    module.write_text(module.read_text() + "\n_EDIT = 1\n")
    after = _fingerprints(package)
    assert {script for script in before if after[script] != before[script]} == {"modeldiff", "modeldiff_datamodels"}
    closure = set(codegraph.closure([package / "scripts" / "modeldiff.py"], root=root))
    assert {root / "applications/modeldiff/__init__.py", root / "applications/modeldiff/stage.py",
            root / "applications/retrain.py", root / "fit.py"} <= closure  # stage.py: from ..retrain, from ... import fit


PROBE = """
import ast, importlib, json, sys
loaded = {}
for script in sys.argv[1:]:
    for name in [n for n in sys.modules if n.startswith("datamodels_pipeline")]:
        del sys.modules[name]  # each script starts from no package module (third-party ones stay: faster)
    for node in ast.walk(ast.parse(open(script).read())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("datamodels_pipeline"):
            for alias in node.names:
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ModuleNotFoundError:
                    importlib.import_module(node.module)
    loaded[script] = sorted(m.__file__ for n, m in sys.modules.items() if n.startswith("datamodels_pipeline"))
print(json.dumps(loaded))
"""


def test_the_closure_holds_every_package_module_a_script_imports(package):
    """Import what each script imports (one fresh interpreter) and compare with the static closure."""
    root = package / "datamodels_pipeline"
    scripts = [str(s) for s in sorted((package / "scripts").glob("*.py"))]
    result = subprocess.run([sys.executable, "-c", PROBE, *scripts], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin"})
    for script, files in json.loads(result.stdout).items():
        loaded = {Path(f).resolve() for f in files}
        assert loaded and loaded <= set(codegraph.closure([script], root=root)), script


def test_learners_are_loaded_by_name_only():
    """The run's learner enters a fingerprint through the rules (learner_files: protocol.REGISTRY), not through static imports."""
    root = REPO / "workflow" / "datamodels_pipeline"
    train_chunk = set(codegraph.closure([REPO / "workflow" / "scripts" / "train_chunk.py"], root=root))
    assert root / "training.py" in train_chunk
    assert not {root / "cnn.py", root / "resnet9.py", root / "custom.py"} & train_chunk


def test_a_custom_entry_points_file_enters_the_fingerprint(package):
    """A file outside the package (a user's entry point) counts with the modules it imports from the package."""
    root = package / "datamodels_pipeline"
    entry = package / "my_learner.py"
    entry.write_text("from datamodels_pipeline import training\n\ndef train():\n    return 1\n")
    script = package / "scripts" / "train_chunk.py"
    with_entry = codegraph.fingerprint([script, entry], root=root)
    assert with_entry != codegraph.fingerprint([script], root=root)
    entry.write_text(entry.read_text() + "# a comment\n")
    assert codegraph.fingerprint([script, entry], root=root) == with_entry
    entry.write_text(entry.read_text().replace("return 1", "return 2"))
    assert codegraph.fingerprint([script, entry], root=root) != with_entry
