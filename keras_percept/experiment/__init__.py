"""The task-independent experiment core: configuration (`config`) and command-line argument types (`cli_args`).

The 2AFC trainer (`keras_percept.training`), the image-quality trainer
(`keras_percept.iqa`) and `tuning/` build on it instead of on each other.
"""
