"""Generating (once) and caching the embedded 2AFC and JND datasets in the BAPPS layout."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from typing import Sequence

import numpy as np

from keras_percept.atomic import atomic_path
from keras_percept.data.embedded import cvvdp_judge
from keras_percept.data.embedded.distortions import DEFAULT_VAL_FAMILIES, FAMILIES, GROUPS, distort
from keras_percept.data.embedded.observer import Observer, texture_of
from keras_percept.data.embedded.photos import DEFAULT_VAL_PHOTOS, PHOTOS, load_photo

# Bump when a change to the generator changes its output, so old caches are not reused.
GENERATOR_VERSION = 1
MIXED = "mixed"
NOTE = ("Labels of this dataset come from a simulated observer (keras_percept.data.embedded.observer), "
        "not from human judgments.")
CVVDP_NOTE = ("Labels of this dataset come from ColorVideoVDP (keras_percept.data.embedded.cvvdp_judge), a model "
              "of human vision calibrated on human experiments, with simulated judges drawn from its JOD scale; "
              "not from human judgments.")
_MIN_PATCH_STD = 0.04  # reject nearly flat patches (dark sky of the Hubble and retina photographs)
_JND_IDENTICAL = 0.1  # fraction of JND pairs that are identical
_JND_MAX_SEVERITY = 0.5


def build(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    n_train: int = 4000,
    n_val: int = 1200,
    n_jnd: int = 1200,
    patch_size: int = 64,
    severity_levels: int = 5,
    judges_train: int = 2,
    judges_val: int = 5,
    judges_jnd: int = 3,
    val_photos: Sequence[str] = DEFAULT_VAL_PHOTOS,
    val_families: Sequence[str] = DEFAULT_VAL_FAMILIES,
    hold_out_families: bool = True,
    observer_noise: float = 0.1,
    observer_family_spread: float = 0.3,
    observer_lapse: float = 0.05,
    jnd_threshold: float = 0.2,
    judge: str = "observer",
    progress: bool = True,
) -> str:
    """Builds the embedded dataset (or finds it in the cache) and returns its root folder.

    Reference patches are cut from real photographs shipped with scikit-image
    and scikit-learn (`photos.PHOTOS`); `p0`/`p1` are distorted copies from 24
    families in 6 groups at `severity_levels` graded severities
    (`distortions.FAMILIES`); labels come from several simulated judges
    (`observer.Observer`) and are NOT human judgments. Validation uses
    photographs (`val_photos`) and distortion families (`val_families`) that
    training never sees. The output is in the BAPPS layout, read by
    `load_2afc` / `load_jnd`:

        2afc/{train,val}/<category>/{ref,p0,p1,judge}   category: a group, or "mixed" (p0, p1 from two groups)
        jnd/val/<group>/{p0,p1,same}                    p0 is the undistorted patch
        metadata/*.csv (photo, crop, families, severities per item), manifest.json

    The result depends only on the arguments (and `GENERATOR_VERSION`). With
    `root=None` it is cached in `$KERAS_PERCEPT_HOME/datasets/embedded-<hash
    of the arguments>` (default home `~/.cache/keras_percept`) and reused.

    Args:
        root: output folder; `None` for the cache. Defaults to `None`.
        seed: random seed. Defaults to `0`.
        n_train: training triplets, spread evenly over the categories. Defaults to `4000`.
        n_val: validation triplets. Defaults to `1200`.
        n_jnd: JND pairs. Defaults to `1200`.
        patch_size: side of the stored patches. Defaults to `64`.
        severity_levels: number of graded severities `k / levels`, `k = 1..levels`. Defaults to `5`.
        judges_train: simulated judges per training triplet. Defaults to `2` (as BAPPS).
        judges_val: judges per validation triplet. Defaults to `5` (as BAPPS).
        judges_jnd: judges per JND pair. Defaults to `3` (as BAPPS).
        val_photos: photographs reserved for validation and JND. Defaults to
            `("chelsea", "flower", "motorcycle")`.
        val_families: distortion families reserved for validation and JND.
            Defaults to two per group (`distortions.DEFAULT_VAL_FAMILIES`).
        hold_out_families: `False`: no family is held out, every split draws
            from all 24 (`val_families` is unused; photographs stay held out),
            which asks whether a metric learns the judge on distortions it
            trained on rather than on new ones. Defaults to `True`.
        observer_noise: `Observer.noise`. Defaults to `0.1`.
        observer_family_spread: `Observer.family_spread`. Defaults to `0.3`.
        observer_lapse: `Observer.lapse`. Defaults to `0.05`.
        jnd_threshold: `Observer.jnd_threshold`. Defaults to `0.2`.
        judge: who labels the patches: `"observer"` (the simulated observer,
            `observer.py`) or `"cvvdp"` (ColorVideoVDP under a fixed display
            model, `cvvdp_judge.py`; needs `pip install cvvdp`; the observer
            arguments are then unused). Defaults to `"observer"`.
        progress: show a progress bar. Defaults to `True`.

    Example:

    >>> root = keras_percept.data.embedded.build(n_train=2000)  # doctest: +SKIP
    >>> train = keras_percept.data.load_2afc(root, "train", shuffle=True)  # doctest: +SKIP
    """
    params = dict(
        seed=seed, n_train=n_train, n_val=n_val, n_jnd=n_jnd, patch_size=patch_size,
        severity_levels=severity_levels, judges_train=judges_train, judges_val=judges_val,
        judges_jnd=judges_jnd, val_photos=list(val_photos), val_families=list(val_families),
        observer_noise=observer_noise, observer_family_spread=observer_family_spread,
        observer_lapse=observer_lapse, jnd_threshold=jnd_threshold, judge=judge,
    )
    _check_params(params)
    if not isinstance(hold_out_families, (bool, np.bool_)):
        raise ValueError("Argument `hold_out_families` must be a bool. "
                         f"Received: hold_out_families={hold_out_families!r}")
    if not hold_out_families:  # in the key only when not the default, so the default sets keep their cache keys
        params["hold_out_families"] = False
    if judge == "cvvdp":
        params["judge_version"] = cvvdp_judge.version()  # in the cache key and the manifest
    if root is None:
        from keras_percept.paths import cache_dir

        root = os.path.join(cache_dir("datasets"), f"embedded-{cache_key(params)}")
    root = os.path.expanduser(os.fspath(root))
    if _matches(root, params):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(
            f"{root!r} exists and does not hold an embedded dataset built with these arguments; "
            "pass another `root`, or delete the folder."
        )
    try:
        with atomic_path(root, is_dir=True) as scratch:  # a killed build leaves no partial dataset
            _generate(scratch, params, progress)
    except OSError:
        if not _matches(root, params):  # else another process finished the same build first
            raise
    return root


def cache_key(params: dict) -> str:
    """A short hash of the generation arguments and `GENERATOR_VERSION`."""
    text = json.dumps({"generator_version": GENERATOR_VERSION, **params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_manifest(root: str | os.PathLike) -> dict:
    """The `manifest.json` of a built dataset: arguments, counts, photos, families, generation time."""
    with open(os.path.join(os.fspath(root), "manifest.json")) as f:
        return json.load(f)


def read_metadata(root: str | os.PathLike, name: str) -> list[dict]:
    """Per-item facts (`metadata/<name>.csv`, name one of `2afc_train`, `2afc_val`, `jnd_val`), typed.

    Example:

    >>> rows = read_metadata(build(), "2afc_val")  # doctest: +SKIP
    >>> rows[0]["family0"], rows[0]["severity0"], rows[0]["label"]  # doctest: +SKIP
    ('saturation', 0.6, 0.8)
    """
    with open(os.path.join(os.fspath(root), "metadata", f"{name}.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key.startswith(("severity", "label", "texture", "jod", "p1_closer", "p_same")):
                row[key] = float(value)
            elif key in ("top", "left"):
                row[key] = int(value)
    return rows


def _check_params(p: dict) -> None:
    for name in ("n_train", "n_val", "n_jnd", "judges_train", "judges_val", "judges_jnd", "severity_levels"):
        if not isinstance(p[name], int) or p[name] < 1:
            raise ValueError(f"Argument `{name}` must be a positive int. Received: {name}={p[name]!r}")
    if not isinstance(p["patch_size"], int) or not 8 <= p["patch_size"] <= 256:
        raise ValueError(f"Argument `patch_size` must be an int in [8, 256]. Received: patch_size={p['patch_size']!r}")
    for name, known in (("val_photos", PHOTOS), ("val_families", FAMILIES)):
        unknown = [v for v in p[name] if v not in known]
        if unknown or not p[name] or len(p[name]) == len(known):
            raise ValueError(
                f"Argument `{name}` must be a non-empty proper subset of {sorted(known)}. Received: {name}={p[name]!r}"
            )
    Observer(p["observer_noise"], p["observer_family_spread"], p["observer_lapse"], p["jnd_threshold"])
    if p["judge"] not in cvvdp_judge.JUDGES:
        raise ValueError(f"Argument `judge` must be one of {cvvdp_judge.JUDGES}. Received: judge={p['judge']!r}")


def _matches(root: str, params: dict) -> bool:
    try:
        manifest = read_manifest(root)
        return manifest["generator_version"] == GENERATOR_VERSION and manifest["params"] == params
    except (OSError, ValueError, KeyError):
        return False


def _split_plan(params: dict) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """Per split: its photographs and its families grouped by group."""
    val_photos, val_families = set(params["val_photos"]), set(params["val_families"])
    shared = not params.get("hold_out_families", True)
    plan = {}
    for split, held_out in (("train", False), ("val", True)):
        photos = [p for p in PHOTOS if (p in val_photos) == held_out]
        groups = {g: [f for f, fam in FAMILIES.items()
                      if fam.group == g and (shared or (f in val_families) == held_out)] for g in GROUPS}
        plan[split] = (photos, {g: fs for g, fs in groups.items() if fs})
    return plan


def _even_counts(total: int, names: list[str]) -> dict[str, int]:
    base, extra = divmod(total, len(names))
    return {name: base + (k < extra) for k, name in enumerate(names)}


def _generate(out: str, params: dict, progress: bool) -> None:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    observer = Observer(params["observer_noise"], params["observer_family_spread"],
                        params["observer_lapse"], params["jnd_threshold"])
    cvvdp = cvvdp_judge.CVVDPJudge() if params["judge"] == "cvvdp" else None
    if cvvdp:
        observer = None  # the label is drawn after the batched ColorVideoVDP call
    plan = _split_plan(params)
    jobs = []  # (kind, split, category, counts)
    for split in ("train", "val"):
        groups = list(plan[split][1])
        categories = groups + ([MIXED] if len(groups) > 1 else [])
        jobs.append(("2afc", split, _even_counts(params[f"n_{split}"], categories)))
    jobs.append(("jnd", "val", _even_counts(params["n_jnd"], list(plan["val"][1]))))

    counts, metadata = {}, {}
    total = params["n_train"] + params["n_val"] + params["n_jnd"]
    with tqdm(total=total, desc="embedded dataset", unit="item", disable=not progress) as bar:
        for job, (kind, split, per_category) in enumerate(jobs):
            photos, groups = plan[split]
            rows = metadata.setdefault(f"{kind}_{split}", [])
            for c, (category, n) in enumerate(per_category.items()):
                folder = os.path.join(out, kind, split, category)
                items = []
                for i in range(n):
                    rng = np.random.default_rng([params["seed"], job, c, i])
                    item_id = f"{i:06d}"
                    if kind == "2afc":
                        images, label, facts = _triplet(
                            rng, photos, groups, category, params, observer, params[f"judges_{split}"]
                        )
                    else:
                        images, label, facts = _jnd_pair(rng, photos, groups[category], params, observer)
                    items.append((item_id, images, label, facts))
                if cvvdp:
                    items = _cvvdp_labels(cvvdp, items, kind, params[f"judges_{split if kind == '2afc' else 'jnd'}"],
                                          [params["seed"], job, c])
                for item_id, images, label, facts in items:
                    if kind == "2afc":
                        _write(folder, item_id, dict(zip(("ref", "p0", "p1"), images)), "judge", label)
                    else:
                        _write(folder, item_id, dict(zip(("p0", "p1"), images)), "same", label)
                    rows.append({"category": category, "id": item_id, **facts, "label": label})
                    bar.update(1)
                counts[f"{kind}/{split}/{category}"] = n
    os.makedirs(os.path.join(out, "metadata"))
    for name, rows in metadata.items():
        _write_csv(os.path.join(out, "metadata", f"{name}.csv"), rows)
    with open(os.path.join(out, "README.txt"), "w") as f:
        f.write(f"keras_percept embedded 2AFC/JND dataset (BAPPS layout).\n{CVVDP_NOTE if cvvdp else NOTE}\n")
    manifest = {
        "generator_version": GENERATOR_VERSION, "params": params, "counts": counts,
        "train_photos": plan["train"][0], "val_photos": plan["val"][0],
        "train_families": plan["train"][1], "val_families": plan["val"][1],
        "generation_seconds": round(time.perf_counter() - start, 2), "note": CVVDP_NOTE if cvvdp else NOTE,
        "judge": params["judge"], "display_model": cvvdp.display_model(params["patch_size"]) if cvvdp else None,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)


def _patch(rng: np.random.Generator, photos: list[str], params: dict):
    """A context crop (patch plus a margin, so shifts and blurs have real pixels to pull in) and its facts."""
    size = params["patch_size"]
    margin = size // 4
    photo = photos[rng.integers(len(photos))]
    image = load_photo(photo)
    for _ in range(50):
        top = int(rng.integers(0, image.shape[0] - size - 2 * margin + 1))
        left = int(rng.integers(0, image.shape[1] - size - 2 * margin + 1))
        context = image[top:top + size + 2 * margin, left:left + size + 2 * margin]
        if context[margin:-margin, margin:-margin].mean(axis=-1).std() >= _MIN_PATCH_STD:
            break
    return context, margin, {"photo": photo, "top": top + margin, "left": left + margin}


def _triplet(rng, photos, groups, category, params, observer, n_judges):
    context, m, facts = _patch(rng, photos, params)
    if category == MIXED:
        g0, g1 = rng.choice(list(groups), size=2, replace=False)
    else:
        g0 = g1 = category
    levels = params["severity_levels"]
    chosen = [(groups[g][rng.integers(len(groups[g]))], int(rng.integers(1, levels + 1)) / levels) for g in (g0, g1)]
    ref = context[m:-m, m:-m]
    p0, p1 = (distort(context, family, s, rng)[m:-m, m:-m] for family, s in chosen)
    texture = texture_of(ref)
    label = None if observer is None else observer.judge_2afc(
        rng, chosen[0], chosen[1], texture=texture, n_judges=n_judges)
    facts.update(family0=chosen[0][0], severity0=chosen[0][1], family1=chosen[1][0], severity1=chosen[1][1],
                 texture=round(texture, 4))
    return (ref, p0, p1), label, facts


def _jnd_pair(rng, photos, families, params, observer):
    context, m, facts = _patch(rng, photos, params)
    ref = context[m:-m, m:-m]
    texture = texture_of(ref)
    if rng.random() < _JND_IDENTICAL:
        distortion, p1 = None, ref
    else:
        distortion = (families[rng.integers(len(families))], float(rng.uniform(0.02, _JND_MAX_SEVERITY)))
        p1 = distort(context, *distortion, rng)[m:-m, m:-m]
    label = None if observer is None else observer.judge_jnd(
        rng, distortion, texture=texture, n_judges=params["judges_jnd"])
    facts.update(family=distortion[0] if distortion else "identical",
                 severity=round(distortion[1], 4) if distortion else 0.0, texture=round(texture, 4))
    return (ref, p1), label, facts


def _cvvdp_labels(cvvdp, items: list, kind: str, n_judges: int, seed: list[int]) -> list:
    """`items` with labels drawn from ColorVideoVDP (one batched call per category) and the JODs in their facts."""
    if not items:
        return items
    patches = [np.stack([_to_uint8(images[k]) for _, images, _, _ in items]) for k in range(len(items[0][1]))]
    if kind == "2afc":
        ref, p0, p1 = patches
        jods = cvvdp.jod(np.concatenate([p0, p1]), np.concatenate([ref, ref])).reshape(2, -1)
        probability = cvvdp_judge.p1_closer(jods[0], jods[1])
        extra = [{"jod0": round(float(a), 5), "jod1": round(float(b), 5), "p1_closer": round(float(h), 5)}
                 for a, b, h in zip(jods[0], jods[1], probability)]
    else:
        ref, p1 = patches
        jods = cvvdp.jod(p1, ref)
        probability = cvvdp_judge.p_same(jods)
        extra = [{"jod": round(float(a), 5), "p_same": round(float(h), 5)} for a, h in zip(jods, probability)]
    return [(item_id, images, cvvdp_judge.votes(np.random.default_rng([*seed, i, 1]), h, n_judges), {**facts, **e})
            for i, ((item_id, images, _, facts), h, e) in enumerate(zip(items, probability, extra))]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """A float patch in [0, 1] as the uint8 pixels that are stored (and judged)."""
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _write(folder: str, item_id: str, images: dict[str, np.ndarray], label_dir: str, label: float) -> None:
    from PIL import Image

    for name, image in images.items():
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        Image.fromarray(_to_uint8(image)).save(os.path.join(folder, name, f"{item_id}.png"), compress_level=1)
    os.makedirs(os.path.join(folder, label_dir), exist_ok=True)
    np.save(os.path.join(folder, label_dir, f"{item_id}.npy"), np.array([label], dtype=np.float32))


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
