"""The packed train / held-out arrays of a masked-language run, built from the config's ``data``.

``load_text_data(data_cfg, seed)`` reads the corpus, obtains a WordPiece vocabulary and packs
both splits into ``[S, T]`` rows (:func:`jaxssl.data.text.tokenize_and_pack`)::

    corpus (data.name)                 'pydoc': the embedded Python documentation (fixed split)
                                       else a prepared tfds text dataset (lm1b, wikipedia/..., c4)
    vocabulary                         data.vocab_file (BERT's vocab.txt format) if set, else
                                       WordPiece trained on the TRAIN split only (data.vocab_size)
    rows                               data.seq_len tokens, [CLS] ... [SEP], single segment or
                                       sentence pairs (data.sentence_pairs), padded

Why the trained vocabulary is cached on disk. Training it (:func:`jaxssl.data.text.train_wordpiece`,
deterministic: the same text and settings give the same vocabulary everywhere) takes seconds on
the embedded corpus and longer on a large one, and a resume or an evaluation must tokenize
exactly as the run did. The first run trains it on process 0 and writes
``<cache_dir>/vocab/<corpus>-<key>/vocab.txt``, where ``key`` hashes the trainer's version, the
training text, ``vocab_size`` and ``lowercase``; every later run with the same corpus and
settings (a resume, ``scripts/evaluate.py``, another workdir) reads that file, and process 0's
vocabulary is broadcast to every other process, so hosts never disagree. ``cache_dir`` is
``data.cache_dir``, else ``$JAXSSL_CACHE_DIR``, else ``~/.cache/jaxssl``. The method also copies
the vocabulary to ``WORKDIR/vocab.txt`` (pass it as ``--config.data.vocab_file`` to reuse it
anywhere).

Whole splits are held in host memory and then on the device (the trainer's ``DeviceFeeder``):
right for the embedded corpus and for tfds text capped by ``data.max_train_documents``; a
Wikipedia-scale run needs an offline packed-array pipeline instead.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import tempfile

import jax
import numpy as np

from jaxssl.data import corpus, text
from jaxssl.data.tokenizer import WordPieceTokenizer

PYDOC = "pydoc"
ROW_FIELDS = ("ids", "segment_ids", "attention_mask", "special", "word_start")


def data_defaults() -> dict:
    """The ``data`` fields of a masked-language config and their defaults (a preset overrides)."""
    return dict(
        name=PYDOC,               # 'pydoc' | a tfds text dataset: 'lm1b', 'wikipedia/20230601.en', 'c4'
        seq_len=128,              # T, tokens per row including [CLS]/[SEP] (BERT: 128, then 512)
        sentence_pairs=False,     # [CLS] A [SEP] B [SEP] rows with segment ids (BERT) vs one segment
        vocab_file="",            # BERT vocab.txt to use; '' trains WordPiece on the train split
        vocab_size=8000,          # size of the trained vocabulary (ignored with vocab_file)
        lowercase=True,           # uncased normaliser (must match vocab_file's vocabulary)
        include_modules=True,     # pydoc: add standard-library module docstrings to the topics
        text_key="",              # tfds: the text feature ('' = the dataset's known text field)
        max_train_documents=0,    # tfds: read at most this many train documents (0 = all)
        max_test_documents=0,     # tfds: ... and held-out documents (0 = all)
        cache_dir="",             # trained-vocabulary cache ('' = $JAXSSL_CACHE_DIR or ~/.cache/jaxssl)
    )


@dataclasses.dataclass(frozen=True, eq=False)
class TextData:
    """Packed rows of both splits and the vocabulary that produced them.

    Attributes:
      train, test: ``{name: np.ndarray [S, T]}`` with :data:`ROW_FIELDS` (ids, segment_ids,
        attention_mask int32; special, word_start bool), as :func:`jaxssl.data.packing.pack_documents`.
      tokenizer: the WordPiece tokenizer (``vocab_size``, ``mask_id``, ...).
      vocab_path: the ``vocab.txt`` the tokenizer was read from (data.vocab_file or the cache).
      most_frequent_id: the most frequent non-special token id of the TRAIN rows (the
        "always predict the commonest token" baseline of the evaluator).
    """
    train: dict
    test: dict
    tokenizer: WordPieceTokenizer
    vocab_path: str
    most_frequent_id: int


def _splits(data_cfg) -> tuple[str, str]:
    return (data_cfg.train_split or "train", data_cfg.test_split or "test")


def read_documents(data_cfg, split_role: str) -> list[str]:
    """Documents of the ``'train'`` or ``'test'`` role of the configured corpus."""
    if data_cfg.name == PYDOC:
        return corpus.load_pydoc_corpus(split_role, include_modules=bool(data_cfg.include_modules))
    train_split, test_split = _splits(data_cfg)
    split = train_split if split_role == "train" else test_split
    cap = int(data_cfg.max_train_documents if split_role == "train" else data_cfg.max_test_documents)
    return corpus.load_tfds_text(data_cfg.name, split, data_cfg.data_dir,
                                 text_key=data_cfg.text_key or None, max_documents=cap or None)


def default_cache_dir() -> str:
    return os.environ.get("JAXSSL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxssl")


def vocab_cache_path(cache_dir: str, corpus_name: str, train_docs: list[str], vocab_size: int,
                     lowercase: bool) -> str:
    """``<cache_dir>/vocab/<corpus>-<sha256(trainer, text, size, case)[:16]>/vocab.txt``.

    ``trainer`` names :func:`jaxssl.data.text.train_wordpiece`'s algorithm ('wordpiece-det': the
    deterministic one), so a vocabulary cached by an earlier trainer (Hugging Face's, whose ids
    differ from run to run) is never reused in its place.
    """
    h = hashlib.sha256(f"wordpiece-det|{vocab_size}|{int(lowercase)}|{len(train_docs)}|".encode())
    for doc in train_docs:
        h.update(doc.encode("utf-8"))
        h.update(b"\x00")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", corpus_name)
    return os.path.join(cache_dir, "vocab", f"{safe}-{h.hexdigest()[:16]}", "vocab.txt")


def _write_atomically(tokenizer: WordPieceTokenizer, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    os.close(fd)
    try:
        tokenizer.save_vocab(tmp)
        os.replace(tmp, path)  # a concurrent reader sees the old file or the whole new one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _broadcast_text(value: str | None) -> str:
    """Process 0's string on every process (a no-op with one process)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    payload = (value or "").encode("utf-8") if jax.process_index() == 0 else b""
    n = int(multihost_utils.broadcast_one_to_all(np.int64(len(payload))))
    buf = np.zeros((n,), np.uint8)
    if jax.process_index() == 0:
        buf[:] = np.frombuffer(payload, np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(buf))).decode("utf-8")


