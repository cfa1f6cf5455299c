"""Speed benchmark: keras_percept against the PyPI `lpips` reference (PyTorch CPU), same machine, one run.

    python benchmarks/speed.py                  # full: the table of the README (tens of minutes)
    python benchmarks/speed.py --quick          # tiny sizes, one round (CI runs this; ~2 minutes)
    python benchmarks/speed.py --backends tensorflow,jax --rows forward-alex

Rows (throughput = pairs or triplets per second; higher is better):

- `forward-alex`: distances, alex trunk, 64x64, batch 32 (`LPIPS.distance` vs the reference `LPIPS.forward`).
- `forward-vgg`: the same with the vgg trunk at 256x256.
- `forward-alex-st`: ST-LPIPS's shift-tolerant alex at 64x64, batch 32, against the PyPI `stlpips-pytorch`
  reference, both with its published weights (the file its wheel ships).
- `forward-dists`: DISTS at 64x64, batch 32, against the PyPI `dists-pytorch` reference (the same seeded
  random VGG16 in both, its shipped alpha/beta). E-LPIPS has no reference package: its speed is in
  `benchmarks/family.py`.
- `train-lin`: `lin` training steps through the frozen alex trunk, 64x64 triplets, batch 50: the model,
  loss and optimizer the `lin` config builds (`model.fit`) vs. `lpips.Trainer.optimize_parameters`.
- `train-lin-cached`: keras_percept's cached-feature `lin` epoch (`CachedLinModel` on per-channel means;
  the trunk ran once beforehand and is *not* in the timing). An algorithmic shortcut the reference lacks,
  so its ratio is not like-for-like; the cache build time (one trunk pass) is printed beside it.

Implementations: the reference, then those of `--backends` (default tensorflow, jax, torch, onnxruntime): the
Keras backends, and `onnxruntime` (forward rows only), which runs the metric exported by `export_onnx`
(`keras-percept export --format onnx`) in ONNX Runtime's CPU provider, without TensorFlow or Keras.
`tensorflow` runs with TensorFlow's default for this CPU (its oneDNN CPU kernels are on for CPUs with
AVX-512 VNNI/BF16 or AMX, off on e.g. AVX2-only EPYCs, unless TF_ENABLE_ONEDNN_OPTS says otherwise);
`tensorflow-onednn` is the TensorFlow backend with `TF_ENABLE_ONEDNN_OPTS=1`, the opt-in the README
describes. The table's footer says which state each TensorFlow worker ran with.

Identical nets and weights: the reference's seeded random torchvision trunk (no ImageNet weights offline)
plus the official lin weights of the `lpips` wheel, converted into keras_percept; each forward row checks
the distances of both sides agree (max |d|), each training row the loss on the first batch.

Every (row, implementation) runs in its own subprocess, so the peak memory (`ru_maxrss` of that process,
framework imports included) is its own. Implementations alternate within a round and the best round is
kept, so background load hits every side alike. Warm-up calls (tracing, compilation) are excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# `tensorflow-onednn` is the TensorFlow backend with TF_ENABLE_ONEDNN_OPTS=1: TensorFlow leaves its oneDNN
# kernels off by default on CPUs without AVX-512 VNNI/BF16/AMX (e.g. AVX2-only EPYCs).
BACKENDS = ("tensorflow", "tensorflow-onednn", "jax", "torch", "onnxruntime")
DEFAULT_BACKENDS = ("tensorflow", "jax", "torch", "onnxruntime")
ONNX = "onnxruntime"  # not a Keras backend: the exported ONNX file in ONNX Runtime
SEED = 0


def _keras_backend(impl: str) -> str:
    """The KERAS_BACKEND of an implementation name (`tensorflow-onednn` runs on `tensorflow`)."""
    return impl.split("-")[0]


# One row's workload: full mode, then quick mode.
ROWS = {
    "forward-alex": {"kind": "forward", "net": "alex", "full": dict(size=64, batch=32, calls=20, repeats=5),
                     "quick": dict(size=64, batch=8, calls=2)},
    "forward-vgg": {"kind": "forward", "net": "vgg", "full": dict(size=256, batch=32, calls=1, repeats=2),
                    "quick": dict(size=32, batch=4, calls=2)},
    "forward-alex-st": {"kind": "forward", "net": "alex-st",
                        "full": dict(size=64, batch=32, calls=10, repeats=3), "quick": dict(size=32, batch=4, calls=2)},
    "forward-dists": {"kind": "forward", "net": "dists",
                      "full": dict(size=64, batch=32, calls=5, repeats=3), "quick": dict(size=32, batch=4, calls=2)},
    "train-lin": {"kind": "train", "net": "alex", "full": dict(size=64, batch=50, steps=8, epochs=3),
                  "quick": dict(size=64, batch=8, steps=2, epochs=2)},
    "train-lin-cached": {"kind": "cached", "net": "alex", "full": dict(size=64, batch=50, steps=400, epochs=3),
                         "quick": dict(size=64, batch=8, steps=4, epochs=2)},
}
UNIT = {"forward": "pairs/s", "train": "triplets/s", "cached": "triplets/s"}


# ----------------------------------------------------------------------------- workers (one per subprocess)

def _set_threads(threads: int, backend: str | None) -> None:
    """`threads` intra- and inter-op threads for the framework doing the work; XLA:CPU is set by env."""
    if backend == ONNX:
        return  # the session's own options (`_onnx_worker`)
    if backend in (None, "torch"):
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    if backend is not None and _keras_backend(backend) == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _pairs(size: int, batch: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    x1 = np.clip(x0 + rng.normal(0, 0.4, x0.shape), -1, 1).astype(np.float32)
    return x0, x1


def _triplets(size: int, batch: int, steps: int, seed: int):
    """`steps * batch` triplets in [-1, 1] and judge fractions in [0, 1]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = steps * batch
    ref = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
    p0 = np.clip(ref + rng.normal(0, 0.2, ref.shape), -1, 1).astype(np.float32)
    p1 = np.clip(ref + rng.normal(0, 0.4, ref.shape), -1, 1).astype(np.float32)
    return ref, p0, p1, rng.uniform(0, 1, n).astype(np.float32)


