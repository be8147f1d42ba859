"""ModelDiff: where two learning algorithms use the training data differently, checked by retraining.

Shah, Park, Ilyas, Madry, "ModelDiff: A Framework for Comparing Learning
Algorithms" (2022). Algorithm A is the run's own recipe (``model``, ``train``);
algorithm B is that recipe with the overrides of ``applications.modeldiff.other``
(default: multinomial logistic regression instead of the MLP). Both get
datamodels on the same targets from models trained on the *same* subsets with
the same model seeds (``rule modeldiff_datamodels``), so the two weight matrices
differ only through the learning algorithm (and estimation noise).

``rule modeldiff`` compares them. Each target's weight vector is scaled to unit
L2 norm (over training examples), each algorithm's matrix is centred over the
targets, and A's row of every target is projected off B's row of the same
target (``a - <a, b> / ||b||^2 b``): what remains is how A uses the training
data *beyond* what B's datamodel of that target already explains. PCA of these
residuals gives training-example directions v; a direction distinguishes A from
B when it explains a large share of the variance of A's normalised matrix and a
small share of B's. The same is done the other way (B minus A).

Check by retraining: for the first direction each way, the ``n_remove``
training examples at the end of v that the datamodels say matter to the first
algorithm more than to the second are removed from the full training set, and
``n_seeds`` models of A *and* of B are retrained without them. If the direction
is real, the first algorithm's margins on the ``n_group`` targets with the
largest residual projections drop more (relative to random targets) than the
second algorithm's do.

The package: :mod:`.recipe` (the settings key and the names of recipes),
:mod:`.datamodels` (B's datamodels, ``rule modeldiff_datamodels``; B's models are
trained by ``applications.modeldiff_training``), :mod:`.directions` (the residual
PCA and the orientation of its directions, NumPy only), :mod:`.check` (statistics
of the check by retraining), :mod:`.figures` and :mod:`.stage` (``rule modeldiff``'s
:func:`run`). Every public name is importable from here.

Algorithm B's recipe is merged, and the settings are checked, by ``config.validate``
when Snakemake parses the workflow (``config.other_recipe``); this package is only
imported by the jobs.
"""

from .check import algorithm_check, difference, seed_stats
from .datamodels import run_datamodels
from .directions import (centre, end_of, explained_variance, normalise, orient, predicted_gap, project_off,
                         residual_directions)
from .figures import check_figure, examples_figure, variance_figure
from .recipe import KEY, describe
from .stage import RANDOM_INDEX, WAYS, run

__all__ = [
    "KEY", "RANDOM_INDEX", "WAYS", "algorithm_check", "centre", "check_figure", "describe", "difference",
    "end_of", "examples_figure", "explained_variance", "normalise", "orient", "predicted_gap", "project_off", "residual_directions", "run", "run_datamodels",
    "seed_stats", "variance_figure",
]
