"""The `keras-percept` command line.

    keras-percept distance A.png B.png [--net alex] [--spatial heat.png]
    keras-percept distance DIR0 DIR1 --out distances.csv
    keras-percept distance DIR --out allpairs.csv
    keras-percept distance DIR --matrix --out matrix.csv
    keras-percept distance DIR0 DIR1 --out d.csv [--resume] [--shard 1/4] [--batch-size 32]
    keras-percept preset list
    keras-percept preset save runs/lin_effnet-lite0_seed0/metric.keras my_preset
    keras-percept convert --net alex --trunk-weights imagenet -o alex.keras
    keras-percept demo --out demo_out
    keras-percept export alex.keras alex_savedmodel [--image-size 256 256]
    keras-percept export alex.keras alex.onnx --format onnx
    keras-percept train --paradigm lin [--config configs/lin.yaml] [--set optim.epochs=3]
    keras-percept evaluate --model runs/lin_effnet-lite0_seed0/metric.keras
    keras-percept iqa compare-losses --config configs/iqa/compare.yaml [--quick] [--seeds 3]

Errors (bad files, bad values, missing weights offline) print one line
`keras-percept: error: ...` and exit with status 2; nothing is half-written: a folder
run's rows stay in `<out>.partial` (for `--resume`) until the run is complete.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from keras_percept.backbones import TRUNKS
from keras_percept.distance import DEFAULT_BATCH_SIZE, DEFAULT_NET

NETS = ("effnet-lite0", *(net for net in TRUNKS if net != "effnet-lite0"))
METRIC_NETS = (*NETS, "dists")  # `distance --net`: the LPIPS trunks, and the published DISTS


def _add_distance(sub) -> None:
    p = sub.add_parser("distance", help="LPIPS distance between two images, two folders, or all pairs in a folder.")
    p.add_argument("path0", help="image file, or folder")
    p.add_argument("path1", nargs="?", help="image file or folder; omit to compare all pairs in path0")
    p.add_argument("--net", default=DEFAULT_NET, choices=METRIC_NETS,
                   help=f"trunk of the pretrained metric (default {DEFAULT_NET}: offline, uncalibrated baseline), "
                        "or 'dists' (DISTS; needs torchvision's VGG16 once)")
    p.add_argument("--version", default="0.1", choices=("0.1", "0.0"), help="LPIPS version (default 0.1)")
    p.add_argument("--model", help="a trained metric saved as .keras (overrides --net)")
    p.add_argument("--preset", help="a preset name, preset folder, or hf:// / kaggle:// handle (overrides --net)")
    p.add_argument("--spatial", metavar="PNG_OR_DIR",
                   help="write the spatial distance map as a heatmap PNG (a folder of PNGs for folders)")
    p.add_argument("--out", metavar="CSV", help="write name,path0,path1,distance rows (default for folders: stdout)")
    p.add_argument("--matrix", action="store_true",
                   help="one folder: the N x N distance matrix (each image through the trunk once) as CSV")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"pairs per trunk call; memory holds one batch of images (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: keep the rows in <out>.partial, compute the rest")
    p.add_argument("--shard", metavar="K/N",
                   help="compute only part K of N (1-based, split at batch boundaries); the N CSVs concatenate "
                        "to the single-machine result")
    p.set_defaults(func=_run_distance)


def _run_distance(args) -> None:
    from keras_percept.distance import (
        collect_pairs, compute_distances, heatmap_filename, load_folder_images, load_metric, parse_shard,
        shard_pairs, write_csv, write_distances, write_matrix_csv,
    )

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1. Received: {args.batch_size}")
    if args.resume and not args.out:
        raise ValueError("--resume continues <out>.partial; give --out.")
    if args.matrix:
        if args.path1 is not None or not os.path.isdir(args.path0):
            raise ValueError(f"--matrix takes one folder. Received: {' '.join(p for p in (args.path0, args.path1) if p)}")
        if args.spatial or args.shard or args.resume:
            raise ValueError("--matrix writes scalar distances in one piece; it does not take --spatial, --shard "
                             "or --resume.")
        metric = load_metric(args.net, model_path=args.model, version=args.version, preset=args.preset)
        names, images = load_folder_images(args.path0, metric)
        matrix = metric.with_options(spatial=False, return_per_layer=False).pairwise(images, args.batch_size)
        write_matrix_csv(args.out, names, matrix)
        if args.out:
            print(f"wrote the {len(names)}x{len(names)} distance matrix to {args.out}")
        return
    pairs = collect_pairs(args.path0, args.path1)
    if args.shard:
        pairs = shard_pairs(pairs, parse_shard(args.shard), args.batch_size)
    single = len(pairs) == 1 and args.path1 is not None and not os.path.isdir(args.path0)
    heatmaps = None
    if args.spatial:
        if single and not args.spatial.lower().endswith(".png"):
            raise ValueError(f"--spatial must name a .png file for two images. Received: {args.spatial!r}")
        heatmaps = [args.spatial] if single else [os.path.join(args.spatial, heatmap_filename(p)) for p in pairs]
    metric = load_metric(args.net, model_path=args.model, version=args.version, preset=args.preset)
    if single:
        distances = compute_distances(metric, pairs, heatmap_paths=heatmaps, progress=False)
        if args.out:
            write_csv(args.out, pairs, distances)
            print(f"wrote 1 distance(s) to {args.out}")
        print(f"{distances[0]:.6f}")
        return
    computed = write_distances(metric, pairs, args.out, resume=args.resume, batch_size=args.batch_size,
                               heatmap_paths=heatmaps)
    if args.out:
        resumed = f" ({len(pairs) - computed} resumed from {args.out}.partial)" if computed < len(pairs) else ""
        print(f"wrote {len(pairs)} distance(s) to {args.out}{resumed}")


def _add_preset(sub) -> None:
    p = sub.add_parser("preset", help="Built-in presets, and saving a metric as a preset folder.")
    actions = p.add_subparsers(dest="preset_command", required=True)
    actions.add_parser("list", help="the built-in preset names").set_defaults(func=_run_preset_list)
    save = actions.add_parser("save", help="a .keras metric (e.g. runs/.../metric.keras) -> a preset folder")
    save.add_argument("model", help="the metric, a .keras file")
    save.add_argument("out_dir", help="the preset folder to write (must not exist or be empty)")
    save.set_defaults(func=_run_preset_save)


def _run_preset_list(args) -> None:
    from keras_percept.presets import PRESETS

    width = max(len(name) for name in PRESETS)
    for name, row in PRESETS.items():
        print(f"{name:<{width}}  {row.description}")


def _run_preset_save(args) -> None:
    import keras

    import keras_percept  # noqa: F401  (registers custom objects)
    from keras_percept.presets import save_to_preset

    if not os.path.isfile(args.model):
        raise FileNotFoundError(f"Model file not found: {args.model!r}")
    save_to_preset(keras.saving.load_model(args.model), args.out_dir)
    print(f"saved preset {args.out_dir} (load it with from_preset({args.out_dir!r}))")


def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="PyTorch LPIPS/torchvision weights -> a .keras metric.")
    p.add_argument("--net", required=True, choices=NETS)
    p.add_argument("--version", default="0.1", choices=("0.1", "0.0"))
    p.add_argument("--trunk-weights", default="imagenet",
                   help="'imagenet' (download torchvision's / the shipped EfficientNet), 'published' "
                        "(alex-st / vgg-st: the stlpips-pytorch file), a .pth path, or 'none'")
    p.add_argument("--lin-weights", default="official", help="'official', a .pth path, or 'none'")
    p.add_argument("--baseline", action="store_true", help="no linear layers (lpips=False)")
    p.add_argument("-o", "--output", required=True, help="output .keras file")
    p.set_defaults(func=_run_convert)


def _run_convert(args) -> None:
    from keras_percept.convert import convert_lpips

    none = lambda v: None if v.lower() == "none" else v  # noqa: E731
    convert_lpips(args.net, version=args.version, trunk_weights=none(args.trunk_weights),
                  lin_weights=none(args.lin_weights), lpips=not args.baseline, output=args.output)
    print(f"saved {args.output}")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="Distances and heatmaps on real photos shipped with scikit-image (offline).")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--net", default=DEFAULT_NET, choices=NETS)
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> None:
    from keras_percept.demo import run_demo

    run_demo(args.out, net=args.net)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="A .keras metric -> a TensorFlow SavedModel (TensorFlow/JAX backend) or an "
                                      "ONNX file (TensorFlow backend) for serving.")
    p.add_argument("model", help="the metric, a .keras file")
    p.add_argument("out", help="output: a SavedModel folder (must not exist or be empty, unless --overwrite) "
                               "or, with --format onnx, a file such as alex.onnx")
    p.add_argument("--format", choices=("savedmodel", "onnx"), default="savedmodel",
                   help="savedmodel (default; TF Serving, tf.saved_model.load) or onnx (onnxruntime; needs "
                        "the onnx extra)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="fix the input size (default: any size)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.set_defaults(func=_run_export)


def _run_export(args) -> None:
    from keras_percept.export import SIGNATURE_KEY, export_onnx, export_saved_model

    if args.format == "onnx":
        export_onnx(args.model, args.out, image_shape=args.image_size, overwrite=args.overwrite)
        print(f"exported {args.out} (ONNX: x0, x1 -> distance)")
        return
    export_saved_model(args.model, args.out, image_shape=args.image_size, overwrite=args.overwrite)
    print(f"exported {args.out} (signature {SIGNATURE_KEY!r}: x0, x1 -> distance)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-percept", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_distance(sub)
    _add_convert(sub)
    _add_demo(sub)
    _add_export(sub)
    _add_preset(sub)
    from keras_percept.training.commands import add_evaluate, add_train

    add_train(sub)
    add_evaluate(sub)
    from keras_percept.iqa.commands import add_iqa

    add_iqa(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, ImportError) as err:
        print(f"keras-percept: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
