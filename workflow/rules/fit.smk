rule fit_datamodels:
    input:
        models=f"{RUN}/aggregate/alpha={{alpha}}/train.parquet",
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
        code=modules("fit", "lasso", "store", "masks", "seeding", "devices", "data"),
    output:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        features=f"{RUN}/datamodels/alpha={{alpha}}/features.parquet",
        info=f"{RUN}/datamodels/alpha={{alpha}}/fit.json",
    params:
        fit=config["fit"],
        seed=config["seed"],
    threads: 4
    resources:
        mem_mb=16000,
    log:
        f"{RUN}/logs/fit_datamodels/alpha={{alpha}}.log",
    conda:
        ENV
    script:
        "../scripts/fit_datamodels.py"
