"""The MLflow-compatible tracking API: the stock ``mlflow`` client logs to Runstore unchanged.

Experiments are projects, MLflow runs are Runstore runs; every write goes through ``runs.services``
(and so through ``projects.permissions`` and ``projects.quotas``) like the native API's. See
docs/mlflow.md for the mapping and what is not supported.
"""