def _timed(fn, calls: int, items_per_call: int, repeats: int = 2) -> float:
    """Best throughput over `repeats` blocks of `calls` calls, after one warm-up call."""
    fn()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = max(best, calls * items_per_call / (time.perf_counter() - start))
    return best


def _epoch_throughput(seconds: list[float], items: int) -> float:
    """Items per second of the fastest epoch after the first (tracing, compilation)."""
    return items / min(seconds[1:])


def _reference_worker(row: dict, p: dict, files: dict) -> dict:
    import numpy as np
    import torch

    from torch_reference import (_trainer_input, reference_dists, reference_lpips, reference_stlpips,
                                 reference_trainer)

    if row["kind"] == "forward":
        net = row["net"]
        x0, x1 = _pairs(p["size"], p["batch"], SEED)
        if net == "dists":  # its range is [0, 1]; keras_percept's DISTS here takes [-1, 1]
            model, x0, x1 = reference_dists(seed=SEED), (x0 + 1) / 2, (x1 + 1) / 2
        else:
            model = reference_stlpips(net[:-3]) if net.endswith("-st") else reference_lpips(net, seed=SEED)
        t0, t1 = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) for x in (x0, x1))
        with torch.no_grad():
            check = model(t0, t1).numpy().ravel()
            setup_rss = _rss_mb()

            def forward():
                model(t0, t1)

            value = _timed(forward, p["calls"], p["batch"], p.get("repeats", 2))
        return {"value": value, "check": check.tolist(), "setup_mb": setup_rss}
    if row["kind"] == "cached":
        return {}
    trainer = reference_trainer(row["net"], seed=SEED)
    ref, p0, p1, h = _triplets(p["size"], p["batch"], p["steps"], SEED)
    batches = [_trainer_input(*(a[k:k + p["batch"]] for a in (ref, p0, p1, h)))
               for k in range(0, len(h), p["batch"])]
    trainer.set_input(batches[0])
    with torch.no_grad():
        check = [float(trainer.forward_train()), *trainer.d0.numpy().ravel().tolist(),
                 *trainer.d1.numpy().ravel().tolist()]
    setup_rss = _rss_mb()
    seconds = []
    for _ in range(p["epochs"]):
        start = time.perf_counter()
        for batch in batches:
            trainer.set_input(batch)
            trainer.optimize_parameters()
        seconds.append(time.perf_counter() - start)
    return {"value": _epoch_throughput(seconds, len(h)), "check": check, "setup_mb": setup_rss}


