"""The smoke DAG end to end, rerun behaviour, lint, bad config and the report."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import spearmanr

from datamodels_pipeline import data, fit, masks, store

from workflow_helpers import REPO, copy_workflow, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow
SMOKE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
ALPHAS = [f"{a:g}" for a in SMOKE["subsets"]["alphas"]]
APPLICATIONS = ("counterfactuals", "brittleness", "similar_examples", "leakage", "embeddings",
                "data_selection", "backdoor", "modeldiff", "unlearning", "attribution")
# Rules that fit lasso datamodels of their own with the run's fit settings.
OWN_FITS = ("train_set_datamodels", "modeldiff_datamodels")


@pytest.fixture
def run_dir(smoke_run):
    return smoke_run


def results(run_dir):
    return run_dir / "results" / SMOKE["run"]


def test_outputs_and_metrics(run_dir):
    for alpha in ALPHAS:
        metrics = json.loads((results(run_dir) / f"evaluation/alpha={alpha}/metrics.json").read_text())
        for key in ("lds", "pooled_spearman", "pooled_pearson", "mse", "n_train_models", "n_eval_models", "baseline_lds"):
            assert key in metrics
        assert metrics["n_train_models"] == SMOKE["subsets"]["n_models"]
        assert metrics["n_eval_models"] == SMOKE["subsets"]["n_eval_models"]
        assert 0 < metrics["pooled_spearman"] <= 1
        # Repeated held-out models: the first evaluate.repeated_masks masks, evaluate.seeds_per_mask seeds each.
        repeats = SMOKE["evaluate"]
        assert metrics["repeated"]["n_masks"] + metrics["repeated"]["n_masks_dropped"] == repeats["repeated_masks"]
        assert metrics["repeated"]["seeds_per_mask"] == repeats["seeds_per_mask"]
        assert -1 <= metrics["noise_ceiling"] <= 1 and -1 <= metrics["lds_seed_averaged"] <= 1
        assert metrics["noise_ceiling_seed_averaged"] >= metrics["noise_ceiling"]
        repeat = store.read_models(results(run_dir) / f"aggregate/alpha={alpha}/repeat.parquet",
                                   store.layout_for(json.loads((results(run_dir) / "data/dataset.json").read_text()),
                                                    float(alpha)))
        n_masks = repeats["repeated_masks"]
        expected = masks.draw_subsets(SMOKE["seed"], "eval", float(alpha), repeat.model_id % n_masks, repeat.mask.shape[1])
        np.testing.assert_array_equal(repeat.mask, masks.to_mask(expected, repeat.mask.shape[1]))
        assert len(repeat) == n_masks * (repeats["seeds_per_mask"] - 1)
        for figure in ("predicted_vs_actual.png", "lds_histogram.png", "learning_curve.png"):
            assert (results(run_dir) / f"evaluation/alpha={alpha}/{figure}").stat().st_size > 1000
    summary = (results(run_dir) / "summary.md").read_text()
    assert "LDS" in summary and "noise ceiling" in summary and "lds_fraction_of_ceiling" in summary


def test_outputs_match_an_independent_recomputation(run_dir):
    """Masks redrawn from the seed, LDS recomputed with scipy from the stored files."""
    base = results(run_dir)
    info = json.loads((base / "data/dataset.json").read_text())
    dataset = data.load(base / "data/dataset.npz")
    assert data.fingerprint(dataset) == info["fingerprint"]
    layout = store.layout_for(info, 0.5)
    train = store.read_models(base / "aggregate/alpha=0.5/train.parquet", layout)
    held_out = store.read_models(base / "aggregate/alpha=0.5/eval.parquet", layout)
    expected = masks.to_mask(masks.draw_subsets(SMOKE["seed"], "train", 0.5, train.model_id, info["n_train"]), info["n_train"])
    np.testing.assert_array_equal(train.mask, expected)
    dm = fit.read(base / "datamodels/alpha=0.5/datamodels.parquet")
    per_target = []
    for t in range(info["n_targets"]):
        rows = np.ones(len(held_out), bool)
        if dataset.target_train_index[t] >= 0:
            rows = ~held_out.mask[:, dataset.target_train_index[t]]
        predicted = held_out.mask[rows].astype(np.float64) @ dm.weight[:, t] + dm.bias[t]
        rho = spearmanr(predicted, held_out.margins[rows, t]).statistic
        per_target.append(0.0 if np.isnan(rho) else rho)
    metrics = json.loads((base / "evaluation/alpha=0.5/metrics.json").read_text())
    assert np.isclose(np.mean(per_target), metrics["lds"], atol=1e-6)


def test_application_outputs(run_dir):
    """Tables, summaries and figures of the applications; predictions recomputed from the datamodels."""
    settings = SMOKE["applications"]
    for alpha in ALPHAS:
        base = results(run_dir) / "applications"
        dm = fit.read(results(run_dir) / f"datamodels/alpha={alpha}/datamodels.parquet")
        table = pq.read_table(base / f"counterfactuals/alpha={alpha}/counterfactuals.parquet").to_pylist()
        counter = settings["counterfactuals"]
        assert len(table) == counter["n_targets"] * len(counter["k"]) * 3
        for row in table:
            assert len(row["removed"]) == row["k"]
            assert np.isclose(row["predicted_change"], -dm.weight[row["removed"], row["target"]].astype(np.float64).sum())
            assert np.isfinite(row["actual_change"])
        summary = json.loads((base / f"counterfactuals/alpha={alpha}/summary.json").read_text())
        assert set(summary["mean_actual_change"]) == {"datamodel", "random", "nearest"}
        assert summary["n_models_trained"] == counter["n_seeds"] * (1 + len(table))
        support = pq.read_table(base / f"brittleness/alpha={alpha}/support.parquet").to_pylist()
        assert 0 < len(support) <= settings["brittleness"]["n_targets"]
        assert all(row["reference_margin"] > 0 for row in support)
        assert all(row["flippable"] == (row["support_estimate"] > 0) for row in support)
        brittle = json.loads((base / f"brittleness/alpha={alpha}/summary.json").read_text())
        assert brittle["n_flippable"] == sum(row["flippable"] for row in support)
        similar = pq.read_table(base / f"similar_examples/alpha={alpha}/similar_examples.parquet").to_pylist()
        for row in similar:
            assert (row["weight"] > 0) == (row["sign"] == "positive")
            assert np.isclose(row["weight"], dm.weight[row["train_index"], row["target"]])
        for figure in ("counterfactuals/alpha={a}/predicted_vs_actual_change.png", "counterfactuals/alpha={a}/margin_drop_vs_k.png",
                       "brittleness/alpha={a}/support_curve.png", "similar_examples/alpha={a}/similar_examples.png"):
            assert (base / figure.format(a=alpha)).stat().st_size > 1000


def test_follow_up_application_outputs(run_dir):
    """The follow-up applications' outputs, with their key numbers recomputed from the stored files."""
    settings = SMOKE["applications"]
    dataset = data.load(results(run_dir) / "data/dataset.npz")
    for alpha in ALPHAS:
        base = results(run_dir) / "applications"
        dm = fit.read(results(run_dir) / f"datamodels/alpha={alpha}/datamodels.parquet")
        # Data selection: a DsDm selection is the top-k training examples by summed weight over the choosing targets.
        summary = json.loads((base / f"data_selection/alpha={alpha}/summary.json").read_text())
        score = dm.weight[:, summary["selection_targets"]].astype(np.float64).sum(axis=1)
        for row in pq.read_table(base / f"data_selection/alpha={alpha}/selections.parquet").to_pylist():
            if row["method"] == "dsdm":
                assert len(row["selected"]) == row["size"]
                assert score[row["selected"]].min() >= np.sort(score)[-row["size"]] - 1e-5
        # Backdoor: precision and recall of the flagged examples against the planted poisons.
        scores = {k: np.asarray(v) for k, v in pq.read_table(base / f"backdoor/alpha={alpha}/scores.parquet").to_pydict().items()}
        backdoor = json.loads((base / f"backdoor/alpha={alpha}/summary.json").read_text())
        assert scores["poisoned"].sum() == settings["backdoor"]["n_poison"]
        hits = int((scores["flagged"] & scores["poisoned"]).sum())
        assert np.isclose(backdoor["detection"]["search"]["precision"], hits / scores["flagged"].sum())
        assert np.isclose(backdoor["detection"]["search"]["recall"], hits / scores["poisoned"].sum())
        # ModelDiff: algorithm B's datamodels explain the same targets over the same training set.
        other = fit.read(base / f"modeldiff/alpha={alpha}/other_datamodels.parquet")
        assert other.weight.shape == dm.weight.shape
        assert json.loads((base / f"modeldiff/alpha={alpha}/summary.json").read_text())["other_algorithm"] == "logistic"
        # Unlearning: every method scored on the forget set, against oracles retrained without it.
        unlearning = json.loads((base / f"unlearning/alpha={alpha}/summary.json").read_text())
        assert len(unlearning["forget"]) == settings["unlearning"]["forget_size"]
        assert all(dataset.y_train[i] == settings["unlearning"]["forget_class"] for i in unlearning["forget"])
        # Attribution: the datamodels' row is the evaluation's LDS on the same held-out models.
        attribution = json.loads((base / f"attribution/alpha={alpha}/summary.json").read_text())
        metrics = json.loads((results(run_dir) / f"evaluation/alpha={alpha}/metrics.json").read_text())
        assert attribution["headline"]["datamodels"]["lds"] == metrics["lds"]
        assert attribution["headline"]["empirical_influence"]["lds"] == metrics["baseline_lds"]
        for figure in ("data_selection/alpha={a}/selection_curve.png", "backdoor/alpha={a}/detection.png",
                       "modeldiff/alpha={a}/explained_variance.png", "unlearning/alpha={a}/metrics.png",
                       "attribution/alpha={a}/lds_vs_cost.png"):
            assert (base / figure.format(a=alpha)).stat().st_size > 1000


