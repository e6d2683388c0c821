"""search: everything that knows about Ray Tune and Optuna (space, trainable, tuner, results, jobs, CLI)."""
