"""Prepare a dataset once, so that training reads it from disk and never downloads.

    python scripts/prepare_data.py NAME [--data_dir DIR]
    python scripts/prepare_data.py image_folder --src IMAGES --data_dir OUT [--image_size 64]

NAME:
  cifar10, cifar100, stl10   tensorflow-datasets download + build (needs network) into
                             DIR (default: tfds' ~/tensorflow_datasets); then train with
                             --config.data.data_dir=DIR.
  imagenet2012               built from the two tar files you download by hand from
                             https://image-net.org (registration); put them first in
                             DIR/downloads/manual/ILSVRC2012_img_train.tar and
                             DIR/downloads/manual/ILSVRC2012_img_val.tar. Written as ArrayRecord
                             (file_format='array_record'): jaxssl reads ImageNet by index.
                             Needs ~300 GB of free disk and hours of CPU.
  lm1b, wikipedia/20230601.en, c4 ...
                             a text corpus for masked-language pretraining (any tfds text
                             dataset; wikipedia needs apache-beam and mwparserfromhell).
  image_folder               your own images, --src DIR with one sub-folder per class (or a
                             flat folder: unlabelled), resized to --image_size and written to
                             --data_dir as arrays, or (--storage=sharded, automatic above 2 GiB
                             of pixels) as ArrayRecord shards of the encoded files read like
                             ImageNet; unreadable files are skipped and named (--strict
                             refuses them); no network (jaxssl.data.image_folder).
                             Train with --config.data.name=image_folder
                             --config.data.data_dir=OUT.

File formats: the image datasets are built as ArrayRecord, which jaxssl reads through tfds'
random-access data source (``builder.as_data_source``) without TensorFlow; text corpora in
tfds' default TFRecord format, which the corpus reader streams with ``builder.as_dataset``
(TensorFlow). Preparing always needs TensorFlow (``pip install -e '.[data]'``); without it the
script says so in one line and exits 1. The script prints where the files go first.
"""
from __future__ import annotations

import argparse
import os
import sys

IMAGE_DATASETS = ("cifar10", "cifar100", "stl10", "imagenet2012")
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
RANDOM_ACCESS = IMAGE_DATASETS  # read by index (as_data_source, no TensorFlow): ArrayRecord
EXIT_MISSING_FILES = 2
EXIT_ERROR = 1


def _default_tfds_dir() -> str:
    # tfds' default: $TFDS_DATA_DIR, else ~/tensorflow_datasets (tfds.core.constants).
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def imagenet_manual_check(data_dir: str) -> list[str]:
    """Paths of the ImageNet tar files that are missing from ``data_dir/downloads/manual``."""
    manual = os.path.join(data_dir, "downloads", "manual")
    return [os.path.join(manual, f) for f in IMAGENET_MANUAL_FILES
            if not os.path.exists(os.path.join(manual, f))]


def prepare_tfds(name: str, data_dir: str) -> int:
    """Download (unless ImageNet) and build tfds dataset ``name`` in ``data_dir``; exit code."""
    if name == "imagenet2012":
        missing = imagenet_manual_check(data_dir)
        manual = os.path.join(data_dir, "downloads", "manual")
        print(f"imagenet2012: reads the manual downloads in {manual}/")
        if missing:
            print("error: ImageNet cannot be downloaded automatically. Register at "
                  "https://image-net.org/download-images, download the ILSVRC2012 training and "
                  "validation archives, and place them here first:", file=sys.stderr)
            for path in missing:
                print(f"  missing: {path}", file=sys.stderr)
            print(f"then rerun: python scripts/prepare_data.py imagenet2012 --data_dir {data_dir}",
                  file=sys.stderr)
            return EXIT_MISSING_FILES
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from jaxssl import optional

    tf = optional.require("tensorflow", f"preparing {name} (tensorflow-datasets builds it with TensorFlow)")
    tf.config.set_visible_devices([], "GPU")  # TF only decodes and writes files here
    tfds = optional.require("tensorflow_datasets", f"preparing {name}")

    file_format = "array_record" if name in RANDOM_ACCESS else "tfrecord"
    builder = tfds.builder(name, data_dir=data_dir, file_format=file_format)
    print(f"{name}: {file_format} files; downloads go to {os.path.join(data_dir, 'downloads')}/")
    print(f"{name}: the prepared dataset goes to {builder.data_dir}/")
    if builder.is_prepared():
        print(f"{name}: already prepared; nothing to do")
    else:
        builder.download_and_prepare(download_dir=os.path.join(data_dir, "downloads"))
    sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
    print(f"{name}: ready, splits {sizes}")
    base = name.split("/")[0]
    if base in IMAGE_DATASETS:
        print(f"train with: --config.data.name={base} --config.data.data_dir={data_dir}")
    else:
        print(f"use it as the text corpus of an MLM run: --config.data.name={name} "
              f"--config.data.data_dir={data_dir}")
    return 0


