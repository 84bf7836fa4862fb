#!/bin/bash

# Parameters
#SBATCH --array=0-23%2
#SBATCH --cpus-per-task=1
#SBATCH --error=out/demo/jobs/%A_%a/%A_%a_0_log.err
#SBATCH --job-name=demo-tiny-xxxs
#SBATCH --mem=4GB
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=out/demo/jobs/%A_%a/%A_%a_0_log.out
#SBATCH --partition=debug
#SBATCH --requeue
#SBATCH --signal=USR2@30
#SBATCH --time=14
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output out/demo/jobs/%A_%a/%A_%a_%t_log.out --error out/demo/jobs/%A_%a/%A_%a_%t_log.err --kill-on-bad-exit=1 python -u -m submitit.core._submit out/demo/jobs/%j