def test_reference_libraries_rows(run_dir):
    """With the optional extra (CI installs it), dattri's TRAK and influence functions are rows of the leaderboard,
    on the same networks and held-out models as ours (applications.attribution.peers)."""
    pytest.importorskip("dattri", reason="the optional extra: pip install -e .[peers]")
    peers = SMOKE["applications"]["attribution"]["peers"]
    for alpha in ALPHAS:
        base = results(run_dir) / f"applications/attribution/alpha={alpha}"
        rows = {(r["method"], r["variant"]): r for r in pq.read_table(base / "lds.parquet").to_pylist()}
        trak = max(SMOKE["applications"]["attribution"]["trak"]["ensemble"])
        for d in peers["trak_proj_dim"]:
            ours, theirs = rows[("trak", f"proj_dim={d}")], rows[("dattri_trak", f"proj_dim={d}")]
            assert theirs["n_models"] == ours["n_models"] == trak  # the same networks: the same training share
            assert theirs["cpu_seconds_training"] == pytest.approx(ours["cpu_seconds_training"])
        ours, theirs = rows[("influence_function", "")], rows[("dattri_influence", "")]
        assert theirs["cpu_seconds_training"] == pytest.approx(ours["cpu_seconds_training"])
        for row in (rows[("dattri_trak", f"proj_dim={d}")], theirs):
            assert -1 <= row["lds"] <= 1 and row["cpu_seconds"] > row["cpu_seconds_training"] > 0
            assert row["note"].startswith("dattri ")


