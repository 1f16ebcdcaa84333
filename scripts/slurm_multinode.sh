#!/usr/bin/env bash
# Multi-node DDP with SLURM: 2 nodes x 8 GPUs, one task per GPU. Lightning reads the SLURM variables
# (SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID, node list) and sets up the process group itself; every
# process writes into one run folder named after the job (runs/<config>/job-<SLURM_JOB_ID>).
#
#   sbatch scripts/slurm_multinode.sh configs/pretrain/imagenet/mae_vitb.yaml --data.init_args.root /data/imagenet
#
#SBATCH --job-name=vitlab
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail
CONFIG=${1:?usage: sbatch scripts/slurm_multinode.sh CONFIG [overrides...]}
shift
srun vitlab fit --config "$CONFIG" \
  --trainer.accelerator gpu --trainer.devices "${SLURM_NTASKS_PER_NODE}" --trainer.num_nodes "${SLURM_NNODES}" \
  --trainer.strategy ddp --trainer.precision bf16-mixed "$@"
# Resume after a pre-emption: resubmit with `--ckpt_path runs/<config>/job-<old id>`.
