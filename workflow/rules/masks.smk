rule masks:
    input:
        info=rules.prepare_data.output.info,
        code=modules("masks", "seeding", "store"),
    output:
        f"{RUN}/masks/alpha={{alpha}}/{{split}}/chunk-{{chunk}}.parquet",
    params:
        models=chunk_models,
        seed=config["seed"],
    log:
        f"{RUN}/logs/masks/alpha={{alpha}}/{{split}}/chunk-{{chunk}}.log",
    conda:
        ENV
    script:
        "../scripts/masks.py"
