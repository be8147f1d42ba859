# Unlearning by datamodel matching (Georgiev et al. 2025): fine-tune the trained models towards the datamodels'
# predicted outputs of models retrained without a forget set, against real retraining and plain fine-tuning.
# Needs the train-set datamodels of the clean training set (the forget set's effect on training examples).
# It fine-tunes the trained network: learners with the torch_module capability only (protocol.APPLICATION_NEEDS);
# `rule all` leaves unlearning out for the others.


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
