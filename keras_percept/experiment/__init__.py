"""The task-independent experiment core: configuration (`config`) and command-line argument types (`cli_args`).

The 2AFC trainer (`keras_percept.training`), the image-quality trainer
(`keras_percept.iqa`) and `tuning/` take their config helpers and argument
types from here (the IQA config still shares the 2AFC optimizer block).
"""
