"""Jobs on SLURM or this machine through submitit: submission, sweeps (arrays, manifest, status,
collect, resubmit), the Checkpointable training entry point and the experiment runner."""
