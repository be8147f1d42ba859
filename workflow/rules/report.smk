rule summary:
    input:
        metrics=expand(f"{RUN}/evaluation/alpha={{alpha}}/metrics.json", alpha=ALPHAS),
        curves=expand(f"{RUN}/evaluation/alpha={{alpha}}/learning_curve.json", alpha=ALPHAS),
        fits=expand(f"{RUN}/datamodels/alpha={{alpha}}/fit.json", alpha=ALPHAS),
        integrity=expand(f"{RUN}/aggregate/alpha={{alpha}}/{{split}}.integrity.json", alpha=ALPHAS, split=SPLITS),
        info=rules.prepare_data.output.info,
    output:
        markdown=f"{RUN}/summary.md",
        table=report(
            f"{RUN}/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
        ),
    log:
        f"{RUN}/logs/summary.log",
    conda:
        ENV
    params:
        code=code("summary"),
        alphas=ALPHAS,
        run=config["run"],
    script:
        "../scripts/summary.py"
