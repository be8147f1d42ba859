# Unlearning by datamodel matching (Georgiev et al. 2025): fine-tune the trained models towards the datamodels'
# predicted outputs of models retrained without a forget set, against real retraining and plain fine-tuning.
# Needs the train-set datamodels of the clean training set (the forget set's effect on training examples).
# Learners whose trained network the unlearning application can fine-tune (unlearning.MODULE_LEARNERS, spelled
# out here so that parsing the workflow does not import torch); `rule all` leaves unlearning out for the others.
UNLEARNING_LEARNERS = ["mlp", "logistic"]


rule unlearning:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        train_set_datamodels=f"{APPLICATIONS}/train_set_datamodels/clean/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/unlearning/alpha={{alpha}}/points.parquet",
        summary=f"{APPLICATIONS}/unlearning/alpha={{alpha}}/summary.json",
        metrics=report(
            f"{APPLICATIONS}/unlearning/alpha={{alpha}}/metrics.png",
            caption="../report/unlearning_metrics.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "unlearning: distance to retraining"},
        ),
        scatter=report(
            f"{APPLICATIONS}/unlearning/alpha={{alpha}}/margins_vs_oracle.png",
            caption="../report/unlearning_scatter.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "unlearning: margins vs retraining"},
        ),
    log:
        f"{RUN}/logs/unlearning/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 1
    params:
        code=code("unlearning", *LEARNER_FILES),
        settings=config["applications"]["unlearning"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/unlearning.py"
