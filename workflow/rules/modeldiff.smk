# ModelDiff (Shah et al. 2022): compare the run's learning algorithm (A) with another (B,
# applications.modeldiff.other) by the directions in which their datamodels use the training data differently.
# modeldiff_datamodels trains B on the run's own training subsets (same model seeds) and fits B's datamodels;
# modeldiff runs the residual PCA both ways and checks direction 1 by retraining A and B.
# Algorithm B's recipe (validated with the rest of the config in common.smk; no application module is imported
# while the workflow is parsed).
from datamodels_pipeline.config import is_own_recipe, other_recipe

MODELDIFF_OTHER = other_recipe(config, allow_same=True)
# A run whose own learner is algorithm B (e.g. model.name: logistic with the default other) has nothing to compare:
# `rule all` leaves ModelDiff out; asking for its outputs explicitly fails in the rule with the reason.
MODELDIFF_APPLIES = not is_own_recipe(MODELDIFF_OTHER, config)


# Algorithm B's learner modules (and its custom entry point's file), beside A's.
MODELDIFF_LEARNER_FILES = [
    *LEARNER_FILES,
    *learner_files(MODELDIFF_OTHER["model"], key="applications.modeldiff.other.model"),
]
MODELDIFF = f"{APPLICATIONS}/modeldiff/alpha={{alpha}}"


rule modeldiff_models:
    input:
        models=f"{RUN}/aggregate/alpha={{alpha}}/train.parquet",
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
    output:
        f"{MODELDIFF}/other_models.parquet",
    log:
        f"{RUN}/logs/modeldiff_models/alpha={{alpha}}.log",
    conda:
        ENV
    # One thread, as train_chunk: the batched products are small, and on a loaded 2-core machine two torch threads
    # cost 3x the CPU time for B's models.
    threads: 1
    resources:
        mem_mb=8000,
    params:
        code=code("modeldiff_models", *MODELDIFF_LEARNER_FILES),
        settings=config["applications"]["modeldiff"],
        other=MODELDIFF_OTHER,
        seed=config["seed"],
    script:
        "../scripts/modeldiff_models.py"


rule modeldiff_datamodels:
    input:
        models=f"{RUN}/aggregate/alpha={{alpha}}/train.parquet",
        other_models=rules.modeldiff_models.output[0],
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
        own_datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        own_features=f"{RUN}/datamodels/alpha={{alpha}}/features.parquet",
        own_fit=f"{RUN}/datamodels/alpha={{alpha}}/fit.json",
    output:
        other_datamodels=f"{MODELDIFF}/other_datamodels.parquet",
        other_features=f"{MODELDIFF}/other_features.parquet",
        own_datamodels=f"{MODELDIFF}/own_datamodels.parquet",
        own_features=f"{MODELDIFF}/own_features.parquet",
        info=f"{MODELDIFF}/fit.json",
    log:
        f"{RUN}/logs/modeldiff_datamodels/alpha={{alpha}}.log",
    conda:
        ENV
    # One thread: up to 30x slower with two on a loaded 2-core machine for a smoke-size lasso fit.
    threads: 1
    resources:
        mem_mb=8000,
    params:
        code=code("modeldiff_datamodels"),
        fit=config["fit"],
        seed=config["seed"],
    script:
        "../scripts/modeldiff_datamodels.py"


rule modeldiff:
    input:
        own_datamodels=rules.modeldiff_datamodels.output.own_datamodels,
        other_datamodels=rules.modeldiff_datamodels.output.other_datamodels,
        info=rules.modeldiff_datamodels.output.info,
        data=rules.prepare_data.output.data,
    output:
        table=f"{MODELDIFF}/targets.parquet",
        loadings=f"{MODELDIFF}/directions.parquet",
        summary=f"{MODELDIFF}/summary.json",
        variance=report(
            f"{MODELDIFF}/explained_variance.png",
            caption="../report/modeldiff_variance.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "modeldiff: explained variance per direction"},
        ),
        examples=report(
            f"{MODELDIFF}/examples.png",
            caption="../report/modeldiff_examples.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "modeldiff: examples of direction 1"},
        ),
        check=report(
            f"{MODELDIFF}/check.png",
            caption="../report/modeldiff_check.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "modeldiff: check by retraining"},
        ),
    log:
        f"{RUN}/logs/modeldiff/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 1
    params:
        code=code("modeldiff", *MODELDIFF_LEARNER_FILES),
        settings=config["applications"]["modeldiff"],
        recipe=recipe(),
        other=MODELDIFF_OTHER,
        seed=config["seed"],
    script:
        "../scripts/modeldiff.py"
