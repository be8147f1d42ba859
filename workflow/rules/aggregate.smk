rule aggregate:
    input:
        chunks=chunk_files("models"),
        info=rules.prepare_data.output.info,
    output:
        models=f"{RUN}/aggregate/alpha={{alpha}}/{{split}}.parquet",
        integrity=f"{RUN}/aggregate/alpha={{alpha}}/{{split}}.integrity.json",
    log:
        f"{RUN}/logs/aggregate/alpha={{alpha}}/{{split}}.log",
    conda:
        ENV
    resources:
        mem_mb=sizing.aggregate_mb(N_TRAIN, N_TARGETS, CHUNK, max(SPLIT_SIZES.values())),
    params:
        code=code("aggregate"),
        n_models=model_count,
    script:
        "../scripts/aggregate.py"
