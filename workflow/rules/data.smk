rule prepare_data:
    input:
        code=modules("data", "seeding", "config"),
    output:
        data=f"{RUN}/data/dataset.npz",
        info=f"{RUN}/data/dataset.json",
    params:
        data=config["data"],
        seed=config["seed"],
    log:
        f"{RUN}/logs/prepare_data.log",
    conda:
        ENV
    script:
        "../scripts/prepare_data.py"
