"""Hyperparameter search for keras_percept (Optuna studies, every trial tracked in MLflow).

The entry point is `python tuning/search.py --trials 50` (README, "Hyperparameter search").
"""
