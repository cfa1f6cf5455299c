"""Run as a script: load `.keras` files in a fresh process and write their distances.

usage: KERAS_BACKEND=<b> python fresh_process_load.py inputs.npz out.npz model1.keras [model2.keras ...]
Only `import keras_percept` and `keras.saving.load_model(path)` (safe_mode on,
the default) are used, exactly as a user would.
"""

import sys

import keras
import numpy as np

import keras_percept  # noqa: F401  (registers the package's layers and models)

inputs_path, out_path, *model_paths = sys.argv[1:]
data = np.load(inputs_path)
results = {"backend": np.array(keras.backend.backend())}
for k, path in enumerate(model_paths):
    model = keras.saving.load_model(path)
    results[f"model_{k}"] = np.asarray(model.predict_on_batch((data["x0"], data["x1"])))
np.savez(out_path, **results)