def _lin_model(p: dict, files: dict):
    """The `lin` 2AFC model and compiled optimizer as `train()` builds them, with the reference's start weights."""
    import numpy as np

    from keras_percept.convert import (
        assign_layer_weights,
        lin_layer_weights,
        split_lpips_state_dict,
        trunk_layer_weights,
    )
    from keras_percept.models.comparison import dist2logit_weights_from_torch
    from keras_percept.training import load_config, model_builder
    from keras_percept.training.trainer import _compile

    with np.load(files["trainer"]) as stored:
        net = {k[4:]: stored[k] for k in stored.files if k.startswith("net.")}
        rank = {k[5:]: stored[k] for k in stored.files if k.startswith("rank.")}
    trunk, lins = split_lpips_state_dict(net)
    config = load_config(os.path.join(REPO, "configs", "lin.yaml"), overrides=[
        "model.net=alex", "model.dropout=0.0", f"data.batch_size={p['batch']}", f"data.patch_size={p['size']}",
        "feature_cache=false"])
    # The builder's "pretrained" trunk is the reference's seeded random one (no ImageNet weights offline).
    model_builder.load_pretrained_trunk = lambda metric, source="imagenet": assign_layer_weights(
        metric.backbone, trunk_layer_weights(trunk, "alex"))
    model = model_builder.build_twoafc_model(config)
    assign_layer_weights(model.metric, lin_layer_weights(lins, model.metric.tap_channels))
    model.comparison.set_weights(dist2logit_weights_from_torch(rank))
    _compile(model, config, p["steps"])
    return model, config


def _onnx_worker(row: dict, p: dict, files: dict) -> dict:
    """The forward rows on the ONNX export of the same `.keras` file, in ONNX Runtime (no training rows)."""
    if row["kind"] != "forward" or row["net"] + ".onnx" not in files:
        return {}
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = int(os.environ["OMP_NUM_THREADS"])
    session = onnxruntime.InferenceSession(files[row["net"] + ".onnx"], options, providers=["CPUExecutionProvider"])
    x0, x1 = _pairs(p["size"], p["batch"], SEED)
    check = session.run(["distance"], {"x0": x0, "x1": x1})[0].ravel()
    setup_rss = _rss_mb()
    value = _timed(lambda: session.run(["distance"], {"x0": x0, "x1": x1}), p["calls"], p["batch"],
                   p.get("repeats", 2))
    return {"value": value, "check": check.tolist(), "setup_mb": setup_rss}


def _keras_worker(row: dict, p: dict, files: dict) -> dict:
    import keras
    import numpy as np

    import keras_percept  # noqa: F401  (registers the custom objects)

    if row["kind"] == "forward":
        model = keras.saving.load_model(files[row["net"]])
        x0, x1 = _pairs(p["size"], p["batch"], SEED)
        check = model.distance(x0, x1, batch_size=p["batch"]).ravel()
        setup_rss = _rss_mb()
        value = _timed(lambda: model.distance(x0, x1, batch_size=p["batch"]), p["calls"], p["batch"],
                       p.get("repeats", 2))
        return {"value": value, "check": check.tolist(), "setup_mb": setup_rss}

    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self._start)

    model, config = _lin_model(p, files)
    ref, p0, p1, h = _triplets(p["size"], p["batch"], p["steps"] if row["kind"] == "train" else 1, SEED)
    if row["kind"] == "train":
        b = p["batch"]
        first = (ref[:b], p0[:b], p1[:b])
        d0, d1, _ = np.asarray(model.predict_on_batch(first)).T
        check = [float(model.test_on_batch(first, h[:b], return_dict=True)["loss"]), *d0.tolist(), *d1.tolist()]
        setup_rss = _rss_mb()
        model.fit((ref, p0, p1), h, batch_size=b, epochs=p["epochs"], shuffle=False, verbose=0,
                  callbacks=[EpochTimer()])
        return {"value": _epoch_throughput(seconds, len(h)), "check": check, "setup_mb": setup_rss}

    from keras_percept.training.feature_cache import CachedLinModel, _batch_means, cached_dataset
    from keras_percept.training.trainer import _compile

    start = time.perf_counter()
    m0, m1 = _batch_means(model.metric, ref, p0, p1)  # first call traces; the timed build is the second
    start = time.perf_counter()
    m0, m1 = _batch_means(model.metric, ref, p0, p1)
    build = len(h) / (time.perf_counter() - start)
    # Tile the cached means of one batch to `steps` batches: the cached epoch never looks at images.
    reps = p["steps"]
    means = {"m0": np.tile(m0, (reps, 1)), "m1": np.tile(m1, (reps, 1)), "h": np.tile(h, reps)}
    cached = CachedLinModel(model.metric, model.comparison, dropout=config.model.dropout, name="cached_lin")
    _compile(cached, config, reps)
    setup_rss = _rss_mb()
    cached.fit(cached_dataset(means, p["batch"]), epochs=p["epochs"], verbose=0, callbacks=[EpochTimer()])
    return {"value": _epoch_throughput(seconds, len(means["h"])), "build": build, "setup_mb": setup_rss}


