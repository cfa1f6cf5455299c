"""Argument checks and y_true / y_pred layouts shared by the losses."""

from __future__ import annotations

from keras import ops

#: Columns of a 2AFC model's `y_pred`.
TWOAFC_COLUMNS = ("d0", "d1", "logit")


def check_range(name: str, value, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> float:
    """`float(value)` if it lies in the interval; otherwise a `ValueError` naming `name`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    ok = number is not None and number == number
    if ok and low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"Argument `{name}` must be a number in {interval}. Received: {name}={value!r}")
    return number


def split_twoafc(y_true, y_pred):
    """`(h, d0, d1, logit)`, each `(N,)`, from `y_true` `(N,)`/`(N, 1)` and `y_pred` `(N, 3)`."""
    y_pred = ops.convert_to_tensor(y_pred)
    shape = tuple(y_pred.shape)
    if len(shape) != 2 or shape[-1] != len(TWOAFC_COLUMNS):
        raise ValueError(
            "Argument `y_pred` must have shape (N, 3) = [d0, d1, logit] (the output of a "
            f"TwoAFCModel). Received: y_pred.shape={shape}"
        )
    h = flat_column(y_true, "y_true", dtype=y_pred.dtype)
    return h, y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]


def flat_column(x, name: str, dtype=None):
    """`x` of shape `(N,)` or `(N, 1)` as `(N,)`; other shapes raise a `ValueError` naming `name`."""
    x = ops.convert_to_tensor(x)
    shape = tuple(x.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1)):
        raise ValueError(f"Argument `{name}` must have shape (N,) or (N, 1). Received: {name}.shape={shape}")
    x = ops.reshape(x, (-1,))
    return x if dtype is None else ops.cast(x, dtype)


def mean_and_spread(x, name: str, sigma: float, dtype=None):
    """`(mean, std)` columns, each `(N,)`, from `(N,)`/`(N, 1)` (std = `sigma`) or `(N, 2)` = [mean, std]."""
    x = ops.convert_to_tensor(x)
    shape = tuple(x.shape)
    if len(shape) == 2 and shape[-1] == 2:
        x = x if dtype is None else ops.cast(x, dtype)
        return x[:, 0], x[:, 1]
    if len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
        mean = flat_column(x, name, dtype)
        return mean, ops.full_like(mean, sigma)
    raise ValueError(
        f"Argument `{name}` must have shape (N,), (N, 1) or (N, 2) = [mean, std]. Received: {name}.shape={shape}"
    )


def off_diagonal_row_mean(pair_values):
    """Per-row mean over `j != i` of an `(N, N)` matrix; the mean of the result is the mean over pairs."""
    n = ops.shape(pair_values)[0]
    mask = 1.0 - ops.eye(n, dtype=pair_values.dtype)
    count = ops.maximum(ops.cast(n, pair_values.dtype) - 1.0, 1.0)
    return ops.sum(pair_values * mask, axis=1) / count
