"""Integrations with training frameworks, each a thin adapter over the public client API.

One module per framework, imported on its own (the framework is an optional dependency, an extra of the
same name: ``pip install 'runstore[lightning]'``):

- ``runstore.integrations.lightning``: ``RunstoreLogger``, a PyTorch Lightning logger
- ``runstore.integrations.keras``: ``RunstoreCallback``, a Keras 3 callback
- ``runstore.integrations.transformers``: ``RunstoreCallback``, a Hugging Face ``TrainerCallback``
- ``runstore.integrations.xgboost``: ``RunstoreCallback``, an XGBoost training callback
- ``runstore.integrations.lightgbm``: ``RunstoreCallback``, a LightGBM callback
- ``runstore.integrations.optuna``: ``RunstoreCallback``, an Optuna study callback (one run per trial)
- ``runstore.integrations.sklearn``: ``log_estimator``, a scikit-learn helper
- ``runstore.integrations.torch``: ``log_model_summary`` and ``ModelWatcher`` for plain PyTorch loops
"""
