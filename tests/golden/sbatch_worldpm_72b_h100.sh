#!/bin/bash

# Parameters
#SBATCH --account=my-account
#SBATCH --constraint=h100
#SBATCH --cpus-per-task=12
#SBATCH --error=out/worldpm/jobs/%j/%j_0_log.err
#SBATCH --gpus-per-node=8
#SBATCH --job-name=worldpm-qwen2.5-72b
#SBATCH --mem=960GB
#SBATCH --nodes=16
#SBATCH --ntasks-per-node=8
#SBATCH --open-mode=append
#SBATCH --output=out/worldpm/jobs/%j/%j_0_log.out
#SBATCH --partition=gpu
#SBATCH --qos=normal
#SBATCH --requeue
#SBATCH --signal=USR2@900
#SBATCH --time=2880
#SBATCH --wckey=submitit

# setup
source ~/worldpm_scaling/.venv/bin/activate
export NCCL_DEBUG=WARN

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output out/worldpm/jobs/%j/%j_%t_log.out --error out/worldpm/jobs/%j/%j_%t_log.err --kill-on-bad-exit=1 python -u -m submitit.core._submit out/worldpm/jobs/%j