def _prepare(directory: str, nets: list[str], onnx: bool) -> dict:
    """Converts the reference's seeded nets into `.keras` files (and, with `onnx`, their ONNX exports; this
    worker runs on TensorFlow) and snapshots the Trainer's start weights."""
    import numpy as np

    from keras_percept.convert import convert_dists, convert_lpips, split_lpips_state_dict
    from keras_percept.export import export_onnx
    from torch_reference import reference_dists, reference_lpips, reference_trainer, state_dict_numpy

    files = {}
    for net in nets:
        files[net] = os.path.join(directory, f"{net}.keras")
        if net.endswith("-st"):  # the published ST-LPIPS, as the reference loads it
            convert_lpips(net, trunk_weights="published", output=files[net])
        elif net == "dists":
            trunk = {k: v for k, v in state_dict_numpy(reference_dists(seed=SEED)).items() if k not in ("alpha", "beta")}
            convert_dists(trunk_weights=trunk, alpha_beta="official", input_range="[-1,1]", output=files[net])
        else:
            trunk, _ = split_lpips_state_dict(state_dict_numpy(reference_lpips(net, seed=SEED)))
            convert_lpips(net, trunk_weights=trunk, lin_weights="official", output=files[net])
        if onnx and net != "dists":  # export_onnx takes LPIPS metrics
            files[net + ".onnx"] = export_onnx(files[net], os.path.join(directory, f"{net}.onnx"))
    trainer = reference_trainer("alex", seed=SEED)
    state = {**{f"net.{k}": v for k, v in state_dict_numpy(trainer.net).items()},
             **{f"rank.{k}": v for k, v in state_dict_numpy(trainer.rankLoss).items()}}
    files["trainer"] = os.path.join(directory, "trainer.npz")
    np.savez(files["trainer"], **state)
    return files


def worker(spec: dict) -> None:
    """Runs `spec["rows"]` for one implementation and prints one JSON line of results."""
    sys.path.insert(0, os.path.join(REPO, "tests"))
    backend = spec["backend"]
    _set_threads(spec["threads"], backend)
    if spec.get("prepare"):
        print("RESULT " + json.dumps(_prepare(spec["directory"], spec["nets"], spec["onnx"])), flush=True)
        return
    out = {}
    for name in spec["rows"]:
        row = ROWS[name]
        params = row["quick" if spec["quick"] else "full"]
        run = _reference_worker if backend is None else _onnx_worker if backend == ONNX else _keras_worker
        result = run(row, params, spec["files"])
        if result:
            out[name] = {**result, "peak_mb": _peak_mb()}
    if backend is not None and _keras_backend(backend) == "tensorflow":
        from tensorflow.python.util import _pywrap_util_port

        out["onednn"] = bool(_pywrap_util_port.IsMklEnabled())  # the effective state, env and CPU default
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- driver

def _environment(threads: int, backend: str | None) -> dict:
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
        "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
        # OpenMP threads that sleep instead of spinning at barriers: on a busy machine PyTorch's spinning
        # pool is 4-6x slower (measured); TensorFlow and XLA run their own pools and ignore this.
        "OMP_WAIT_POLICY": env.get("OMP_WAIT_POLICY", "PASSIVE"),
        "XLA_FLAGS": (env.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen=true "
                      f"intra_op_parallelism_threads={threads}").strip(),
        "KERAS_BACKEND": _keras_backend(backend if backend not in (None, ONNX) else "tensorflow"),
    })
    if backend == "tensorflow-onednn":
        env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    return env


