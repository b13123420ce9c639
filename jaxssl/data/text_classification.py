"""Sequence-classification examples for fine-tuning BERT: fixed-length arrays in BERT's layout.

``load_classification_split(data_cfg, split, tokenizer)`` returns a :class:`ClassificationSplit`
with ``ids, segment_ids, attention_mask: int32 [N, T]`` and ``label: int32 [N]``, built with the
pretraining run's WordPiece vocabulary in google-research/bert ``run_classifier.py``'s
``convert_single_example`` layout::

    [CLS] A [SEP] [PAD]...              segment ids 0 ...; single-text tasks
    [CLS] A [SEP] B [SEP] [PAD]...      segment ids 0 on [CLS] A [SEP], 1 on B [SEP]; pair tasks

A pair is truncated by ``_truncate_seq_pair`` (pop the last token of the longer text until
``|A| + |B| <= T - 3``, B on ties), a single text to ``T - 2`` tokens; padding has id
``[PAD]``, segment 0 and mask 0. As in BERT, a B text that is empty (or tokenizes to nothing)
gives the single-text layout.

Tasks (``data_cfg.name``):

``pydoc_chapters`` (embedded, no download): which page of the Python documentation a
paragraph of pydoc's help topics comes from. ``pydoc_data.topics`` (the text behind
``help('FOR')``, part of every Python) holds 79 topics, each a section of one reST page of the
CPython documentation; the six pages with the most text are the classes (:data:`PYDOC_PAGES`):
``reference/datamodel``, ``reference/expressions``, ``reference/simple_stmts``,
``reference/compound_stmts``, ``library/stdtypes`` and ``library/pdb``. :data:`PYDOC_TOPIC_PAGE`
maps each of their topics to its page (read off each topic's heading; topics of other pages,
and topics a future Python adds, are not used).

* Examples: the paragraphs (blank-line separated) of those topics, whitespace-normalised
  (``' '.join(p.split())``), with at least :data:`MIN_WORDS` words (drops headings, rules and
  one-line grammar fragments). Aggregate topics repeat their parts ('compound' holds 'if',
  'for', ...), so each distinct paragraph is kept once; a paragraph found on two pages (e.g.
  "See also: ...") is dropped as ambiguous.
* Overlap with pretraining: the embedded masked-language corpus (:mod:`jaxssl.data.corpus`,
  ``bert_pydoc``) contains all 79 topics, so pretraining read this text without its labels,
  the usual self-supervised setting. Its held-out documents (every 10th name) stay held out:
  a paragraph that occurs in no pretraining TRAIN document (on 3.11.7: 68, mostly from
  'comparisons') is not an example, so fine-tuning never trains on the masked-language
  evaluation's text and every example was seen, unlabelled, by pretraining.
* Split (fixed): a paragraph is in ``'test'`` when ``int(sha256(text)[:8], 16) % 4 == 0``
  (about 25%), else in ``'train'``. The rule reads the paragraph's text alone, so it is the
  same in every run and order, and a paragraph that a new Python keeps unchanged keeps its
  split. Which paragraphs exist follows the running Python's ``pydoc_data`` and, through the
  rule above, the pretraining corpus's document names.
* Size and baselines on Python 3.11.7: 930 train / 301 test examples; by class (in
  :data:`PYDOC_PAGES` order) train 280 / 95 / 95 / 190 / 190 / 80, test 79 / 31 / 38 / 61 /
  74 / 18; the majority class (datamodel) scores 0.262 on test, a bag-of-words logistic
  regression (scikit-learn defaults) 0.738. Paragraphs have median 26 words; at T = 128 with
  the ``bert_pydoc`` vocabulary 7% are truncated.

``glue/<task>`` (tensorflow-datasets, prepared in ``data_cfg.data_dir``; nothing is downloaded
here): cola, sst2 (single text); mrpc, qqp, mnli, mnli_matched, mnli_mismatched, qnli, rte,
wnli (pairs, in :data:`GLUE_TASKS`'s field order, which is BERT's text_a / text_b). Classes and
their names come from the tfds ``label`` feature. GLUE test splits are unlabelled (label -1 in
tfds): asking for one is an error, and so is any -1 label. ``glue/stsb`` (regression) and
``glue/ax`` (a test-only diagnostic) are not classification tasks here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Sequence

import numpy as np

from jaxssl.data.tokenizer import WordPieceTokenizer

PYDOC_TASK = "pydoc_chapters"

# Classes of the embedded task: the CPython Doc/ page each pydoc topic is rendered from.
PYDOC_PAGES = (
    "reference/datamodel",
    "reference/expressions",
    "reference/simple_stmts",
    "reference/compound_stmts",
    "library/stdtypes",
    "library/pdb",
)


def _page_topics() -> dict[str, str]:
    topics = {
        "reference/datamodel": "objects types specialnames customization attribute-access "
                               "callable-types sequence-types numeric-types context-managers",
        "reference/expressions": "atom-identifiers atom-literals dict lists attribute-references "
                                 "subscriptions slicings calls await power unary binary shifting "
                                 "bitwise comparisons in booleans lambda exprlists "
                                 "operator-summary conversions",
        "reference/simple_stmts": "assert assignment augassign pass del return yield raise break "
                                  "continue import global nonlocal",
        "reference/compound_stmts": "compound if else while for try with function class async",
        "library/stdtypes": "truth typesseq typesseq-mutable string-methods typesmapping "
                            "typesmodules typesfunctions typesmethods bltin-code-objects "
                            "bltin-type-objects bltin-null-object bltin-ellipsis-object specialattrs",
        "library/pdb": "debugger",
    }
    return {topic: page for page, names in topics.items() for topic in names.split()}


# pydoc topic name -> its page in PYDOC_PAGES (pydoc topics of other pages are not listed).
PYDOC_TOPIC_PAGE = _page_topics()
MIN_WORDS = 8        # shorter paragraphs (headings, rules, grammar fragments) are not examples
TEST_EVERY = 4       # a paragraph is in 'test' when int(sha256[:8], 16) % TEST_EVERY == 0
PYDOC_SPLITS = ("train", "test")

GLUE_PREFIX = "glue/"
# task -> (text fields: (text_a,) or (text_a, text_b), labelled splits). tfds glue.py's features.
_VAL = ("train", "validation")
GLUE_TASKS = {
    "cola": (("sentence",), _VAL),
    "sst2": (("sentence",), _VAL),
    "mrpc": (("sentence1", "sentence2"), _VAL),
    "qqp": (("question1", "question2"), _VAL),
    "mnli": (("premise", "hypothesis"), ("train", "validation_matched", "validation_mismatched")),
    "mnli_matched": (("premise", "hypothesis"), ("validation",)),
    "mnli_mismatched": (("premise", "hypothesis"), ("validation",)),
    "qnli": (("question", "sentence"), _VAL),
    "rte": (("sentence1", "sentence2"), _VAL),
    "wnli": (("sentence1", "sentence2"), _VAL),
}
_GLUE_NOT_CLASSIFICATION = {
    "stsb": "is a regression task (a float similarity score), not classification",
    "ax": "is a test-only diagnostic set without labels",
}


def data_defaults() -> dict:
    """The ``data`` fields :func:`load_classification_split` reads, with their defaults."""
    return dict(
        name=PYDOC_TASK,          # 'pydoc_chapters' (embedded) | 'glue/<task>' (tfds, prepared)
        seq_len=128,              # T, tokens per example including [CLS]/[SEP] (BERT GLUE: 128)
        data_dir="",              # tfds data directory for glue ('' = tfds default)
        lowercase=True,           # uncased vocabulary (when the tokenizer is given as a path)
    )


def eval_split(name: str) -> str:
    """The labelled held-out split of task ``name``: 'test' (pydoc_chapters), 'validation'
    (GLUE dev; 'validation_matched' for mnli)."""
    if name == PYDOC_TASK:
        return "test"
    splits = _glue_task(name)[1]
    return splits[1] if len(splits) > 1 else splits[0]


def _fail(field: str, value, fix: str):
    """Raise the error of a bad config field (``data.*``) or argument (``split``)."""
    kind = "config field " if field.startswith("data.") else "argument "
    raise ValueError(f"{kind}{field}={value!r} is invalid: {fix}")


@dataclasses.dataclass(frozen=True, eq=False)
class ClassificationSplit:
    """One split of a classification task as fixed-length arrays (layout: module docstring).

    Attributes:
      ids, segment_ids, attention_mask: int32 ``[N, T]``; label: int32 ``[N]`` in
        ``[0, num_classes)``.
      label_names: the class names, index = label.
      name, split: the task (``data_cfg.name``) and split they came from.
      text_a, text_b: the raw texts (``text_b`` is None for single-text tasks).
    """
    ids: np.ndarray
    segment_ids: np.ndarray
    attention_mask: np.ndarray
    label: np.ndarray
    label_names: tuple
    name: str
    split: str
    text_a: tuple
    text_b: tuple | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def num_examples(self) -> int:
        return int(self.label.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.ids.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """``{ids, segment_ids, attention_mask, label}``."""
        return {"ids": self.ids, "segment_ids": self.segment_ids,
                "attention_mask": self.attention_mask, "label": self.label}


# ------------------------------------------------------------------------------ BERT layout
def truncated_pair_lengths(len_a: int, len_b: int, max_length: int) -> tuple[int, int]:
    """Lengths BERT's ``_truncate_seq_pair`` leaves (pop from the longer, B on ties).

    Closed form: unchanged if ``len_a + len_b <= m``; else, with ``s = min(len_a, len_b)``,
    the shorter keeps ``s`` and the longer gets ``m - s`` when ``m >= 2 s``, and otherwise
    both meet at ``(ceil(m / 2), floor(m / 2))`` for ``(A, B)``.
    """
    if len_a + len_b <= max_length:
        return len_a, len_b
    short = min(len_a, len_b)
    if max_length >= 2 * short:
        return (len_a, max_length - len_a) if len_a < len_b else (max_length - len_b, len_b)
    return (max_length + 1) // 2, max_length // 2


def encode_examples(tokenizer: WordPieceTokenizer, texts_a: Sequence[str],
                    texts_b: Sequence[str] | None, seq_len: int) -> dict[str, np.ndarray]:
    """BERT's ``convert_single_example`` for many examples: ``{ids, segment_ids, attention_mask}``.

    Args:
      tokenizer: the WordPiece tokenizer of the pretrained model.
      texts_a: N first texts; texts_b: N second texts (pair tasks) or None.
      seq_len: T; at least 3 (single) or 5 (pairs, so that B keeps a token).

    Returns:
      int32 arrays ``[N, T]``.
    """
    min_len = 3 if texts_b is None else 5
    if seq_len < min_len:
        _fail("data.seq_len", seq_len, f"use at least {min_len} for "
              f"{'single-text' if texts_b is None else 'text-pair'} examples (BERT GLUE: 128)")
    n = len(texts_a)
    if texts_b is not None and len(texts_b) != n:
        raise ValueError(f"texts_b has {len(texts_b)} texts for {n} texts_a; pass one per example")
    tok_a = tokenizer.encode_batch(list(texts_a))
    tok_b = tokenizer.encode_batch([t or "" for t in texts_b]) if texts_b is not None else [[]] * n
    ids = np.full((n, seq_len), tokenizer.pad_id, np.int32)
    segment_ids = np.zeros((n, seq_len), np.int32)
    attention_mask = np.zeros((n, seq_len), np.int32)
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    for i, (a, b) in enumerate(zip(tok_a, tok_b)):
        if b:
            la, lb = truncated_pair_lengths(len(a), len(b), seq_len - 3)
            a, b = a[:la], b[:lb]
            row = [cls, *a, sep, *b, sep]
            segment_ids[i, la + 2:len(row)] = 1
        else:
            row = [cls, *a[:seq_len - 2], sep]
        ids[i, :len(row)] = row
        attention_mask[i, :len(row)] = 1
    return {"ids": ids, "segment_ids": segment_ids, "attention_mask": attention_mask}


# ---------------------------------------------------------------------- embedded pydoc task
def _normalise(paragraph: str) -> str:
    return " ".join(paragraph.split())


def paragraph_split(text: str) -> str:
    """'test' or 'train' for a (normalised) paragraph by its hash alone (module docstring)."""
    return "test" if int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % TEST_EVERY == 0 \
        else "train"


def pydoc_chapter_examples() -> list[tuple[str, int, str]]:
    """All examples of the embedded task as ``(paragraph, label, split)``, in topic-name order.

    Labels index :data:`PYDOC_PAGES`; see the module docstring for the rules.
    """
    from pydoc_data.topics import topics  # part of the standard library

    page_of: dict[str, str | None] = {}
    for name in sorted(t for t in topics if t in PYDOC_TOPIC_PAGE):
        for paragraph in re.split(r"\n\s*\n", topics[name]):
            text = _normalise(paragraph)
            if len(text.split()) < MIN_WORDS:
                continue
            page = PYDOC_TOPIC_PAGE[name]
            if text in page_of and page_of[text] != page:
                page_of[text] = None          # on two pages: ambiguous, dropped
            else:
                page_of.setdefault(text, page)
    pretrained_on = pretraining_paragraphs()
    return [(text, PYDOC_PAGES.index(page), paragraph_split(text))
            for text, page in page_of.items() if page is not None and text in pretrained_on]


def pretraining_paragraphs() -> set[str]:
    """The normalised paragraphs of the embedded masked-language corpus's TRAIN documents
    (:func:`jaxssl.data.corpus.load_pydoc_corpus`, with module docstrings, as ``bert_pydoc``)."""
    from jaxssl.data.corpus import load_pydoc_corpus
    return {_normalise(p) for doc in load_pydoc_corpus("train", include_modules=True)
            for p in re.split(r"\n\s*\n", doc)}


def _pydoc_split(split: str, tokenizer: WordPieceTokenizer, seq_len: int) -> ClassificationSplit:
    if split not in PYDOC_SPLITS:
        _fail("split", split, f"task {PYDOC_TASK!r} has the splits {list(PYDOC_SPLITS)}")
    examples = [(t, y) for t, y, s in pydoc_chapter_examples() if s == split]
    texts = tuple(t for t, _ in examples)
    arrays = encode_examples(tokenizer, texts, None, seq_len)
    return ClassificationSplit(label=np.array([y for _, y in examples], np.int32),
                               label_names=PYDOC_PAGES, name=PYDOC_TASK, split=split,
                               text_a=texts, **arrays)


# ------------------------------------------------------------------------------ GLUE (tfds)
def _glue_task(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    task = name[len(GLUE_PREFIX):]
    if task in _GLUE_NOT_CLASSIFICATION:
        _fail("data.name", name, f"GLUE {task} {_GLUE_NOT_CLASSIFICATION[task]}; use one of "
              f"{sorted(GLUE_PREFIX + t for t in GLUE_TASKS)}")
    if task not in GLUE_TASKS:
        _fail("data.name", name, f"use one of {sorted(GLUE_PREFIX + t for t in GLUE_TASKS)} "
              f"or {PYDOC_TASK!r}")
    return GLUE_TASKS[task]


def _glue_split(name: str, split: str, tokenizer: WordPieceTokenizer, seq_len: int,
                data_dir: str | None) -> ClassificationSplit:
    fields, splits = _glue_task(name)
    base = split.split("[")[0]                                  # 'train[:10%]' -> 'train'
    if base.startswith("test"):
        _fail("split", split, f"GLUE test splits are unlabelled (label -1 in tfds) and cannot be "
              f"evaluated here; use {list(splits)} and submit test predictions to "
              "gluebenchmark.com")
    if base not in splits:
        _fail("split", split, f"{name} has the labelled splits {list(splits)} "
              "(optionally sliced, e.g. 'train[:10%]')")
    from jaxssl.data.corpus import _import_tfds
    tfds = _import_tfds(name)
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    label_feature = features["label"]
    if not isinstance(label_feature, tfds.features.ClassLabel):
        _fail("data.name", name, "its label feature is not a class label; use a GLUE "
              "classification task")
    missing = [f for f in fields if f not in features]
    if missing:
        raise ValueError(f"tfds {name!r} lacks the text features {missing} (has {sorted(features)}); "
                         "the installed tensorflow-datasets' GLUE differs from the one this was "
                         "written for")
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except AssertionError as e:  # tfds signals "not prepared" with an AssertionError
        where = data_dir or os.path.expanduser("~/tensorflow_datasets")
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in data_dir={where!r}; prepare it once with\n"
            f"  tfds build {name} --data_dir={where}\n"
            "or set data.data_dir to where it is prepared") from e
    texts = {f: [] for f in fields}
    labels = []
    for ex in tfds.as_numpy(ds):
        for f in fields:
            texts[f].append(ex[f].decode("utf-8"))
        labels.append(int(ex["label"]))
    label = np.array(labels, np.int32)
    if (label < 0).any():
        _fail("split", split, f"{int((label < 0).sum())} examples of {name} have no label (-1); "
              f"evaluate on a labelled split: {list(splits)}")
    text_a = tuple(texts[fields[0]])
    text_b = tuple(texts[fields[1]]) if len(fields) > 1 else None
    arrays = encode_examples(tokenizer, text_a, text_b, seq_len)
    return ClassificationSplit(label=label, label_names=tuple(label_feature.names), name=name,
                               split=split, text_a=text_a, text_b=text_b, **arrays)


# ----------------------------------------------------------------------------- entry point
def load_classification_split(data_cfg, split: str,
                              tokenizer: WordPieceTokenizer | str | os.PathLike) -> ClassificationSplit:
    """One split of the task ``data_cfg.name`` as BERT inputs of length ``data_cfg.seq_len``.

    Args:
      data_cfg: needs ``name`` ('pydoc_chapters' or 'glue/<task>') and ``seq_len``; optional
        ``data_dir`` (glue: the tfds data directory) and ``lowercase`` (used when ``tokenizer``
        is a path).
      split: 'train' | 'test' (pydoc_chapters); a labelled tfds split for glue ('train',
        'validation', mnli 'validation_matched' / 'validation_mismatched', slices allowed).
      tokenizer: the pretrained model's :class:`WordPieceTokenizer`, or the path of its
        ``vocab.txt`` (e.g. the pretraining WORKDIR/vocab.txt).
    """
    name = data_cfg.name
    seq_len = data_cfg.seq_len
    if not isinstance(seq_len, (int, np.integer)) or isinstance(seq_len, bool) or seq_len < 3:
        _fail("data.seq_len", seq_len, "use an integer >= 3 (5 for text pairs; BERT GLUE: 128)")
    if not isinstance(tokenizer, WordPieceTokenizer):
        tokenizer = WordPieceTokenizer.from_vocab_file(
            tokenizer, lowercase=bool(data_cfg.lowercase))
    if name == PYDOC_TASK:
        return _pydoc_split(split, tokenizer, int(seq_len))
    if isinstance(name, str) and name.startswith(GLUE_PREFIX):
        return _glue_split(name, split, tokenizer, int(seq_len), data_cfg.data_dir or None)
    _fail("data.name", name, f"use {PYDOC_TASK!r} (embedded) or one of "
          f"{sorted(GLUE_PREFIX + t for t in GLUE_TASKS)}")


def majority_class_accuracy(train_labels: np.ndarray, eval_labels: np.ndarray) -> float:
    """Accuracy on ``eval_labels`` of always predicting the commonest train label (ties: smallest)."""
    train_labels, eval_labels = np.asarray(train_labels), np.asarray(eval_labels)
    if train_labels.size == 0 or eval_labels.size == 0:
        raise ValueError(f"need train and eval labels; got {train_labels.size} and {eval_labels.size}")
    majority = int(np.bincount(train_labels).argmax())
    return float(np.mean(eval_labels == majority))
