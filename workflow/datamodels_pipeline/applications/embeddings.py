"""Datamodel embeddings: PCA and spectral clustering of the targets' weight vectors, checked by retraining.

Each target's datamodel weight vector (raw units, length |S|), scaled to unit
L2 norm, is its embedding (paper section 4). PCA over the targets finds the
main directions along which targets differ in *which training examples they
depend on*; spectral clustering on the cosine similarity of the embeddings
(clipped at 0) groups targets that depend on the same training examples. The
clusters are compared with the class labels (purity, adjusted Rand index).

A principal direction v lives in training-example space. The intervention
check removes the ``n_remove`` training examples at one end of v (largest
v_i for the + end, most negative for the - end) from the full training set
and retrains: the targets whose projection on v has the same sign (the
aligned group) should lose margin, the targets at the other end (the
opposite group) should gain or lose less, and random targets change little.
Changes are paired by model seed (same seeds as the full-data reference).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import data, fit
from ..atomic import atomic_output
from ..seeding import AppIndex, Stream, rng
from . import figures
from .retrain import Retrainer
from .sampling import top_by_weight

log = logging.getLogger(__name__)
CLUSTER_INDEX, RANDOM_INDEX = AppIndex.EMBEDDINGS_CLUSTER, AppIndex.EMBEDDINGS_RANDOM
"""``Stream.APPLICATION`` indices of the clustering's random state and of the random control groups."""
ENDS = (("positive", 1), ("negative", -1))
NO_CLUSTER = -1
"""Cluster id of a target whose datamodel is all zeros (it has no direction)."""
SHOW_PCS, SHOW_IMAGES = 3, 6
"""Principal components drawn in the figure, and images per end and per cluster."""


def embed(weight: np.ndarray) -> np.ndarray:
    """Embeddings ``[n_targets, n_train]``: each target's weight column scaled to unit L2 norm (zeros stay zero)."""
    w = np.asarray(weight, dtype=np.float64).T
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    return np.divide(w, norm, out=np.zeros_like(w), where=norm > 0)


