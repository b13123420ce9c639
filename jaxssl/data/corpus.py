"""Text corpora for masked-language pretraining: an embedded default and tensorflow-datasets sources.

Embedded default (no download): the documentation that ships with Python.

* ``pydoc_data.topics.topics``: the ~80 long help texts behind ``help('FOR')`` etc.
  One document per topic, named ``topic:<name>``.
* The docstrings of the standard-library modules in :data:`PYDOC_MODULES` (a fixed list):
  one document per module, named ``module:<name>``, holding the module docstring followed by
  the docstrings of its public classes and functions (those defined in that module, sorted
  by name).

Held-out split (fixed, by document): documents are sorted by name and every
:data:`HELD_OUT_EVERY`-th one (positions 9, 19, 29, ... of the sorted list) is the ``'test'``
split; the rest is ``'train'``. The split depends only on the names, so it is the same in every
run; the texts themselves are those of the running Python (3.11 and 3.12 differ slightly), read
in a clean interpreter of it (``python -I -S``, a subprocess): a library imported beside jaxssl
that replaces a standard-library function (torch replaces ``inspect.getfile``) would otherwise
change the corpus, its trained vocabulary and every loss.

tensorflow-datasets sources (``wikipedia/20230601.en``, ``c4``, ``lm1b``, ...) are read by
:func:`load_tfds_text` from a prepared ``data_dir``; nothing is downloaded here. TFRecord files
(tfds' default, what ``scripts/prepare_data.py`` writes for text) are read with TensorFlow
(``pip install -e '.[data]'``); a corpus prepared as ArrayRecord is read without it.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import subprocess
import sys
import warnings

HELD_OUT_EVERY = 10

# Standard-library modules whose docstrings extend the embedded corpus (importable without
# side effects on Linux, macOS and Windows).
PYDOC_MODULES = (
    "abc", "argparse", "array", "base64", "bisect", "calendar", "collections", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fractions",
    "functools", "heapq", "inspect", "io", "itertools", "json", "logging", "math", "operator",
    "pathlib", "pickle", "random", "re", "shutil", "statistics", "string", "struct",
    "textwrap", "threading", "typing", "unittest", "uuid", "zipfile",
)

# Text feature of the tfds text datasets this library is used with.
TFDS_TEXT_KEYS = {"wikipedia": "text", "c4": "text", "lm1b": "text"}


def _module_document(name: str) -> str:
    module = importlib.import_module(name)
    parts = [inspect.getdoc(module) or ""]
    with warnings.catch_warnings():  # e.g. typing.io warns when its docstring is read
        warnings.simplefilter("ignore", DeprecationWarning)
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_"):
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # re-exported from elsewhere
            doc = inspect.getdoc(obj)
            if doc:
                parts.append(f"{attr}\n{doc}")
    return "\n\n".join(p for p in parts if p)


@functools.lru_cache(maxsize=1)
def module_documents() -> dict[str, str]:
    """``{module name: document}`` for :data:`PYDOC_MODULES`, read in a clean interpreter.

    This file runs as a script in ``python -I -S`` (no site-packages, no environment variables,
    nothing imported but the standard library), so the texts cannot depend on what else this
    process has imported. Where no subprocess can run, they are read here, with a warning.
    """
    try:
        out = subprocess.run([sys.executable, "-I", "-S", os.path.abspath(__file__), "--module-documents"],
                             capture_output=True, check=True, timeout=120)
        return json.loads(out.stdout.decode("utf-8"))
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        warnings.warn(f"reading the standard-library docstrings of the pydoc corpus in a clean "
                      f"interpreter failed ({type(e).__name__}: {e}); reading them in this process, "
                      "where an imported library that patched a standard-library function changes them")
        return {m: _module_document(m) for m in PYDOC_MODULES}


def pydoc_documents(include_modules: bool = True) -> dict[str, str]:
    """All embedded documents, ``{name: text}`` (``topic:<name>`` and ``module:<name>``).

    Empty texts are dropped, and a text listed under several names is kept once, under the
    first name in sorted order (so no text is in both splits).
    """
    from pydoc_data.topics import topics  # part of the standard library

    candidates = {f"topic:{k}": v for k, v in topics.items()}
    if include_modules:
        candidates.update({f"module:{m}": doc for m, doc in module_documents().items()})
    docs, seen = {}, set()
    for name in sorted(candidates):  # a text listed under two names (e.g. 'if' and 'else') once
        text = candidates[name]
        if text.strip() and text not in seen:
            docs[name] = text
            seen.add(text)
    return docs


def pydoc_split_names(split: str, include_modules: bool = True) -> list[str]:
    """Sorted names of the documents in ``split`` ('train' | 'test'); see the module docstring."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not a split of the pydoc corpus; use 'train' or 'test'")
    names = sorted(pydoc_documents(include_modules))
    held_out = {n for i, n in enumerate(names) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1}
    return [n for n in names if (n in held_out) == (split == "test")]


