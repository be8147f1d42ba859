"""The random streams: one registry (``seeding.Stream``, ``seeding.AppIndex``), unique, read by every module."""

import ast

import numpy as np

from datamodels_pipeline import seeding
from datamodels_pipeline.seeding import AppIndex, Stream

from conftest import REPO

PACKAGE = REPO / "workflow" / "datamodels_pipeline"
DRAWS = {"rng", "int_seed", "seed_sequence"}


def test_streams_and_application_indices_are_unique():
    assert len({int(s) for s in Stream}) == len(Stream.__members__)
    assert len({int(i) for i in AppIndex}) == len(AppIndex.__members__)  # no aliases: @unique refuses them
    below = [int(i) for i in AppIndex if i is not AppIndex.RETRAIN_MODEL_SEEDS]
    assert max(below) < AppIndex.RETRAIN_MODEL_SEEDS  # the model-seed range starts above every other index


def test_registered_values_are_the_on_disk_ones():
    # changing one of these changes that stream's draws, i.e. the results on disk
    assert [int(s) for s in Stream] == list(range(1, 12))  # 11: EVAL_REPEAT_MODEL, the repeated held-out models
    assert AppIndex.COUNTERFACTUALS_TARGETS == 0 and AppIndex.EMBEDDINGS_RANDOM == 5
    assert (AppIndex.DATA_SELECTION_SPLIT, AppIndex.BACKDOOR_POISON, AppIndex.MODELDIFF_RANDOM_B_MINUS_A) == (20, 30, 41)
    assert (AppIndex.UNLEARNING_FORGET, AppIndex.UNLEARNING_ORDER_ORACLE_MATCHING) == (50, 55)
    assert (AppIndex.ATTRIBUTION_SEEDS_INFLUENCE_FUNCTION, AppIndex.ATTRIBUTION_SUBSETS_INFLUENCE_FUNCTION,
            AppIndex.ATTRIBUTION_PROBE, AppIndex.RETRAIN_MODEL_SEEDS) == (60, 65, 69, 1_000_000)
    assert seeding.app_index("attribution_subsets", "trak") == 67
    # an IntEnum index draws the same numbers as the plain int it stands for
    assert seeding.rng(3, Stream.APPLICATION, 0.5, AppIndex.UNLEARNING_RETAIN).random() == \
        np.random.default_rng(np.random.SeedSequence([3, 7, 500_000, 51])).random()


def _literal_int(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Constant) and type(n.value) is int for n in ast.walk(node))


def test_modules_take_their_indices_from_the_registry():
    """No module outside seeding.py hands out a stream index by a number of its own."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "seeding.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            # a module-level *_INDEX* constant holding a number
            if isinstance(node, ast.Assign) and node in tree.body:
                names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                if any("INDEX" in n for n in names) and _literal_int(node.value):
                    offenders.append(f"{path.name}:{node.lineno} {', '.join(names)}")
            # a draw from Stream.APPLICATION (or a target sample) whose index is or contains a number
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                args = node.args
                if name in DRAWS and len(args) >= 4 and "APPLICATION" in ast.unparse(args[1]):
                    index = args[3]
                elif name == "target_order" and len(args) >= 4:
                    index = args[3]
                else:
                    continue
                if _literal_int(index):
                    offenders.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert not offenders, offenders
