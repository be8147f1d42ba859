# Applications of the datamodels (paper section 4); the first two verify their predictions by
# retraining models on the full training set minus the chosen examples, with the pipeline's recipe.
APPLICATIONS = f"{RUN}/applications"
APPLICATION_RULES = [
    "counterfactuals",
    "brittleness",
    "similar_examples",
    "leakage",
    "embeddings",
    "data_selection",
    "backdoor",
    "modeldiff",
    "unlearning",
    "attribution",
]


rule counterfactuals:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/counterfactuals/alpha={{alpha}}/counterfactuals.parquet",
        summary=f"{APPLICATIONS}/counterfactuals/alpha={{alpha}}/summary.json",
        scatter=report(
            f"{APPLICATIONS}/counterfactuals/alpha={{alpha}}/predicted_vs_actual_change.png",
            caption="../report/counterfactual_scatter.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "counterfactuals: predicted vs actual change"},
        ),
        curve=report(
            f"{APPLICATIONS}/counterfactuals/alpha={{alpha}}/margin_drop_vs_k.png",
            caption="../report/counterfactual_curve.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "counterfactuals: margin drop vs k"},
        ),
    log:
        f"{RUN}/logs/counterfactuals/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    params:
        code=code("counterfactuals", *LEARNER_FILES),
        settings=config["applications"]["counterfactuals"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/counterfactuals.py"


rule brittleness:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/brittleness/alpha={{alpha}}/support.parquet",
        summary=f"{APPLICATIONS}/brittleness/alpha={{alpha}}/summary.json",
        curve=report(
            f"{APPLICATIONS}/brittleness/alpha={{alpha}}/support_curve.png",
            caption="../report/support_curve.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "data support"},
        ),
    log:
        f"{RUN}/logs/brittleness/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    params:
        code=code("brittleness", *LEARNER_FILES),
        settings=config["applications"]["brittleness"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/brittleness.py"


rule similar_examples:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/similar_examples/alpha={{alpha}}/similar_examples.parquet",
        summary=f"{APPLICATIONS}/similar_examples/alpha={{alpha}}/summary.json",
        grid=report(
            f"{APPLICATIONS}/similar_examples/alpha={{alpha}}/similar_examples.png",
            caption="../report/similar_examples.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "similar examples"},
        ),
    log:
        f"{RUN}/logs/similar_examples/alpha={{alpha}}.log",
    conda:
        ENV
    params:
        code=code("similar_examples"),
        settings=config["applications"]["similar_examples"],
        seed=config["seed"],
    script:
        "../scripts/similar_examples.py"


rule leakage:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/leakage/alpha={{alpha}}/top_pairs.parquet",
        summary=f"{APPLICATIONS}/leakage/alpha={{alpha}}/summary.json",
        figure=report(
            f"{APPLICATIONS}/leakage/alpha={{alpha}}/leakage.png",
            caption="../report/leakage.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "train-test leakage"},
        ),
    log:
        f"{RUN}/logs/leakage/alpha={{alpha}}.log",
    conda:
        ENV
    params:
        code=code("leakage"),
        settings=config["applications"]["leakage"],
    script:
        "../scripts/leakage.py"


rule embeddings:
    input:
        datamodels=f"{RUN}/datamodels/alpha={{alpha}}/datamodels.parquet",
        data=rules.prepare_data.output.data,
    output:
        table=f"{APPLICATIONS}/embeddings/alpha={{alpha}}/embeddings.parquet",
        summary=f"{APPLICATIONS}/embeddings/alpha={{alpha}}/summary.json",
        components=report(
            f"{APPLICATIONS}/embeddings/alpha={{alpha}}/components.png",
            caption="../report/embeddings_components.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "embeddings: principal components"},
        ),
        clusters=report(
            f"{APPLICATIONS}/embeddings/alpha={{alpha}}/clusters.png",
            caption="../report/embeddings_clusters.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "embeddings: clusters"},
        ),
        intervention=report(
            f"{APPLICATIONS}/embeddings/alpha={{alpha}}/intervention.png",
            caption="../report/embeddings_intervention.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "embeddings: intervention by retraining"},
        ),
    log:
        f"{RUN}/logs/embeddings/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    params:
        code=code("embeddings", *LEARNER_FILES),
        settings=config["applications"]["embeddings"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/embeddings.py"