def load_pydoc_corpus(split: str, include_modules: bool = True) -> list[str]:
    """Documents (one string each) of the embedded Python-documentation corpus, in name order.

    Args:
      split: 'train' (9 of every 10 documents) or 'test' (every 10th, by sorted name).
      include_modules: add one document per module of :data:`PYDOC_MODULES` to the topics.
    """
    docs = pydoc_documents(include_modules)
    return [docs[n] for n in pydoc_split_names(split, include_modules)]


def _import_tfds(name: str):
    """Import tensorflow-datasets and TensorFlow (which reads the TFRecord text files), with
    TensorFlow kept off GPUs/TPUs (JAX owns them); a missing one raises a one-line
    :class:`jaxssl.optional.MissingDependencyError`."""
    from jaxssl import optional

    tf = optional.require("tensorflow", f"reading the tfds text corpus {name!r} (TFRecord files)")
    tfds = optional.require("tensorflow_datasets", f"reading the tfds text corpus {name!r}")
    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):
        pass  # already initialised, or no such device type in this build
    return tfds


def _is_array_record(builder) -> bool:
    try:
        return str(getattr(builder.info.file_format, "value", "")) == "array_record"
    except Exception:  # no metadata
        return False


def check_readable(name: str, data_dir: str | None) -> None:
    """Fail now, with one line, if reading the tfds text corpus ``name`` needs a missing package
    (the command line calls this before any device work)."""
    from jaxssl import optional

    tfds = optional.require("tensorflow_datasets", f"reading the tfds text corpus {name!r}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception:  # unknown name etc.: load_tfds_text reports it
        return
    if not _is_array_record(builder):
        optional.require("tensorflow", f"reading (or preparing) the tfds text corpus {name!r} "
                         "in TFRecord format")


def load_tfds_text(name: str, split: str, data_dir: str | None, text_key: str | None = None,
                   max_documents: int | None = None) -> list[str]:
    """Documents of a prepared tensorflow-datasets text dataset, as a list of strings.

    Args:
      name: tfds name with optional config, e.g. 'wikipedia/20230601.en', 'c4', 'lm1b'.
      split: tfds split string, e.g. 'train', 'train[:1%]', 'test'.
      data_dir: the tfds data directory holding the prepared dataset (None: tfds default).
      text_key: the feature holding the text; default: :data:`TFDS_TEXT_KEYS` for known
        datasets, else the dataset's 'text' feature or its only Text feature.
      max_documents: read at most this many documents (the whole split is held in memory).

    Raises:
      FileNotFoundError: the dataset is not prepared in ``data_dir``; the message gives the
        command that prepares it.
    """
    if max_documents is not None and max_documents < 0:
        raise ValueError(f"max_documents={max_documents} must be >= 0 (or None for all)")
    from jaxssl import optional

    tfds = optional.require("tensorflow_datasets", f"reading the tfds text corpus {name!r}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"text dataset name={name!r} is not a tensorflow-datasets dataset; "
                         f"use e.g. 'wikipedia/20230601.en', 'c4' or 'lm1b'") from e
    features = builder.info.features
    if text_key is None:
        text_key = TFDS_TEXT_KEYS.get(name.split("/")[0])
    if text_key is None:
        text_features = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
        text_key = "text" if "text" in text_features else (
            text_features[0] if len(text_features) == 1 else None)
        if text_key is None:
            raise ValueError(f"cannot tell which feature of {name!r} is the text (features: "
                             f"{sorted(features)}); pass text_key=")
    if text_key not in features:
        raise ValueError(f"text_key={text_key!r} is not a feature of {name!r}; "
                         f"choose one of {sorted(features)}")
    if _is_array_record(builder):  # random access, read without TensorFlow
        source = builder.as_data_source(split)
        n = len(source) if max_documents is None else min(len(source), max_documents)
        texts = (source[i][text_key] for i in range(n))
        return [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in texts]
    tfds = _import_tfds(name)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError as e:  # tfds signals "not prepared" with an AssertionError
        where = data_dir or os.path.expanduser("~/tensorflow_datasets")
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in data_dir={where!r}. Prepare it once with\n"
            f"  tfds build {name} --data_dir={where}\n"
            f"(or python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{name}', data_dir='{where}').download_and_prepare()\"); "
            f"wikipedia and c4 need apache-beam and a lot of disk, lm1b does not.") from e
    ds = ds.map(lambda ex: ex[text_key])
    if max_documents is not None:
        ds = ds.take(max_documents)
    return [t.decode("utf-8") for t in tfds.as_numpy(ds)]


if __name__ == "__main__" and sys.argv[1:] == ["--module-documents"]:  # see module_documents()
    sys.stdout.write(json.dumps({m: _module_document(m) for m in PYDOC_MODULES}))
