# Train-set datamodels ([n_train, n_train]: each training example's effect on every training example's
# margin), from their own models; for the applications that need them (backdoor detection, unlearning).
# Variant "clean" uses the prepared data set; "backdoor" the training set with the planted backdoor.
TRAIN_SET_DATA = {"clean": rules.prepare_data.output.data, "backdoor": f"{APPLICATIONS}/backdoor/data.npz"}


wildcard_constraints:
    variant="|".join(TRAIN_SET_DATA),


rule train_set_models:
    input:
        data=lambda wildcards: TRAIN_SET_DATA[wildcards.variant],
    output:
        f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/models.parquet",
    log:
        f"{RUN}/logs/train_set_models/{{variant}}/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
    params:
        code=code("train_set_models", *LEARNER_FILES),
        settings=config["applications"]["train_set_datamodels"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/train_set_models.py"


rule train_set_datamodels:
    input:
        data=lambda wildcards: TRAIN_SET_DATA[wildcards.variant],
        models=rules.train_set_models.output[0],
    output:
        datamodels=f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/datamodels.parquet",
        features=f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/features.parquet",
        info=f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/fit.json",
    log:
        f"{RUN}/logs/train_set_datamodels/{{variant}}/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=8000,
    params:
        code=code("train_set_datamodels"),
        fit=config["fit"],
        seed=config["seed"],
    script:
        "../scripts/train_set_datamodels.py"