def test_second_run_does_nothing(run_dir):
    assert planned_jobs(snakemake(run_dir, "-n", configfile=write_config(run_dir, "smoke"))) == {}


def test_more_models_train_only_the_new_chunks(run_dir):
    grown = write_config(run_dir, "grown", lambda c: c["subsets"].update(n_models=160))
    jobs = planned_jobs(snakemake(run_dir, "-n", configfile=grown))
    n = len(ALPHAS)
    assert jobs["train_chunk"] == n and jobs["masks"] == n  # one new chunk per alpha
    assert jobs["aggregate"] == n and jobs["statistics"] == n  # the train aggregate of each alpha, summed again
    assert jobs["fit_datamodels"] == 2 * n and jobs["merge_datamodels"] == n  # two target blocks per alpha
    assert "prepare_data" not in jobs


def test_regression_parameter_does_not_retrain(run_dir):
    changed = write_config(run_dir, "refit", lambda c: c["fit"].update(n_lambdas=6))
    jobs = planned_jobs(snakemake(run_dir, "-n", configfile=changed))
    # The applications read the datamodels, so they legitimately rerun too (the base models do not retrain).
    assert set(jobs) == {"fit_datamodels", "merge_datamodels", "evaluate", "learning_curve", "summary", "all",
                         *OWN_FITS, *APPLICATIONS}  # not the statistics pass: the sums do not depend on lambda


