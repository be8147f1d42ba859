rule masks:
    input:
        info=rules.prepare_data.output.info,
    output:
        f"{RUN}/masks/alpha={{alpha}}/{{split}}/chunk-{{chunk}}.parquet",
    log:
        f"{RUN}/logs/masks/alpha={{alpha}}/{{split}}/chunk-{{chunk}}.log",
    conda:
        ENV
    params:
        code=code("masks"),
        models=chunk_models,
        repeated_masks=repeated_masks,
        seed=config["seed"],
    script:
        "../scripts/masks.py"