def obtain_vocabulary(data_cfg, train_docs: list[str]) -> tuple[WordPieceTokenizer, str]:
    """``(tokenizer, vocab.txt path)``: data.vocab_file, or the cached / newly trained vocabulary.

    Training (process 0 only, on the TRAIN documents only) happens when the cache has no
    vocabulary for this text and these settings; see the module docstring for why it is cached.
    """
    lowercase = bool(data_cfg.lowercase)
    if data_cfg.vocab_file:
        return WordPieceTokenizer.from_vocab_file(data_cfg.vocab_file, lowercase), data_cfg.vocab_file
    path = vocab_cache_path(data_cfg.cache_dir or default_cache_dir(), data_cfg.name, train_docs,
                            int(data_cfg.vocab_size), lowercase)
    vocab_text = None
    if jax.process_index() == 0:
        if not os.path.isfile(path):
            _write_atomically(text.train_wordpiece(train_docs, int(data_cfg.vocab_size), lowercase), path)
        with open(path, encoding="utf-8") as f:
            vocab_text = f.read()
    vocab_text = _broadcast_text(vocab_text)
    if jax.process_index() != 0:  # read exactly process 0's vocabulary
        path = os.path.join(tempfile.mkdtemp(prefix="jaxssl_vocab_"), "vocab.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(vocab_text)
    return WordPieceTokenizer.from_vocab_file(path, lowercase), path


def most_frequent_token(rows: dict) -> int:
    """The commonest token id among the non-special positions of ``rows`` (ties: smallest id)."""
    ids = rows["ids"][~rows["special"]]
    if ids.size == 0:
        raise ValueError("the training rows hold no non-special token; the corpus is empty")
    return int(np.bincount(ids).argmax())


_KEY_FIELDS = tuple(data_defaults()) + ("data_dir", "train_split", "test_split")


@functools.lru_cache(maxsize=4)
def _load_cached(data_cfg_items: tuple, seed: int) -> TextData:
    cfg = _AttrDict(data_cfg_items)
    train_docs = read_documents(cfg, "train")
    test_docs = read_documents(cfg, "test")
    if not train_docs or not test_docs:
        raise ValueError(f"data.name={cfg.name!r} gave {len(train_docs)} train and {len(test_docs)} "
                         "held-out documents; both splits need documents (check the split names "
                         "and data.max_*_documents)")
    tokenizer, path = obtain_vocabulary(cfg, train_docs)
    pack = functools.partial(text.tokenize_and_pack, tokenizer, seq_len=int(cfg.seq_len),
                             sentence_pairs=bool(cfg.sentence_pairs), seed=seed)
    train, test = pack(train_docs), pack(test_docs)
    for rows in (train, test):
        for a in rows.values():
            a.setflags(write=False)
    return TextData(train=train, test=test, tokenizer=tokenizer, vocab_path=path,
                    most_frequent_id=most_frequent_token(train))


class _AttrDict(dict):
    """A hashable snapshot of the data config with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def load_text_data(data_cfg, seed: int) -> TextData:
    """Packed train/test rows for ``data_cfg`` (cached in-process: a second Setup is free).

    ``seed`` seeds the sentence-pair split points (``pack_documents``); rows are otherwise a
    pure function of the corpus and the vocabulary.
    """
    missing = [k for k in _KEY_FIELDS if k not in data_cfg]
    if missing:
        raise ValueError(f"config section data lacks the text fields {missing}; start the preset "
                         "from jaxssl.methods.mlm.mlm_base_config()")
    return _load_cached(tuple((k, data_cfg[k]) for k in _KEY_FIELDS), int(seed))
