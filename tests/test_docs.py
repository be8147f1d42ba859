"""The documentation: a short README, links that resolve, a configuration reference generated from the schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from datamodels_pipeline import config_reference
from datamodels_pipeline.config import load_schema

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_short() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or not file.is_relative_to(REPO):
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: links to nothing: {broken}"


def test_anchors_follow_github() -> None:
    page = REPO / "docs" / "formats.md"
    assert {"metrics-metricsjson", "reading-the-report", "file-formats"} <= anchors(page)


def test_config_reference_is_up_to_date() -> None:
    expected = config_reference.render(load_schema())
    assert (REPO / "config" / "README.md").read_text() == expected, \
        "config/README.md is out of date: run python -m datamodels_pipeline.config_reference"
    assert config_reference.main(["--check"]) == 0


def test_config_reference_has_every_key_with_a_description() -> None:
    text = (REPO / "config" / "README.md").read_text()

    def keys(spec: dict, prefix: str = ""):
        for name, sub in spec.get("properties", {}).items():
            yield f"{prefix}{name}", sub
            yield from keys(sub, f"{prefix}{name}.")

    for key, sub in keys(load_schema()):
        assert f"| `{key}` |" in text or ("." not in key and f"## `{key}`" in text), key
        assert sub.get("description"), f"{key} has no description in the schema"
    assert "| `train.schedule` | `constant` \\| `one_cycle` | cnn: `constant`; resnet9: `one_cycle` |" in text


def test_the_capability_table_is_the_learners_declarations() -> None:
    """docs/own-model.md's table of what each learner provides is the classes' declared ``capabilities``."""
    from datamodels_pipeline import protocol

    models = {"`mlp`": {"name": "mlp"}, "`logistic`": {"name": "logistic"}, "`cnn`": {"name": "cnn"},
              "`resnet9`": {"name": "resnet9"},
              "`custom` with a function": {"name": "custom",
                                           "entry_point": "datamodels_pipeline.examples.sklearn_logistic:train"},
              "`custom` with a `TorchLearner` class": {
                  "name": "custom", "entry_point": "datamodels_pipeline.examples.own_torch_model:TanhNet"}}
    rows = re.findall(r"^\| (`[^|]*?) \| (yes|no) \| (yes|no) \|", (REPO / "docs" / "own-model.md").read_text(), re.M)
    assert [row[0] for row in rows] == list(models)
    for name, margins, network in rows:
        declared = protocol.capabilities(models[name])
        assert (protocol.MARGINS in declared, protocol.TORCH_MODULE in declared) == (margins == "yes",
                                                                                   network == "yes"), name


CAPTIONS = sorted((REPO / "workflow" / "report").glob("*.rst"))


@pytest.mark.parametrize("caption", CAPTIONS, ids=lambda p: p.name)
def test_report_captions_render_without_docutils_messages(caption: Path) -> None:
    """Each figure's caption as ``snakemake --report`` renders it (Jinja, then docutils' reStructuredText): a message
    such as an undefined substitution (a bare ``|x|``) would be printed inside the report."""
    from docutils.core import publish_parts
    from docutils.utils import SystemMessage
    from jinja2 import ChainableUndefined, Environment

    text = Environment(undefined=ChainableUndefined).from_string(caption.read_text()).render()
    try:
        publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})
    except SystemMessage as message:
        pytest.fail(f"{caption.relative_to(REPO)}: {message}")
