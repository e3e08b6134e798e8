"""The checks that models trained in the notebook image serve identically in the Ray image:
verify-compat (compat.py), verify-stored over a data lake (stored.py) and over the MLflow registry
(mlflowstore.py); policy.py says what a verification must cover to count."""
