rule evaluate:
    input:
        datamodels=rules.merge_datamodels.output.datamodels,
        statistics=rules.statistics.output[0],
        eval=f"{RUN}/aggregate/alpha={{alpha}}/eval.parquet",
        # The repeated held-out models (evaluate.seeds_per_mask), when there are any.
        repeat=repeat_aggregate(),
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
    output:
        metrics=f"{RUN}/evaluation/alpha={{alpha}}/metrics.json",
        per_target=f"{RUN}/evaluation/alpha={{alpha}}/per_target.parquet",
        scatter=report(
            f"{RUN}/evaluation/alpha={{alpha}}/predicted_vs_actual.png",
            caption="../report/predicted_vs_actual.rst",
            category="Evaluation",
            labels={"alpha": "{alpha}", "figure": "predicted vs actual"},
        ),
        histogram=report(
            f"{RUN}/evaluation/alpha={{alpha}}/lds_histogram.png",
            caption="../report/lds_histogram.rst",
            category="Evaluation",
            labels={"alpha": "{alpha}", "figure": "per-target LDS"},
        ),
    log:
        f"{RUN}/logs/evaluate/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=sizing.evaluate_mb(N_TRAIN, N_TARGETS, SPLIT_SIZES["eval"], REPEATED_MASKS * SEEDS_PER_MASK),
    params:
        code=code("evaluate"),
        repeated_masks=REPEATED_MASKS,
        seeds_per_mask=SEEDS_PER_MASK if REPEATED_MASKS else 1,
    script:
        "../scripts/evaluate.py"


rule learning_curve:
    input:
        datamodels_metrics=rules.evaluate.output.metrics,
        statistics=rules.statistics.output[0],
        # Read only for training-example targets under fit.train_targets: exact.
        train=f"{RUN}/aggregate/alpha={{alpha}}/train.parquet",
        eval=f"{RUN}/aggregate/alpha={{alpha}}/eval.parquet",
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
    output:
        curve=f"{RUN}/evaluation/alpha={{alpha}}/learning_curve.json",
        plot=report(
            f"{RUN}/evaluation/alpha={{alpha}}/learning_curve.png",
            caption="../report/learning_curve.rst",
            category="Evaluation",
            labels={"alpha": "{alpha}", "figure": "learning curve"},
        ),
    log:
        f"{RUN}/logs/learning_curve/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    resources:
        mem_mb=sizing.learning_curve_mb(
            N_TRAIN,
            N_TARGETS,
            SPLIT_SIZES["eval"],
            FIT_BLOCK_TARGETS,
            SPLIT_SIZES["train"],
            EXACT_TRAIN_TARGETS,
        ),
    params:
        code=code("learning_curve"),
        fractions=config["evaluate"]["learning_curve"],
        fit=config["fit"],
    script:
        "../scripts/learning_curve.py"
