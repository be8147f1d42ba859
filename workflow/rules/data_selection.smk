# Data selection (DsDm): the training subset of each size that maximises the datamodel-predicted target margin,
# verified by training models on it, against random selections of the same size and the full training set.


rule data_selection:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/data_selection/alpha={{alpha}}/selections.parquet",
        summary=f"{APPLICATIONS}/data_selection/alpha={{alpha}}/summary.json",
        curve=report(
            f"{APPLICATIONS}/data_selection/alpha={{alpha}}/selection_curve.png",
            caption="../report/data_selection_curve.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "data selection: target performance vs selection size"},
        ),
    log:
        f"{RUN}/logs/data_selection/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    params:
        code=code("data_selection", *LEARNER_FILES),
        settings=config["applications"]["data_selection"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/data_selection.py"
