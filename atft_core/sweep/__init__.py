"""Sweeps: Optuna studies over RunConfig fields whose trials are ordinary runs.

Read side (imports nothing that launches or stops)::

    space      the search space: parameters over RunConfig fields, checked against RunConfig
    spec       StudySpec: base config, space, objective, size, pruner, sampler, heartbeats
    storage    where studies live (SQLite file in the runs folder, or PostgreSQL); password-free text
    objective  a trial's value from its run's metrics (best epoch of a validation metric)
    trials     a study's trials, progress, best, importances; live workers

Write side::

    study      create a study (all its trials waiting), start a worker, stop / resume
    worker     the worker: takes trials, queues their runs (atft_core.runs.queue), reports, prunes
    confirm    re-run the best settings with seeds against the best baseline

`python -m atft_core.sweep ...` is the command line (`atft_core.sweep.cli`).
"""
