"""Per-model meter register maps as data (one YAML file per model and firmware range).

A new meter model is a YAML file here and a simulator run, never a new code path.
"""
