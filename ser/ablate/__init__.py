"""Ablation grids: expand a YAML grid into fit jobs, run them idempotently (locally on CPUs/GPUs
or on a Slurm cluster through submitit), and report mean ± std tables and plots.

Light by design: expanding, scheduling and reporting never import torch; only a job that runs a
fit does (``ser.ablate.job``, in its own process). May import ``ser.fusion`` (configs, metrics,
plots; the fit itself inside jobs), ``ser.manifests`` and ``ser.cache``, never ``ser.extract``.
"""