def _spawn(spec: dict) -> dict:
    env = _environment(spec["threads"], spec["backend"])
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker {spec.get('backend') or 'reference'} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def cpu_description() -> tuple[str, float | None]:
    """(`lscpu`'s model name and vector flags, the float32 peak in GFLOP/s of all cores or None).

    The peak assumes two FMA units per core (16 float32 lanes with AVX-512, 8 with AVX2) at the clock
    `/proc/cpuinfo` reports: a nominal figure, not a bound. A virtual machine reports its base clock
    while the cores may turbo above it (on the Xeon of the README, TensorFlow's vgg row reached 116% of
    it), and a CPU with one FMA unit or a lower AVX-512 clock has less.
    """
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown CPU", None
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    shown = [f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")]
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else None
    mhz = None
    try:
        with open("/proc/cpuinfo") as f:
            mhz = next((float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")), None)
    except OSError:
        pass
    peak = os.cpu_count() * mhz / 1000 * lanes * 2 * 2 if lanes and mhz else None  # 2 FMA units x 2 FLOP
    return f"{model} ({os.cpu_count()} cores, {mhz or '?'} MHz; flags: {' '.join(shown) or 'none of these'})", peak


def vgg_gflop_per_pair(size: int) -> float:
    """Multiply-adds x 2 of the 13 VGG16 convolutions on two `size` x `size` images (pools and ReLUs left out)."""
    widths = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256), (256, 512),
              (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))
    stage_of = (0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4)
    flop = sum(9 * cin * cout * (size >> stage) ** 2 * 2 for (cin, cout), stage in zip(widths, stage_of))
    return 2 * flop / 1e9


def _throughput(value: float) -> str:
    """Three significant digits at least (the vgg row is about one pair per second)."""
    return f"{value:.1f}" if value >= 100 else f"{value:.3g}"


def _label(impl: str) -> str:
    return "reference (torch)" if impl == "reference" else f"keras_percept/{impl}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round, one process per backend")
    parser.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                        help=f"comma-separated, from {', '.join(BACKENDS)} (default: {','.join(DEFAULT_BACKENDS)})")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds; best kept (default 2, quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="threads for PyTorch, TensorFlow and XLA:CPU")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0

    backends = [b for b in args.backends.split(",") if b]
    rows = [r for r in args.rows.split(",") if r]
    for name, allowed in (("backends", BACKENDS), ("rows", tuple(ROWS))):
        bad = [v for v in (backends if name == "backends" else rows) if v not in allowed]
        if bad:
            parser.error(f"Argument `--{name}` must list values from {allowed}. Received: {bad}")
    rounds = args.rounds or (1 if args.quick else 2)
    impls = ["reference", *backends]
    mode = "quick" if args.quick else "full"
    cpu, peak = cpu_description()
    print(f"CPU: {cpu}")
    print(f"keras_percept speed benchmark ({mode} mode): {args.threads} threads each for PyTorch "
          f"(set_num_threads/interop), TensorFlow (intra/inter-op) and XLA:CPU; OMP/MKL_NUM_THREADS="
          f"{args.threads}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}; "
          f"{os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.1f}", flush=True)

    directory = tempfile.mkdtemp(prefix="kp_speed_")
    nets = sorted({ROWS[r]["net"] for r in rows if ROWS[r]["kind"] == "forward"})
    start = time.time()
    # The ONNX export runs on TensorFlow (tf2onnx); otherwise the first backend prepares.
    keras_backends = [b for b in backends if b != ONNX] or ["tensorflow"]
    files = _spawn({"prepare": True, "backend": "tensorflow" if ONNX in backends else keras_backends[0],
                    "threads": args.threads, "directory": directory, "nets": nets, "onnx": ONNX in backends})
    results: dict[tuple[str, str], dict] = {}
    per_round: dict[tuple[str, str], list[float]] = {}
    onednn: dict[str, bool] = {}
    # Quick: one process per implementation runs every row; full: one per (row, implementation).
    groups = [rows] if args.quick else [[r] for r in rows]
    for round_ in range(rounds):
        for group in groups:
            for impl in impls:
                if impl == "reference" and all(ROWS[r]["kind"] == "cached" for r in group):
                    continue
                if impl == ONNX and all(ROWS[r]["kind"] != "forward" for r in group):
                    continue
                spec = {"backend": None if impl == "reference" else impl, "threads": args.threads,
                        "rows": group, "quick": args.quick, "files": files}
                t = time.time()
                out = _spawn(spec)
                if "onednn" in out:
                    onednn[impl] = out.pop("onednn")
                for name, result in out.items():
                    per_round.setdefault((name, impl), []).append(result["value"])
                    best = results.get((name, impl))
                    if best is None or result["value"] > best["value"]:
                        results[(name, impl)] = result
                print(f"  round {round_ + 1}/{rounds} {','.join(group)} {_label(impl)}: "
                      + ", ".join(_throughput(out[n]["value"]) for n in group if n in out)
                      + f" ({time.time() - t:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)

    _print_table(rows, impls, results, args.quick, rounds, per_round)
    if "forward-vgg" in rows:
        size = ROWS["forward-vgg"]["quick" if args.quick else "full"]["size"]
        gflop = vgg_gflop_per_pair(size)
        shares = ", ".join(f"{_label(impl)} {gflop * results[('forward-vgg', impl)]['value']:.0f} GFLOP/s"
                           + (f" ({gflop * results[('forward-vgg', impl)]['value'] / peak:.0%})" if peak else "")
                           for impl in impls if ("forward-vgg", impl) in results)
        nominal = f"{peak:.0f} GFLOP/s nominal (all cores at the reported clock, 2 FMA units)" if peak else "unknown"
        print(f"forward-vgg: {gflop:.1f} GFLOP per pair at {size} px; float32 peak {nominal}: {shares}")
    if onednn:
        print("TensorFlow oneDNN kernels: " + ", ".join(f"{impl} {'on' if on else 'off'}" for impl, on in onednn.items()))
    print(f"\ntotal {time.time() - start:.0f} s; load average at end {os.getloadavg()[0]:.1f}")
    return _check(rows, impls, results)


def _print_table(rows, impls, results, quick: bool, rounds: int, per_round: dict) -> None:
    """The table: best throughput per (row, implementation), its ratio to the reference's best, and the
    median over rounds of the ratio measured within one round (both sides close in time, so a slow
    spell of a shared machine hits both; this is the steadier estimate when the best rounds differ)."""
    print(f"\nThroughput (best of {rounds} round(s), warm-up excluded); ratio = keras_percept / reference (best "
          "vs best); med ratio = median over rounds of the same-round ratio; peak = ru_maxrss of the worker "
          "process (imports included), +work = peak - RSS after setup")
    header = (f"{'row':<18}{'unit':<11}{'implementation':<34}{'throughput':>12}{'ratio':>8}{'med ratio':>10}"
              f"{'peak MB':>9}{'+work MB':>10}")
    print(header)
    print("-" * len(header))
    for name in rows:
        row = ROWS[name]
        params = row["quick" if quick else "full"]
        shape = f"{params['size']}px b{params['batch']}"
        ref_key = (name if row["kind"] != "cached" else "train-lin", "reference")
        reference = results.get(ref_key)
        for impl in impls:
            result = results.get((name, impl))
            if result is None:
                continue
            ratio = median = ""
            if reference and impl != "reference":
                ratio = f"{result['value'] / reference['value']:.2f}x"
                pairs = list(zip(per_round[(name, impl)], per_round[ref_key]))
                median = f"{statistics.median(v / r for v, r in pairs):.2f}x"
            extra = max(0.0, result["peak_mb"] - result["setup_mb"])
            print(f"{name:<18}{UNIT[row['kind']]:<11}{_label(impl):<34}{_throughput(result['value']):>12}{ratio:>8}"
                  f"{median:>10}{result['peak_mb']:>9.0f}{extra:>10.0f}")
        print(f"{'':<18}{row['net']} {shape}" + (
            "; ratio vs the reference Trainer through the trunk (NOT like-for-like: no trunk in the epoch); "
            "cache build " + ", ".join(f"{impl} {results[(name, impl)]['build']:.0f}/s"
                                       for impl in impls if (name, impl) in results)
            if row["kind"] == "cached" else ""))


def _check(rows, impls, results) -> int:
    """Prints how far each keras_percept result is from the reference's; non-zero exit when too far.

    Forward rows compare the distances of the first batch; training rows the first batch's loss, d0 and
    d1 before any step. Too far = max |difference| above 1e-4 of the largest reference value.
    """
    import numpy as np

    failed = False
    for name in rows:
        reference = results.get((name, "reference"))
        if reference is None or "check" not in reference:
            continue
        what = "distances" if ROWS[name]["kind"] == "forward" else "first-batch (loss, d0, d1)"
        expected = np.asarray(reference["check"], dtype=np.float64)
        diffs = {impl: float(np.max(np.abs(np.asarray(results[(name, impl)]["check"]) - expected)))
                 for impl in impls[1:] if (name, impl) in results}
        print(f"{name}: max |difference| in {what} vs reference (largest |value| {np.abs(expected).max():.2e}): "
              + ", ".join(f"{impl} {d:.1e}" for impl, d in diffs.items()))
        failed |= any(d > 1e-4 * np.abs(expected).max() for d in diffs.values())
    if failed:
        print("FAILED: keras_percept and the reference disagree; the comparison is not like-for-like.")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
