#!/bin/bash
# Upload a whole directory from many nodes with a Slurm job array: each array task uploads the
# files of one shard (chosen by their path, so every task agrees), each with a journal of its
# own; a dependent job then runs the same command without --shard: it takes the shards'
# journals in and sends whatever a shard left (a task that failed for good, files added since).
#
#   jobid=$(sbatch --parsable --array=0-15 examples/slurm/tree-array.sh)
#   sbatch --dependency=afterany:$jobid --wrap \
#       "/opt/persevere/bin/persevere cp /lustre/data/ckpt s3://bucket/ckpt/ --no-progress"
#
# A failed or preempted task can be requeued, or resubmitted alone with the array's size in
# SHARDS (sbatch --array=N --export=ALL,SHARDS=16: a task alone is an array of one): its shard
# resumes from its journal, files done are not sent again. The tree's journal is
# ckpt.persevere beside the directory (on the shared filesystem), the shards'
# ckpt.persevere.shard-I-of-N. PERSEVERE, TREE, DEST and SHARDS may be set in the environment
# (sbatch --export) instead.
#SBATCH --job-name=persevere-tree
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --requeue
set -euo pipefail
exec "${PERSEVERE:-/opt/persevere/bin/persevere}" --log-format json cp \
    "${TREE:-/lustre/data/ckpt}" "${DEST:-s3://bucket/ckpt/}" --no-progress \
    --shard "$SLURM_ARRAY_TASK_ID/${SHARDS:-$SLURM_ARRAY_TASK_COUNT}"
