"""WordPiece tokenizer for masked-language pretraining (BERT's tokenizer, via Hugging Face `tokenizers`).

The pipeline is BERT's (Devlin et al. 2019, google-research/bert ``tokenization.py``):
``BertNormalizer`` (clean control characters, split CJK characters, lowercase and strip accents
when ``lowercase``) -> ``BertPreTokenizer`` (split on whitespace and punctuation) -> greedy
longest-match-first WordPiece with ``##`` continuation pieces and ``[UNK]`` for a word that
cannot be spelled from the vocabulary.

Vocabulary files use BERT's ``vocab.txt`` format: one token per line, line number = id.
Special-token ids are always looked up by token string (``[PAD]`` is 0 in both BERT's
released vocabularies and the ones trained here, but ``[UNK]/[CLS]/[SEP]/[MASK]`` are
100-103 in bert-base-uncased and 1-4 in a vocabulary trained by :func:`train_wordpiece`).
"""
from __future__ import annotations

import collections
import heapq
import os
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# Order of the special tokens at the start of a freshly trained vocabulary: [PAD]=0 as in BERT.
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
CONTINUATION_PREFIX = "##"


class WordPieceTokenizer:
    """A BERT WordPiece tokenizer: text -> token ids without special tokens (packing adds them).

    Wraps a ``tokenizers.Tokenizer``; build one with :func:`train_wordpiece` or
    :meth:`from_vocab_file`.
    """

    def __init__(self, tokenizer: Tokenizer, lowercase: bool = True):
        self._tok = tokenizer
        self.lowercase = lowercase
        vocab = tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ValueError(
                f"vocabulary lacks the special tokens {missing}; a BERT vocabulary needs all of "
                f"{list(SPECIAL_TOKENS)} (train with train_wordpiece, which adds them first)")
        ids = sorted(vocab.values())
        if ids != list(range(len(ids))):
            raise ValueError(f"vocabulary ids are not contiguous 0..{len(ids) - 1}; "
                             "a vocab.txt cannot represent it")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, lowercase: bool = True) -> "WordPieceTokenizer":
        """Load a BERT ``vocab.txt`` (e.g. bert-base-uncased's, or one written by :meth:`save_vocab`).

        ``lowercase`` must match how the vocabulary was built (True for ``*-uncased``).
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"vocab file {path!r} does not exist; write one with "
                                    "WordPieceTokenizer.save_vocab or pass bert's vocab.txt")
        model = models.WordPiece.from_file(path, unk_token=UNK,
                                           continuing_subword_prefix=CONTINUATION_PREFIX)
        return cls(_bert_pipeline(model, lowercase), lowercase=lowercase)

    def save_vocab(self, path: str | os.PathLike) -> None:
        """Write BERT's ``vocab.txt``: one token per line, line ``i`` (0-based) holds token id ``i``."""
        tokens = [self.id_to_token(i) for i in range(self.vocab_size)]
        bad = [t for t in tokens if not t or any(c in t for c in "\r\n")]
        if bad:
            raise ValueError(f"tokens {bad[:5]!r} cannot be written one per line to {path!r}")
        with open(os.fspath(path), "w", encoding="utf-8") as f:
            f.write("\n".join(tokens) + "\n")

    # ---- vocabulary ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise KeyError(f"token {token!r} is not in the vocabulary (size {self.vocab_size})")
        return i

    def id_to_token(self, i: int) -> str:
        t = self._tok.id_to_token(int(i))
        if t is None:
            raise KeyError(f"id {i} is outside the vocabulary [0, {self.vocab_size})")
        return t

    @property
    def pad_id(self) -> int:
        return self.token_to_id(PAD)

    @property
    def unk_id(self) -> int:
        return self.token_to_id(UNK)

    @property
    def cls_id(self) -> int:
        return self.token_to_id(CLS)

    @property
    def sep_id(self) -> int:
        return self.token_to_id(SEP)

    @property
    def mask_id(self) -> int:
        return self.token_to_id(MASK)

    def continuation_table(self) -> np.ndarray:
        """bool ``[vocab_size]``: True for ``##`` continuation pieces (tokens that do not start a word).

        Index it with token ids to get the complement of ``word_start`` for whole-word masking.
        """
        table = np.zeros((self.vocab_size,), dtype=bool)
        for token, i in self._tok.get_vocab().items():
            table[i] = token.startswith(CONTINUATION_PREFIX) and len(token) > len(CONTINUATION_PREFIX)
        return table

    # ---- text <-> ids -------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no [CLS]/[SEP]; :func:`jaxssl.data.packing.pack_documents` adds them)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts (parallel in the Rust library)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def tokenize(self, text: str) -> list[str]:
        """Token strings of ``text`` (``##`` marks continuation pieces)."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, joining ``##`` pieces onto their word (special tokens dropped)."""
        special = {self.token_to_id(t) for t in SPECIAL_TOKENS}
        return self._tok.decode([int(i) for i in ids if int(i) not in special])