def _edited(run_dir, edits, config):
    """The dry-run plan after edits ``{module: edit}`` of package modules (restored afterwards)."""
    edit_of = {run_dir / "workflow/datamodels_pipeline" / module: edit for module, edit in edits.items()}
    texts = {path: path.read_text() for path in edit_of}
    try:
        for path, edit in edit_of.items():
            path.write_text(edit(texts[path]))
        return planned_jobs(snakemake(run_dir, "-n", configfile=config))
    finally:
        for path, text in texts.items():
            path.write_text(text)


def semantic(text: str) -> str:
    return text + "\n_EDIT = 1\n"  # a module-level assignment: new code, as far as the fingerprint can tell


def comment(text: str) -> str:
    return text + "\n# a comment\n"


def docstring(text: str) -> str:
    return text.replace('"""', '"""An edited docstring. ', 1)


def test_code_edits_rerun_only_their_stage(run_dir):
    config = write_config(run_dir, "smoke")
    # A comment or a docstring changes no stage's code fingerprint: nothing reruns (one dry run for the four edits,
    # every module's edits are checked without Snakemake in test_codegraph).
    assert _edited(run_dir, {"lasso.py": comment, "training.py": comment, "devices.py": docstring,
                             "applications/brittleness.py": docstring}, config) == {}
    # The attribution benchmark scores every method with evaluate's LDS, so it reruns too.
    assert set(_edited(run_dir, {"evaluate.py": semantic}, config)) == {
        "evaluate", "learning_curve", "summary", "attribution", "all"}
    # The solver: every fit and what reads the datamodels; no model is retrained by the main run.
    assert set(_edited(run_dir, {"lasso.py": semantic}, config)) == {
        "fit_datamodels", "merge_datamodels", "evaluate", "learning_curve", "summary", "all", *OWN_FITS,
        *APPLICATIONS}
    # per alpha: 3 train chunks, 1 held-out, 1 of repeated held-out models
    assert _edited(run_dir, {"training.py": semantic}, config)["train_chunk"] == 5 * len(ALPHAS)
    assert _edited(run_dir, {"applications/brittleness.py": semantic}, config) == {
        "brittleness": len(ALPHAS), "all": 1}


def test_report_has_every_figure(run_dir):
    snakemake(run_dir, "--report", str(run_dir / "report.html"), configfile=write_config(run_dir, "smoke"))
    html = (run_dir / "report.html").read_text(errors="ignore")
    for name in ("predicted_vs_actual.png", "lds_histogram.png", "learning_curve.png", "summary.tsv",
                 "predicted_vs_actual_change.png", "margin_drop_vs_k.png", "support_curve.png", "similar_examples.png",
                 "leakage.png", "components.png", "clusters.png", "intervention.png", "selection_curve.png",
                 "detection.png", "attack_success.png", "explained_variance.png", "examples.png", "check.png",
                 "metrics.png", "margins_vs_oracle.png", "lds_vs_cost.png"):
        assert name in html


def test_lint_is_clean(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--lint", configfile=write_config(workdir, "smoke"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_bad_config_stops_before_anything_runs(tmp_path):
    workdir = copy_workflow(tmp_path)
    bad = write_config(workdir, "bad", lambda c: c["subsets"].update(alphas=[1.5]))
    result = snakemake(workdir, "-n", configfile=bad, check=False)
    assert result.returncode != 0
    assert "invalid config key 'subsets.alphas[0]'" in result.stdout + result.stderr
    assert not (workdir / "results").exists()
