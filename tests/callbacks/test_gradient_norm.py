"""`GradientNorm` / `global_gradient_norm` against a hand-computed gradient, on every backend."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_percept.callbacks import GradientNorm, global_gradient_norm


def _linear_model(dropout: float = 0.0, l2: float = 0.1) -> keras.Model:
    """x (B, 4) -> Dropout -> Dense(1, no bias, L2(l2) on the kernel); MSE; its kernel set to known values."""
    inputs = keras.Input((4,))
    hidden = keras.layers.Dropout(dropout, seed=3)(inputs) if dropout else inputs
    outputs = keras.layers.Dense(1, use_bias=False, kernel_regularizer=keras.regularizers.L2(l2))(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    model.layers[-1].kernel.assign(np.array([[0.5], [-1.0], [0.25], [2.0]], np.float32))
    return model


def _data(n: int = 12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, rng.normal(size=(n, 1)).astype(np.float32)


def test_the_norm_is_the_hand_computed_gradient_of_the_loss_plus_its_regularisation():
    model = _linear_model()
    x, y = _data()
    w = keras.ops.convert_to_numpy(model.layers[-1].kernel).astype(np.float64)
    # loss = mean((x w - y)^2) + 0.1 * sum(w^2):  grad = 2/n x^T (x w - y) + 0.2 w
    grad = 2 / len(x) * x.T.astype(np.float64) @ (x @ w - y) + 0.2 * w
    assert global_gradient_norm(model, x, y) == pytest.approx(float(np.linalg.norm(grad)), rel=1e-5)


def test_inference_mode_no_dropout_and_no_random_draws():
    x, y = _data()
    with_dropout, without = _linear_model(dropout=0.5), _linear_model()
    norms = [global_gradient_norm(with_dropout, x, y) for _ in range(2)]
    assert norms[0] == norms[1] == pytest.approx(global_gradient_norm(without, x, y), rel=1e-6)


def test_the_callback_logs_each_epoch_and_leaves_training_unchanged():
    x, y = _data(24)

    def fit(callbacks):
        keras.utils.set_random_seed(7)
        model = _linear_model(dropout=0.5)
        history = model.fit(x, y, batch_size=6, epochs=3, shuffle=False, callbacks=callbacks, verbose=0)
        return model, history.history

    plain_model, plain = fit([])
    model, logged = fit([GradientNorm((x[:6], y[:6]))])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[-1].kernel),
                                  keras.ops.convert_to_numpy(plain_model.layers[-1].kernel))
    np.testing.assert_array_equal(logged["loss"], plain["loss"])
    assert len(logged["grad_norm"]) == 3 and len(set(logged["grad_norm"])) == 3
    assert logged["grad_norm"][-1] == pytest.approx(global_gradient_norm(model, x[:6], y[:6]), rel=1e-6)


def test_a_dataset_probe_gives_its_first_batch_and_a_bad_probe_is_named():
    import tensorflow as tf

    x, y = _data(24)
    model = _linear_model()
    callback = GradientNorm(tf.data.Dataset.from_tensor_slices((x, y)).batch(5))
    model.fit(x, y, batch_size=6, epochs=1, callbacks=[callback], verbose=0)
    np.testing.assert_array_equal(callback._batch[0], x[:5])
    with pytest.raises(ValueError, match=r"`probe` must give `\(x, y\)` batches. Received a batch of 3 parts"):
        model.fit(x, y, epochs=1, callbacks=[GradientNorm((x, y, y))], verbose=0)