def prepare_folder(args) -> int:
    from jaxssl.data import image_folder

    if args.src is None:
        print("error: image_folder needs --src DIR (your images: one sub-folder per class, "
              "or a flat folder of unlabelled images)", file=sys.stderr)
        return EXIT_MISSING_FILES
    if args.data_dir is None:
        print("error: image_folder needs --data_dir OUT (where the prepared arrays go)",
              file=sys.stderr)
        return EXIT_MISSING_FILES
    print(f"image_folder: reading {os.path.abspath(args.src)}")
    print(f"image_folder: writing {os.path.abspath(args.data_dir)} (--storage={args.storage})")
    meta = image_folder.prepare_image_folder(
        args.src, args.data_dir, image_size=args.image_size, unlabelled=args.unlabelled,
        test_fraction=args.test_fraction, seed=args.split_seed, storage=args.storage,
        shard_size=args.shard_size, strict=args.strict)
    splits = {k: len(v) for k, v in meta["splits"].items()}
    kind = f"{len(meta['classes'])} classes {meta['classes']}" if meta["labelled"] else "unlabelled"
    stored = ("decoded at {0}x{0}x3 in images.npy".format(meta["image_size"])
              if meta["storage"] == "arrays" else f"encoded in {len(meta['shards'])} ArrayRecord "
              "shard(s), cropped on the host when training")
    print(f"image_folder: {meta['num_examples']} images ({kind}), {stored}, splits {splits}"
          + (f"; skipped {len(meta['skipped'])} unreadable: {', '.join(meta['skipped'][:5])}"
             if meta["skipped"] else ""))
    print(f"train with: --config.data.name=image_folder --config.data.data_dir={args.data_dir}"
          + ("" if meta["labelled"] else " --config.eval.enabled=False"))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("name", help="cifar10 | cifar100 | stl10 | imagenet2012 | a tfds text "
                        "dataset (lm1b, wikipedia/20230601.en, ...) | image_folder")
    parser.add_argument("--data_dir", default=None,
                        help="tfds data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets); "
                        "for image_folder: the output folder (required)")
    parser.add_argument("--src", default=None, help="image_folder: the folder of your images")
    parser.add_argument("--image_size", type=int, default=64,
                        help="image_folder: side S of the stored S x S images (default 64)")
    parser.add_argument("--unlabelled", action="store_true",
                        help="image_folder: ignore sub-folders as classes; all images unlabelled")
    parser.add_argument("--test_fraction", type=float, default=0.2,
                        help="image_folder: stratified held-out fraction of a labelled folder")
    parser.add_argument("--split_seed", type=int, default=0, help="image_folder: split seed")
    parser.add_argument("--storage", default="auto", choices=["auto", "arrays", "sharded"],
                        help="image_folder: 'arrays' (decoded, in memory when training), "
                        "'sharded' (ArrayRecord shards of the encoded files, streamed and "
                        "cropped on the host; bounded memory, resumable), 'auto' (arrays up to "
                        "2 GiB of pixels)")
    parser.add_argument("--shard_size", type=int, default=1024,
                        help="image_folder --storage=sharded: files per shard")
    parser.add_argument("--strict", action="store_true",
                        help="image_folder: refuse an unreadable file instead of skipping it")
    args = parser.parse_args(argv)
    from jaxssl import cli

    try:
        if args.name == "image_folder":
            return prepare_folder(args)
        return prepare_tfds(args.name, os.path.abspath(args.data_dir or _default_tfds_dir()))
    except (ImportError, ValueError) as err:  # a missing package or a bad argument: one line
        line = cli.user_error_line(err)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
