rule train_chunk:
    input:
        data=rules.prepare_data.output.data,
        info=rules.prepare_data.output.info,
        masks=rules.masks.output[0],
    output:
        f"{RUN}/models/alpha={{alpha}}/{{split}}/chunk-{{chunk}}.parquet",
    log:
        f"{RUN}/logs/train_chunk/alpha={{alpha}}/{{split}}/chunk-{{chunk}}.log",
    conda:
        ENV
    threads: 1
    resources:
        runtime=60,
        mem_mb=4000,
        # One GPU per chunk job when the config asks for CUDA (sbatch --gpus=1 on SLURM; 0 requests none).
        # auto requests none: the job uses a GPU only where it lands on one (a GPU node, or gpu: 1 in the profile).
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    params:
        code=code("train_chunk", *LEARNER_FILES),
        recipe=recipe(),
        seed=config["seed"],
        repeated_masks=repeated_masks,
    script:
        "../scripts/train_chunk.py"
