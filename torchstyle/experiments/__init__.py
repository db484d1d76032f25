"""Experiments: run status, comparing runs, sweeps with Optuna, HParams and MLflow tracking.

Everything here reads run folders (``config.json``, ``status.json``, ``metrics.jsonl``) or
hooks into the engine through its callbacks; the engine itself knows nothing of it.
"""
