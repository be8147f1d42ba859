# Attribution baselines (influence functions, TracIn, TRAK, representation similarity, external score
# matrices) scored by LDS on the same held-out models as the datamodels, against the compute each used.


rule attribution:
    input:
        fit_info=f"{RUN}/datamodels/alpha={{alpha}}/fit.json",
        # The train chunks' own measured training CPU seconds, carried by aggregation: the datamodels' and
        # empirical influence's training cost.
        train_integrity=f"{RUN}/aggregate/alpha={{alpha}}/train.integrity.json",
        curve=f"{RUN}/evaluation/alpha={{alpha}}/learning_curve.json",
        # The datamodels' and empirical influence's rows are the evaluation's numbers, read, not recomputed.
        metrics=f"{RUN}/evaluation/alpha={{alpha}}/metrics.json",
        per_target=f"{RUN}/evaluation/alpha={{alpha}}/per_target.parquet",
        eval=f"{RUN}/aggregate/alpha={{alpha}}/eval.parquet",
        info=rules.prepare_data.output.info,
        data=rules.prepare_data.output.data,
        # Other libraries' [n_train x n_targets] score matrices: editing one reruns this rule.
        external=config["applications"]["attribution"]["external"],
    output:
        table=f"{APPLICATIONS}/attribution/alpha={{alpha}}/lds.parquet",
        per_target=f"{APPLICATIONS}/attribution/alpha={{alpha}}/per_target.parquet",
        summary=f"{APPLICATIONS}/attribution/alpha={{alpha}}/summary.json",
        figure=report(
            f"{APPLICATIONS}/attribution/alpha={{alpha}}/lds_vs_cost.png",
            caption="../report/attribution_lds_vs_cost.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "attribution: LDS vs cost"},
        ),
    log:
        f"{RUN}/logs/attribution/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 1
    params:
        code=code("attribution", *LEARNER_FILES),
        settings=config["applications"]["attribution"],
        recipe=recipe(),
        seed=config["seed"],
        # Installed reference libraries (applications.attribution.peers): installing the extra reruns the rule.
        peers=peer_versions(config["applications"]["attribution"]),
    script:
        "../scripts/attribution.py"
