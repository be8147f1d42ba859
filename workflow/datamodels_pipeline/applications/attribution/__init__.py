"""Attribution baselines scored by LDS on the datamodels' held-out models, beside the compute each used.

Every method yields a score matrix ``[n_train, n_targets]`` (see
``attribution_methods``); it is scored exactly like the datamodels, with
``evaluate.score`` on the same held-out models (``aggregate/alpha=<a>/eval.parquet``),
so the LDS numbers are directly comparable. A score matrix has no meaningful
bias; LDS (a per-target Spearman correlation over held-out models) needs none,
so the bias is zero, and the pooled Spearman of such a row compares scales
across targets that the method never calibrated (read it only for the datamodels
and empirical influence, which have a bias).

Rows of the table:

* ``datamodels``: the run's lasso datamodels (LDS, median, pooled Spearman and
  per-target LDS read from the evaluation stage's ``metrics.json`` and
  ``per_target.parquet``, never recomputed), and the learning curve's refits on
  fewer models (LDS from ``learning_curve.json``);
* ``empirical_influence``: difference of mean margins with and without each
  example over the training models (the evaluation stage's baseline, read the
  same way, with its measured CPU seconds), and its learning curve;
* ``influence_function``, ``tracin``, ``trak`` (one row per ensemble size),
  ``representation_similarity``: from networks trained here by the run's learner
  (``protocol.Learner.train_networks``: learners with the ``torch_module``
  capability; ``rule all`` leaves the application out for the others, and asked
  for anyway they are skipped with a logged reason and a null row);
* ``input_similarity``: signed cosine similarity of the raw inputs (no model);
* ``external:<file stem>``: score matrices from other libraries (``external``).
* ``dattri_trak``, ``dattri_influence``: the reference implementations (dattri's own TRAK and influence
  functions) on the same networks as ``trak`` and ``influence_function``, with the optional extra (:mod:`.peers`).

Cost: ``models_trained`` and ``cpu_seconds`` (``time.process_time``, all threads
of the process that did the work), always measured, never estimated. For the methods
run here it is measured around the method's own computation, training included. The
datamodels' and empirical influence's models were trained by the ``train_chunk`` jobs:
each chunk records its own training CPU seconds in its Parquet metadata, aggregation
carries them into ``aggregate/alpha=<a>/train.integrity.json`` and a row at n models is
charged the CPU of the first n models (``store.training_cost``); the datamodels add their
fit's CPU seconds (``fit.json``'s ``cpu_seconds``; each learning-curve point's own
``fit_cpu_seconds``), empirical influence its difference of means. ``cost_source`` is
``measured``, or ``unknown`` where a measurement is missing (external score matrices).
:mod:`.frontier` gives, at each CPU budget, the best row and datamodels against TRAK.

The package: :mod:`.settings` (the settings' checks, the random-stream indices and
each method's model plan), :mod:`.methods` (the methods that train networks),
:mod:`.external` (other libraries' score matrices), :mod:`.table` (rows, their
scoring, costs and the tables), :mod:`.frontier` (the best method per CPU budget), :mod:`.figures`
and :mod:`.stage` (the rule's :func:`run`). The methods' computations are in
``applications.attribution_methods``. Every public name is importable from here.
"""

from .external import load_external
from .figures import LABELS, plot
from .frontier import segments, versus
from .methods import Context, influence_function, network_rows, representation_similarity, tracin, trak
from .settings import (NETWORK_METHODS, PROJECTION_INDEX, SEED_INDEX, SETTINGS_KEY, SUBSET_INDEX,
                       TRAIN_SETS, checkpoint_epochs, model_plan, warn_settings)
from .stage import run
from .table import (Row, datamodel_rows, empirical_influence_rows, evaluated_row, headline, score_row,
                    write_per_target, write_table)

__all__ = [
    "LABELS", "NETWORK_METHODS", "PROJECTION_INDEX", "SEED_INDEX", "SETTINGS_KEY", "SUBSET_INDEX",
    "TRAIN_SETS", "Context", "Row", "checkpoint_epochs", "datamodel_rows",
    "empirical_influence_rows", "evaluated_row", "headline", "influence_function", "load_external", "model_plan",
    "network_rows", "plot", "representation_similarity", "run", "score_row", "segments", "tracin", "trak", "versus",
    "warn_settings", "write_per_target", "write_table",
]
