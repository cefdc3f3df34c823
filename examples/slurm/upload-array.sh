#!/bin/bash
# Upload one huge file from many nodes with a Slurm job array: each array task uploads one
# shard (SLURM_ARRAY_TASK_ID picks it), and a dependent job completes the upload.
#
#   /opt/persevere/bin/persevere upload start /lustre/data/ckpt.bin s3://bucket/ckpt.bin \
#       --state-file /lustre/state/ckpt.persevere --shards 16      # creates it, sends nothing
#   jobid=$(sbatch --parsable --array=0-15 examples/slurm/upload-array.sh)
#   sbatch --dependency=afterany:$jobid --wrap \
#       "/opt/persevere/bin/persevere upload resume --state-file /lustre/state/ckpt.persevere \
#        --no-progress"
#
# persevere installed on every node as the README says (/opt/persevere), or once on the shared
# filesystem: then change /opt/persevere here to that path.
#
# A failed or preempted task can be requeued (or resubmitted alone with --array=N: shard N of
# the count the state file records): a shard resumes from its own journal, and the completing
# job sends whatever a shard left.
#SBATCH --job-name=persevere-shard
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --time=04:00:00
#SBATCH --requeue
set -euo pipefail
exec /opt/persevere/bin/persevere --log-format json upload shard \
    --state-file /lustre/state/ckpt.persevere --no-progress
