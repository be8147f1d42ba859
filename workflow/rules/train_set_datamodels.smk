# Train-set datamodels ([n_train, n_train]: each training example's effect on every training example's
# margin), from their own models; for the applications that need them (backdoor detection, unlearning).
# Variant "clean" uses the prepared data set; "backdoor" the training set with the planted backdoor.
TRAIN_SET_DATA = {"clean": rules.prepare_data.output.data, "backdoor": f"{APPLICATIONS}/backdoor/data.npz"}


wildcard_constraints:
    variant="|".join(TRAIN_SET_DATA),


rule train_set_datamodels:
    input:
        data=lambda wildcards: TRAIN_SET_DATA[wildcards.variant],
        code=modules("applications/train_set_datamodels", "applications/__init__", "fit", "lasso", "masks",
                     "data", "devices", "seeding", *TRAINER_MODULES),
    output:
        datamodels=f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/datamodels.parquet",
        features=f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/features.parquet",
        info=f"{APPLICATIONS}/train_set_datamodels/{{variant}}/alpha={{alpha}}/fit.json",
    params:
        settings=config["applications"]["train_set_datamodels"],
        recipe=recipe(),
        fit=config["fit"],
        seed=config["seed"],
    threads: 2
    resources:
        mem_mb=8000,
    log:
        f"{RUN}/logs/train_set_datamodels/{{variant}}/alpha={{alpha}}.log",
    conda:
        ENV
    script:
        "../scripts/train_set_datamodels.py"
