# The datamodel fit at any scale: one streaming pass sums the training models (statistics), then
# fit.targets_per_job targets per job are fit from those sums (one job each: its own SLURM job, its own GPU
# with fit.device: cuda), and a merge writes the same datamodels.parquet as a single fit.


rule statistics:
    input:
        models=f"{RUN}/aggregate/alpha={{alpha}}/train.parquet",
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
    output:
        directory(f"{RUN}/statistics/alpha={{alpha}}"),
    log:
        f"{RUN}/logs/statistics/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=sizing.statistics_mb(N_TRAIN, N_TARGETS),
        gpu=1 if config["fit"]["device"] == "cuda" else 0,
    params:
        code=code("statistics"),
        # Only what the sums depend on: a lambda-path setting refits without summing the models again.
        val_fraction=config["fit"]["val_fraction"],
        device=config["fit"]["device"],
        fractions=config["evaluate"]["learning_curve"],
        seed=config["seed"],
    script:
        "../scripts/statistics.py"


rule fit_datamodels:
    input:
        statistics=rules.statistics.output[0],
        # Read only by blocks with training-example targets under fit.train_targets: exact.
        models=f"{RUN}/aggregate/alpha={{alpha}}/train.parquet",
        info=rules.prepare_data.output.info,
    output:
        f"{RUN}/datamodels/alpha={{alpha}}/blocks/block-{{block}}.parquet",
    log:
        f"{RUN}/logs/fit_datamodels/alpha={{alpha}}/block-{{block}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=FIT_BLOCK_MB,
        gpu=1 if config["fit"]["device"] == "cuda" else 0,
    params:
        code=code("fit_datamodels"),
        fit=config["fit"],
    script:
        "../scripts/fit_datamodels.py"


rule merge_datamodels:
    input:
        blocks=expand(
            f"{RUN}/datamodels/alpha={{{{alpha}}}}/blocks/block-{{block}}.parquet",
            block=range(N_FIT_BLOCKS),
        ),
        statistics=rules.statistics.output[0],
    output:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        features=f"{RUN}/datamodels/alpha={{alpha}}/features.parquet",
        info=f"{RUN}/datamodels/alpha={{alpha}}/fit.json",
    log:
        f"{RUN}/logs/merge_datamodels/alpha={{alpha}}.log",
    conda:
        ENV
    resources:
        mem_mb=sizing.merge_mb(N_TRAIN, FIT_BLOCK_TARGETS),
    params:
        code=code("merge_datamodels"),
        fit=config["fit"],
    script:
        "../scripts/merge_datamodels.py"