def principal_components(embedding: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the embeddings: directions ``[k, n_train]``, projections ``[n_targets, k]``, explained variance ratios."""
    from sklearn.decomposition import PCA

    if not 1 <= n_components <= min(embedding.shape):
        raise ValueError(f"n_components={n_components} must be in [1, {min(embedding.shape)}] "
                         f"for {embedding.shape[0]} targets and {embedding.shape[1]} training examples")
    pca = PCA(n_components=n_components, svd_solver="full").fit(embedding)
    return pca.components_, pca.transform(embedding), pca.explained_variance_ratio_


def affinity(embedding: np.ndarray) -> np.ndarray:
    """Cosine similarity of unit-norm embeddings clipped at 0, with ones on the diagonal."""
    similarity = np.clip(embedding @ embedding.T, 0.0, None)
    np.fill_diagonal(similarity, 1.0)
    return similarity


def cluster(embedding: np.ndarray, n_clusters: int, random_state: int) -> np.ndarray:
    """Spectral clusters of the targets (ids by decreasing size); all-zero embeddings get ``NO_CLUSTER``."""
    from sklearn.cluster import SpectralClustering

    nonzero = np.flatnonzero(np.abs(embedding).sum(axis=1) > 0)
    if not 2 <= n_clusters <= len(nonzero):
        raise ValueError(f"n_clusters={n_clusters} must be in [2, {len(nonzero)}] (targets with a non-zero datamodel)")
    model = SpectralClustering(n_clusters=n_clusters, affinity="precomputed", assign_labels="kmeans",
                               random_state=random_state, n_init=10)
    raw = model.fit_predict(affinity(embedding[nonzero]))
    out = np.full(len(embedding), NO_CLUSTER, dtype=np.int64)
    out[nonzero] = relabel_by_size(raw)
    return out


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Rename cluster ids 0, 1, ... by decreasing size (ties: the cluster whose first member comes first)."""
    labels = np.asarray(labels)
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = ids[np.lexsort((first, -counts))]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    """How many of ``labels`` have each label (keys as strings, for JSON)."""
    values, counts = np.unique(labels, return_counts=True)
    return {str(int(v)): int(n) for v, n in zip(values, counts)}


def composition(clusters: np.ndarray, labels: np.ndarray) -> dict:
    """Per-cluster sizes and label counts, purity and adjusted Rand index against the labels (clustered targets)."""
    from sklearn.metrics import adjusted_rand_score

    keep = clusters != NO_CLUSTER
    clusters, labels = clusters[keep], np.asarray(labels)[keep]
    per_cluster = []
    for c in np.unique(clusters):
        values, counts = np.unique(labels[clusters == c], return_counts=True)
        per_cluster.append({"cluster": int(c), "size": int(counts.sum()), "majority_label": int(values[np.argmax(counts)]),
                            "majority_count": int(counts.max()), "majority_fraction": float(counts.max() / counts.sum()),
                            "label_counts": _label_counts(labels[clusters == c])})
    majority = sum(c["majority_count"] for c in per_cluster)
    return {"n_clustered": int(len(clusters)), "n_not_clustered": int((~keep).sum()),
            "purity": float(majority / len(clusters)) if len(clusters) else None,
            "adjusted_rand_index": float(adjusted_rand_score(labels, clusters)) if len(clusters) else None,
            "clusters": per_cluster}


def removal_set(direction: np.ndarray, n_remove: int, sign: int) -> np.ndarray:
    """The ``n_remove`` training examples at one end of a direction (largest ``sign * v_i`` first)."""
    if not 0 < n_remove < len(direction):
        raise ValueError(f"n_remove={n_remove} must be in [1, {len(direction) - 1}] (|S| = {len(direction)})")
    return top_by_weight(sign * np.asarray(direction, dtype=np.float64), n_remove)


def end_groups(projection: np.ndarray, sign: int, n_group: int, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Aligned and opposite target groups of one end: up to ``n_group`` eligible targets with the largest
    ``sign * projection`` (> 0), and with the largest ``-sign * projection`` (> 0), extreme first."""
    eligible = np.asarray(eligible, dtype=np.int64)
    signed = sign * np.asarray(projection, dtype=np.float64)[eligible]
    aligned = eligible[top_by_weight(signed, min(n_group, len(eligible)))]
    opposite = eligible[top_by_weight(-signed, min(n_group, len(eligible)))]
    return aligned[sign * projection[aligned] > 0], opposite[sign * projection[opposite] < 0]


def per_seed_mean(change: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Mean change over a group of targets, per seed: ``change [n_seeds, n_targets]`` -> ``[n_seeds]``."""
    if len(members) == 0:
        return np.full(change.shape[0], np.nan)
    return change[:, members].astype(np.float64).mean(axis=1)


def mean_and_se(per_seed: np.ndarray) -> dict:
    """Mean over seeds and its standard error (None with fewer than two seeds or an empty group)."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    if np.isnan(per_seed).any():
        return {"mean": None, "se": None}
    se = float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))) if len(per_seed) > 1 else None
    return {"mean": float(per_seed.mean()), "se": se}


def group_stats(change: np.ndarray, correct_change: np.ndarray, predicted: np.ndarray, members: np.ndarray) -> dict:
    """Margin change (mean, s.e. over seeds), accuracy change and datamodel-predicted change of one group."""
    return {"n": int(len(members)), **mean_and_se(per_seed_mean(change, members)),
            "accuracy_change": float(per_seed_mean(correct_change, members).mean()) if len(members) else None,
            "predicted_change": float(predicted[members].mean()) if len(members) else None,
            "targets": [int(t) for t in members]}


def intervention_stats(change: np.ndarray, correct_change: np.ndarray, predicted: np.ndarray,
                       groups: dict[str, np.ndarray]) -> dict:
    """Statistics of each group and the seed-paired differences aligned - opposite and aligned - random."""
    stats = {name: group_stats(change, correct_change, predicted, members) for name, members in groups.items()}
    if "all" in stats:  # every eligible target: its list would only repeat the data set's target ids
        del stats["all"]["targets"]
    aligned = per_seed_mean(change, groups["aligned"])
    return {"groups": stats,
            "aligned_minus_opposite": mean_and_se(aligned - per_seed_mean(change, groups["opposite"])),
            "aligned_minus_random": mean_and_se(aligned - per_seed_mean(change, groups["random"]))}


def interventions(components: np.ndarray, projections: np.ndarray, settings: dict, eligible: np.ndarray,
                  target_train_index: np.ndarray, generator: np.random.Generator) -> list[dict]:
    """One record per (principal component, end): removed training examples and the target groups (aligned,
    opposite, random control, all).

    Targets that are themselves removed training examples are left out of every group.
    """
    records = []
    for j in range(settings["n_components"]):
        for end, sign in ENDS:
            removed = removal_set(components[j], settings["n_remove"], sign)
            candidates = eligible[~np.isin(target_train_index[eligible], removed)]
            aligned, opposite = end_groups(projections[:, j], sign, settings["n_group"], candidates)
            random = np.sort(generator.choice(candidates, size=min(settings["n_group"], len(candidates)), replace=False))
            records.append({"pc": j + 1, "end": end, "sign": sign, "removed": removed,
                            "groups": {"aligned": aligned, "opposite": opposite, "random": random, "all": candidates}})
    return records


def retrain_interventions(records: list[dict], weight: np.ndarray, dataset: data.Dataset, retrainer: Retrainer,
                          ) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """Retrain without each removal set; the reference margins, a summary per record and the mean change per target."""
    reference = retrainer.reference()                                              # [n_seeds, n_targets]
    margins = retrainer.margins([r["removed"] for r in records])                   # [n_sets, n_seeds, n_targets]
    results, mean_change = [], np.empty((len(records), dataset.n_targets))
    for i, record in enumerate(records):
        change = margins[i] - reference
        correct_change = (margins[i] > 0).astype(np.float64) - (reference > 0)
        predicted = -weight[record["removed"]].astype(np.float64).sum(axis=0)
        mean_change[i] = change.mean(axis=0)
        results.append({"pc": record["pc"], "end": record["end"], "n_removed": int(len(record["removed"])),
                        "removed": record["removed"].tolist(),
                        "removed_label_counts": _label_counts(dataset.y_train[record["removed"]]),
                        **intervention_stats(change, correct_change, predicted, record["groups"])})
    return reference, results, mean_change


def _write_table(path: str, dataset: data.Dataset, norm: np.ndarray, projections: np.ndarray, clusters: np.ndarray,
                 reference: np.ndarray, records: list[dict], mean_change: np.ndarray) -> None:
    columns = {
        "target": pa.array(np.arange(dataset.n_targets, dtype=np.int64)),
        "target_label": pa.array(dataset.y_targets.astype(np.int64)),
        "target_train_index": pa.array(dataset.target_train_index.astype(np.int64)),
        "weight_norm": pa.array(norm.astype(np.float64)),
        **{f"pc_{j + 1}": pa.array(projections[:, j].astype(np.float64)) for j in range(projections.shape[1])},
        "cluster": pa.array(clusters),
        "reference_margin": pa.array(reference.mean(axis=0).astype(np.float64)),
        **{f"margin_change_pc{r['pc']}_{r['end']}": pa.array(mean_change[i]) for i, r in enumerate(records)},
    }
    with atomic_output(path) as tmp:
        pq.write_table(pa.table(columns), tmp)


def _extreme_panels(dataset: data.Dataset, components: np.ndarray, projections: np.ndarray,
                    eligible: np.ndarray) -> list[dict]:
    """Per shown component and end: the most extreme targets and training examples (image, label, value)."""
    image = lambda x: x.reshape(dataset.image_shape)  # noqa: E731
    panels = []
    for j in range(min(SHOW_PCS, components.shape[0])):
        for end, sign in ENDS:
            targets = eligible[top_by_weight(sign * projections[eligible, j], min(SHOW_IMAGES, len(eligible)))]
            train = removal_set(components[j], min(SHOW_IMAGES, dataset.n_train - 1), sign)
            panels.append({"pc": j + 1, "title": f"PC{j + 1} {'+' if sign > 0 else '−'}",
                           "targets": [(image(dataset.x_targets[t]), int(dataset.y_targets[t]), float(projections[t, j]))
                                       for t in targets],
                           "train": [(image(dataset.x_train[i]), int(dataset.y_train[i]), float(components[j, i]))
                                     for i in train]})
    return panels


def _cluster_members(dataset: data.Dataset, embedding: np.ndarray, clusters: np.ndarray) -> list[list[tuple]]:
    """Per cluster, the members closest (cosine) to the cluster's mean embedding: (image, label)."""
    rows = []
    for c in range(int(clusters.max()) + 1):
        members = np.flatnonzero(clusters == c)
        centre = embedding[members].mean(axis=0)
        typical = members[top_by_weight(embedding[members] @ centre, min(SHOW_IMAGES, len(members)))]
        rows.append([(dataset.x_targets[t].reshape(dataset.image_shape), int(dataset.y_targets[t])) for t in typical])
    return rows


def run(datamodels_path: str, data_path: str, alpha: float, settings: dict, recipe: dict, seed: int, threads: int,
        table_path: str, summary_path: str, components_path: str, clusters_path: str, intervention_path: str) -> None:
    """Embed, run PCA and spectral clustering, retrain without each end of the top components, write the outputs."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    dataset = data.load(data_path)
    weight = fit.read(datamodels_path).weight
    embedding = embed(weight)
    norm = np.linalg.norm(weight.astype(np.float64), axis=0)
    eligible = np.flatnonzero(norm > 0)
    components, projections, ratios = principal_components(embedding, settings["n_components"])
    state = int(rng(seed, Stream.APPLICATION, alpha, CLUSTER_INDEX).integers(2**31))
    clusters = cluster(embedding, settings["n_clusters"], state)
    labels = composition(clusters, dataset.y_targets)
    records = interventions(components, projections, settings["intervention"], eligible, dataset.target_train_index,
                            rng(seed, Stream.APPLICATION, alpha, RANDOM_INDEX))
    retrainer = Retrainer(dataset, recipe, seed, settings["n_seeds"])
    reference, results, mean_change = retrain_interventions(records, weight, dataset, retrainer)
    _write_table(table_path, dataset, norm, projections, clusters, reference, records, mean_change)
    summary = {
        "alpha": alpha, "n_targets": dataset.n_targets, "n_zero_datamodels": int(dataset.n_targets - len(eligible)),
        "n_components": settings["n_components"], "explained_variance_ratio": [float(r) for r in ratios],
        "explained_variance_total": float(ratios.sum()), "n_clusters": settings["n_clusters"],
        "cluster_sizes": [int((clusters == c).sum()) for c in range(settings["n_clusters"])], **labels,
        "n_seeds": settings["n_seeds"], "intervention_settings": settings["intervention"], "interventions": results,
        "n_models_trained": retrainer.n_models_trained, "seconds": round(time.perf_counter() - start, 1),
    }
    with atomic_output(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    figures.pc_extremes(_extreme_panels(dataset, components, projections, eligible), ratios, alpha, components_path)
    figures.embedding_clusters(projections[:, :2], clusters, dataset.y_targets,
                               _cluster_members(dataset, embedding, clusters), labels, alpha, clusters_path)
    figures.intervention_bars(results, settings["intervention"]["n_remove"], alpha, intervention_path)
    for r in results:
        log.info("PC%d %s end: removing %d examples; margin change aligned %s, opposite %s, random %s, all %s; "
                 "aligned - opposite %s ± %s", r["pc"], r["end"], r["n_removed"],
                 *(figures.fmt(r["groups"][g]["mean"]) for g in ("aligned", "opposite", "random", "all")),
                 figures.fmt(r["aligned_minus_opposite"]["mean"]), figures.fmt(r["aligned_minus_opposite"]["se"]))
    log.info("embeddings (alpha=%s): explained variance of %d PCs %.3f; %d clusters, purity %s, ARI %s; "
             "%d models in %.0f s", alpha, len(ratios), summary["explained_variance_total"], settings["n_clusters"],
             figures.fmt(labels["purity"]), figures.fmt(labels["adjusted_rand_index"]), retrainer.n_models_trained,
             summary["seconds"])
