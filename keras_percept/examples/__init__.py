"""Runnable worked examples (`python -m keras_percept.examples.<name>`)."""