def _bert_pipeline(model: models.WordPiece, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(model)
    # strip_accents=None follows `lowercase`, as BERT's BasicTokenizer(do_lower_case).
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool = True) -> WordPieceTokenizer:
    """Train a WordPiece vocabulary of ``vocab_size`` tokens on ``texts``; the same text gives
    the same vocabulary in every process, on every machine and with every ``tokenizers`` version.

    The algorithm is Hugging Face's ``WordPieceTrainer`` (BERT's pipeline splits the text into
    words; each word starts as its characters, ``##``-prefixed after the first; then, until the
    vocabulary is full, the most frequent adjacent pair of pieces is merged everywhere). Ties
    between equally frequent pairs go to the pair of smaller ids. The order of the ids:

    * the special tokens, in BERT's order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4;
    * the characters seen in ``texts`` (by code point), then their ``##`` continuation forms
      (by code point);
    * the merged pieces, in the order they were merged.

    Why not ``tokenizers.trainers.WordPieceTrainer`` itself: it numbers the ``##`` pieces in
    the iteration order of a hash map with a per-process random seed, and its ties are broken
    by those numbers, so two trainings of the same text give different ids and, on ties, a
    different token set (reported upstream: huggingface/tokenizers#1794) -- and a different BERT run.

    The result may be smaller than ``vocab_size`` when the text has too few distinct pieces.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} leaves no room for text tokens after the "
                         f"{len(SPECIAL_TOKENS)} special tokens; use e.g. 8000 (BERT: 30522)")
    splitter = _bert_pipeline(models.WordPiece(unk_token=UNK), lowercase)
    word_counts: collections.Counter = collections.Counter()
    for text in texts:
        normalized = splitter.normalizer.normalize_str(text)
        word_counts.update(w for w, _ in splitter.pre_tokenizer.pre_tokenize_str(normalized))
    vocab = _wordpiece_vocab(word_counts, vocab_size)
    model = models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token=UNK,
                             continuing_subword_prefix=CONTINUATION_PREFIX)
    return WordPieceTokenizer(_bert_pipeline(model, lowercase), lowercase=lowercase)


def _wordpiece_vocab(word_counts: dict[str, int], vocab_size: int) -> list[str]:
    """The trained vocabulary (token of id ``i`` at position ``i``) of :func:`train_wordpiece`.

    Pair counts are kept incrementally (a merge recounts only the words that hold the pair);
    the heap holds ``(-count, id_a, id_b)`` and stale entries are refreshed when popped.
    """
    words = sorted(word_counts)
    counts = [int(word_counts[w]) for w in words]
    tokens = list(SPECIAL_TOKENS)
    chars = sorted({c for w in words for c in w})
    continuations = sorted({c for w in words for c in w[1:]})
    tokens += chars + [CONTINUATION_PREFIX + c for c in continuations]
    ids = {t: i for i, t in enumerate(tokens)}
    pieces = [[ids[w[0]]] + [ids[CONTINUATION_PREFIX + c] for c in w[1:]] for w in words]

    pair_counts: collections.Counter = collections.Counter()
    where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
    for i, p in enumerate(pieces):
        for pair in zip(p, p[1:]):
            pair_counts[pair] += counts[i]
            where[pair].add(i)
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    while len(tokens) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        n = pair_counts[(a, b)]
        if n != -neg:  # stale: the count fell since this entry was pushed
            if n > 0:
                heapq.heappush(heap, (-n, a, b))
            continue
        if n < 1:
            break
        second = tokens[b]
        if second.startswith(CONTINUATION_PREFIX):
            second = second[len(CONTINUATION_PREFIX):]
        new = tokens[a] + second
        if new not in ids:  # two merge paths can spell the same piece: one id
            ids[new] = len(tokens)
            tokens.append(new)
        new_id = ids[new]
        grown = set()
        for i in where.pop((a, b)):
            old = pieces[i]
            merged, j = [], 0
            while j < len(old):  # left to right, non-overlapping (as Hugging Face's Word.merge)
                if j + 1 < len(old) and old[j] == a and old[j + 1] == b:
                    merged.append(new_id)
                    j += 2
                else:
                    merged.append(old[j])
                    j += 1
            if len(merged) == len(old):
                continue
            for pair in zip(old, old[1:]):
                pair_counts[pair] -= counts[i]
            for pair in zip(merged, merged[1:]):
                pair_counts[pair] += counts[i]
                where[pair].add(i)
                if new_id in pair:
                    grown.add(pair)
            pieces[i] = merged
        for pair in sorted(grown):
            heapq.heappush(heap, (-pair_counts[pair], *pair))
    return tokens
