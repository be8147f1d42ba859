rule prepare_data:
    input:
        source=data_file,
    output:
        data=f"{RUN}/data/dataset.npz",
        info=f"{RUN}/data/dataset.json",
    log:
        f"{RUN}/logs/prepare_data.log",
    conda:
        ENV
    params:
        code=code("prepare_data"),
        # data.root and data.download say where the files are, not what they hold: changing them reruns nothing.
        data={key: value for key, value in config["data"].items() if key not in ("root", "download")},
        seed=config["seed"],
    script:
        "../scripts/prepare_data.py"
