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

import os
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)


def _bert_pipeline(model: models.WordPiece, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(model)
    # strip_accents=None follows `lowercase`, as BERT's BasicTokenizer(do_lower_case).
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=CONTINUATION_PREFIX)
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool = True) -> WordPieceTokenizer:
    """Train a WordPiece vocabulary of ``vocab_size`` tokens on ``texts``.

    The special tokens come first, in BERT's order: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3,
    [MASK]=4; then the single characters seen in ``texts``, then merged pieces by frequency.
    The result may be smaller than ``vocab_size`` when the text has too few distinct pieces.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} leaves no room for text tokens after the "
                         f"{len(SPECIAL_TOKENS)} special tokens; use e.g. 8000 (BERT: 30522)")
    tok = _bert_pipeline(models.WordPiece(unk_token=UNK, continuing_subword_prefix=CONTINUATION_PREFIX),
                         lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        continuing_subword_prefix=CONTINUATION_PREFIX,
                                        show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return WordPieceTokenizer(tok, lowercase=lowercase)
