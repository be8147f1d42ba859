# Backdoor attack and detection (Khaddaj et al., "Rethinking Backdoor Attacks", ICML 2023): plant a trigger in part
# of the training set, search the train-set datamodels of the backdoored set (rule train_set_datamodels, variant
# backdoor) for the strongest group of mutually supporting examples, and retrain without the flagged examples.
BACKDOOR_PLANT_KEYS = ("n_poison", "target_class", "trigger_size")


rule plant_backdoor:
    input:
        data=rules.prepare_data.output.data,
    output:
        data=f"{APPLICATIONS}/backdoor/data.npz",
        info=f"{APPLICATIONS}/backdoor/data.json",
    log:
        f"{RUN}/logs/backdoor/plant.log",
    conda:
        ENV
    params:
        code=code("backdoor_plant"),
        # only the planting keys: changing the search or retraining settings does not retrain the datamodels
        settings={key: config["applications"]["backdoor"][key] for key in BACKDOOR_PLANT_KEYS},
        seed=config["seed"],
    script:
        "../scripts/backdoor_plant.py"


rule backdoor:
    input:
        datamodels=f"{APPLICATIONS}/train_set_datamodels/backdoor/alpha={{alpha}}/datamodels.parquet",
        data=rules.plant_backdoor.output.data,
        info=rules.plant_backdoor.output.info,
    output:
        table=f"{APPLICATIONS}/backdoor/alpha={{alpha}}/scores.parquet",
        summary=f"{APPLICATIONS}/backdoor/alpha={{alpha}}/summary.json",
        detection=report(
            f"{APPLICATIONS}/backdoor/alpha={{alpha}}/detection.png",
            caption="../report/backdoor_detection.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "backdoor: detection"},
        ),
        attack=report(
            f"{APPLICATIONS}/backdoor/alpha={{alpha}}/attack_success.png",
            caption="../report/backdoor_attack.rst",
            category="Applications",
            labels={"alpha": "{alpha}", "figure": "backdoor: attack success by retraining"},
        ),
    log:
        f"{RUN}/logs/backdoor/alpha={{alpha}}.log",
    conda:
        ENV
    threads: 2
    params:
        code=code("backdoor", *LEARNER_FILES),
        settings=config["applications"]["backdoor"],
        recipe=recipe(),
        seed=config["seed"],
    script:
        "../scripts/backdoor.py"
