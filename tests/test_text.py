"""Tokenizer, embedded corpus, tfds text source and packing (jaxssl.data.{tokenizer,corpus,packing,text})."""
import numpy as np
import pytest

from jaxssl.data import corpus
from jaxssl.data.packing import pack_documents
from jaxssl.data.text import tokenize_and_pack
from jaxssl.data.tokenizer import WordPieceTokenizer, train_wordpiece

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def train_docs():
    return corpus.load_pydoc_corpus("train")


@pytest.fixture(scope="module")
def tok(train_docs):
    return train_wordpiece(train_docs, vocab_size=1500)


# ---------------------------------------------------------------------------------- tokenizer
def test_trained_vocab_has_specials_first_in_bert_order(tok, tmp_path):
    assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3, 4]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.vocab_size == 1500
    path = tmp_path / "vocab.txt"
    tok.save_vocab(path)
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == tok.vocab_size
    assert lines[:5] == SPECIALS                     # vocab.txt: line number = id
    assert all(tok.token_to_id(t) == i for i, t in enumerate(lines))


def test_save_load_round_trip_gives_identical_ids(tok, tmp_path):
    path = tmp_path / "vocab.txt"
    tok.save_vocab(path)
    loaded = WordPieceTokenizer.from_vocab_file(path, lowercase=True)
    held_out = corpus.load_pydoc_corpus("test")[:3]
    sample = held_out + ["Déjà vu: The QUICK brown fox's __init__() returned 42!"]
    for text in sample:
        assert loaded.encode(text) == tok.encode(text)
    assert loaded.encode_batch(sample) == tok.encode_batch(sample)
    assert loaded.vocab_size == tok.vocab_size


def test_continuation_pieces_and_word_boundaries(tok):
    pieces = tok.tokenize("interpolations unsubscriptable")
    assert any(p.startswith("##") for p in pieces), pieces
    assert not pieces[0].startswith("##")
    table = tok.continuation_table()
    for i in range(tok.vocab_size):
        assert table[i] == tok.id_to_token(i).startswith("##")
    # lowercase + accent stripping (BERT uncased): case and accents do not change ids.
    assert tok.encode("Déjà VU") == tok.encode("deja vu")


def _hf_wordpiece_vocab(texts, vocab_size):
    """Hugging Face's own WordPieceTrainer on BERT's pipeline: the tokens in id order."""
    from tokenizers import models, trainers
    from jaxssl.data.tokenizer import _bert_pipeline
    hf = _bert_pipeline(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"), True)
    hf.train_from_iterator(texts, trainer=trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, continuing_subword_prefix="##",
        show_progress=False))
    return [t for t, _ in sorted(hf.get_vocab().items(), key=lambda kv: kv[1])]


def test_trainer_matches_hugging_face_where_it_has_no_ties():
    # Hugging Face's course example (hug/pug/pun/bun/hugs): no two candidate merges are equally
    # frequent, so its trainer's tokens are fixed; only the ids of its '##' pieces vary from run
    # to run (hash-map order). train_wordpiece numbers them by code point.
    text = ["hug " * 10 + "pug " * 5 + "pun " * 12 + "bun " * 4 + "hugs " * 5]
    ours = train_wordpiece(text, vocab_size=40)
    got = [ours.id_to_token(i) for i in range(ours.vocab_size)]
    assert got == SPECIALS + list("bghnpsu") + ["##g", "##n", "##s", "##u", "##ug", "##un",
                                                "hug", "pun", "pug", "hugs", "bun"]
    for _ in range(3):
        hf = _hf_wordpiece_vocab(text, 40)
        assert hf[:12] + sorted(hf[12:16]) + hf[16:] == got


def _brute_force_wordpiece(words: dict, vocab_size: int) -> list:
    """The trainer's algorithm re-done without bookkeeping: every step recounts every pair of
    every word and merges the most frequent one (ties: the pair of smaller ids) everywhere."""
    tokens = list(SPECIALS) + sorted({c for w in words for c in w})
    tokens += ["##" + c for c in sorted({c for w in words for c in w[1:]})]
    seqs = {w: [tokens.index(w[0])] + [tokens.index("##" + c) for c in w[1:]] for w in words}
    while len(tokens) < vocab_size:
        counts = {}
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] = counts.get(pair, 0) + words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        a, b = best
        new = tokens[a] + tokens[b][2:] if tokens[b].startswith("##") else tokens[a] + tokens[b]
        if new not in tokens:
            tokens.append(new)
        new_id = tokens.index(new)
        for w, seq in seqs.items():
            out, j = [], 0
            while j < len(seq):
                if j + 1 < len(seq) and (seq[j], seq[j + 1]) == best:
                    out.append(new_id)
                    j += 2
                else:
                    out.append(seq[j])
                    j += 1
            seqs[w] = out
    return tokens


def test_trainer_equals_brute_force_recount_and_is_deterministic(train_docs):
    from jaxssl.data.tokenizer import _bert_pipeline
    from tokenizers import models
    docs = train_docs[:2]
    split = _bert_pipeline(models.WordPiece(unk_token="[UNK]"), True)
    words = {}
    for d in docs:
        for w, _ in split.pre_tokenizer.pre_tokenize_str(split.normalizer.normalize_str(d)):
            words[w] = words.get(w, 0) + 1
    first = train_wordpiece(docs, vocab_size=300)
    got = [first.id_to_token(i) for i in range(first.vocab_size)]
    assert got == _brute_force_wordpiece(words, 300)
    again = train_wordpiece(list(reversed(docs)), vocab_size=300)  # document order is irrelevant
    assert [again.id_to_token(i) for i in range(again.vocab_size)] == got


def test_unknown_characters_map_to_unk(tok, train_docs):
    snowman = "\u2603"
    assert not any(snowman in d for d in train_docs)
    assert tok.encode(f"for {snowman} in") == [tok.encode("for")[0], tok.unk_id, tok.encode("in")[0]]


def test_hand_written_bert_vocab_matches_reference_wordpiece(tmp_path):
    # google-research/bert tokenization.py docstring: "unaffable" -> ["un", "##aff", "##able"].
    # Specials are deliberately NOT at 0..4 (as in bert-base-uncased: [UNK]=100 ...).
    vocab = ["[PAD]", "un", "##aff", "##able", "aff", "[UNK]", "runn", "##ing", ",",
             "[CLS]", "[SEP]", "[MASK]", "want", "##ed", "wa"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = WordPieceTokenizer.from_vocab_file(path)
    assert tok.tokenize("Running, UNAFFABLE") == ["runn", "##ing", ",", "un", "##aff", "##able"]
    # 'un' matches but '##want...' is not in the vocab: BERT maps the whole word to [UNK].
    assert tok.tokenize("unwanted") == ["[UNK]"]
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 5, 9, 10, 11)
    assert tok.encode("wanted") == [12, 13]


def test_vocab_without_specials_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\nhello\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        WordPieceTokenizer.from_vocab_file(path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")


# ------------------------------------------------------------------------------------ corpus
def test_pydoc_split_is_fixed_every_tenth_sorted_document():
    docs = corpus.pydoc_documents()
    names = sorted(docs)
    from pydoc_data.topics import topics
    assert set(topics.values()) == {docs[n] for n in names if n.startswith("topic:")}
    assert {f"module:{m}" for m in ("json", "re", "collections")} <= set(names)
    expected_test = names[9::10]
    assert corpus.pydoc_split_names("test") == expected_test
    train = corpus.load_pydoc_corpus("train")
    test = corpus.load_pydoc_corpus("test")
    assert len(train) + len(test) == len(docs) and len(test) == len(docs) // 10
    assert test == [docs[n] for n in expected_test]
    assert set(train).isdisjoint(test)
    assert corpus.load_pydoc_corpus("test") == test      # deterministic
    with pytest.raises(ValueError, match="split='validation'"):
        corpus.load_pydoc_corpus("validation")


def test_module_documents_hold_module_and_member_docstrings():
    import json
    import inspect
    doc = corpus.pydoc_documents()["module:json"]
    assert doc.startswith(inspect.getdoc(json))
    assert inspect.getdoc(json.dumps) in doc


def test_module_documents_ignore_a_library_that_patched_the_standard_library(monkeypatch):
    """torch replaces inspect.getfile with its own function: the corpus (and so the trained
    vocabulary and every BERT loss) must not depend on whether such a library was imported."""
    import inspect
    clean = corpus.module_documents()["inspect"]
    assert "getfile\nWork out which source or compiled file" in clean

    def _patched_getfile(obj):  # what a patching library leaves behind: another module, no doc
        raise AssertionError
    _patched_getfile.__module__ = "some_library"
    monkeypatch.setattr(inspect, "getfile", _patched_getfile)
    corpus.module_documents.cache_clear()
    try:
        assert corpus.module_documents()["inspect"] == clean
        assert corpus._module_document("inspect") != clean  # noqa: SLF001 (what an in-process read gives)
    finally:
        corpus.module_documents.cache_clear()


# ------------------------------------------------------------------------------ tfds source
def test_load_tfds_text_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        docs = corpus.load_tfds_text("lm1b", "train", data_dir=str(tmp_path))
        assert len(docs) == 5 and all(isinstance(d, str) for d in docs)
        assert len(corpus.load_tfds_text("lm1b", "train", str(tmp_path), max_documents=2)) == 2
        wiki = corpus.load_tfds_text("wikipedia/20230601.en", "train", str(tmp_path), max_documents=3)
        titles = corpus.load_tfds_text("wikipedia/20230601.en", "train", str(tmp_path),
                                       text_key="title", max_documents=3)
        assert len(wiki) == 3 and wiki != titles      # the default key is 'text', not 'title'
        with pytest.raises(ValueError, match="text_key='body'"):
            corpus.load_tfds_text("lm1b", "train", str(tmp_path), text_key="body")


def test_load_tfds_text_missing_dataset_names_the_prepare_command(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match=r"tfds build lm1b --data_dir="):
        corpus.load_tfds_text("lm1b", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not a tensorflow-datasets dataset"):
        corpus.load_tfds_text("no_such_text_dataset", "train", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------------- packing
CLS, SEP, PAD = 2, 3, 0


def test_single_segment_packing_layout_by_hand():
    continuation = np.zeros(32, bool)
    continuation[[11, 13, 14]] = True
    out = pack_documents([[10, 11, 12], [13, 14]], 6, CLS, SEP, PAD, continuation=continuation)
    # stream: 10 11 12 [SEP] 13 14 -> chunks of T-2=4: [10 11 12 SEP] [13 14]
    np.testing.assert_array_equal(out["ids"], [[CLS, 10, 11, 12, SEP, SEP],
                                               [CLS, 13, 14, SEP, PAD, PAD]])
    np.testing.assert_array_equal(out["segment_ids"], np.zeros((2, 6)))
    np.testing.assert_array_equal(out["attention_mask"], [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(out["special"], [[1, 0, 0, 0, 1, 1], [1, 0, 0, 1, 1, 1]])
    # 11 is a '##' piece after 10; 13 starts its row (after [CLS]) so it starts a word; 14 continues.
    np.testing.assert_array_equal(out["word_start"], [[1, 1, 0, 1, 1, 1], [1, 1, 0, 1, 1, 1]])
    assert out["ids"].dtype == np.int32 and out["segment_ids"].dtype == np.int32
    assert out["special"].dtype == bool and out["word_start"].dtype == bool


def test_pair_packing_layout_by_hand():
    out = pack_documents([[10, 11, 12, 13, 14], [20]], 6, CLS, SEP, PAD, sentence_pairs=True)
    ids, seg, att, spec = out["ids"], out["segment_ids"], out["attention_mask"], out["special"]
    assert ids.shape == (3, 6)
    # Row 0: window [10 11 12] (T-3 = 3 tokens), split after 1 or 2 tokens.
    a = int(np.flatnonzero(ids[0] == SEP)[0]) - 1
    assert a in (1, 2)
    np.testing.assert_array_equal(ids[0], [CLS] + [10, 11, 12][:a] + [SEP] + [10, 11, 12][a:] + [SEP])
    np.testing.assert_array_equal(seg[0], [0] * (a + 2) + [1] * (4 - a))
    # Row 1: window [13 14]: the only split is after one token.
    np.testing.assert_array_equal(ids[1], [CLS, 13, SEP, 14, SEP, PAD])
    np.testing.assert_array_equal(seg[1], [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(att[1], [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(spec[1], [1, 0, 1, 0, 1, 1])
    # Row 2: a one-token window of the next document: a single segment, never crossing documents.
    np.testing.assert_array_equal(ids[2], [CLS, 20, SEP, PAD, PAD, PAD])
    np.testing.assert_array_equal(seg[2], np.zeros(6))
    np.testing.assert_array_equal(spec[2], [1, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(out["word_start"], np.ones((3, 6), bool))


def test_pair_split_points_are_seeded_deterministic_and_in_range():
    doc = list(range(100, 163))             # 7 full windows of T-3 = 9 tokens
    splits = set()
    for seed in range(8):
        out = pack_documents([doc], 12, CLS, SEP, PAD, sentence_pairs=True, seed=seed)
        again = pack_documents([doc], 12, CLS, SEP, PAD, sentence_pairs=True, seed=seed)
        for k in out:
            np.testing.assert_array_equal(out[k], again[k])
        for row, seg in zip(out["ids"], out["segment_ids"]):
            seps = np.flatnonzero(row == SEP)
            assert len(seps) == 2 and seps[1] == 11          # full windows: T-3 = 9 tokens
            a = seps[0] - 1
            assert 1 <= a <= 8
            splits.add(int(a))
            np.testing.assert_array_equal(seg, [0] * (a + 2) + [1] * (10 - a))
        # A and B are consecutive chunks: dropping specials gives the document back.
        np.testing.assert_array_equal(out["ids"][~out["special"]], doc)
    assert len(splits) > 3


def test_packing_keeps_every_token_once_and_rejects_short_rows():
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(10, 50, size=n)) for n in (7, 0, 13, 1, 30)]
    out = pack_documents(docs, 16, CLS, SEP, PAD)
    real = out["ids"][~out["special"]]
    np.testing.assert_array_equal(real, np.concatenate([d for d in docs if d]))
    assert (out["ids"][:, 0] == CLS).all()
    assert ((out["ids"] == PAD) == (out["attention_mask"] == 0)).all()
    with pytest.raises(ValueError, match="seq_len=4"):
        pack_documents(docs, 4, CLS, SEP, PAD, sentence_pairs=True)


def test_tokenize_and_pack_word_start_follows_tokenizer_pieces(tok):
    docs = ["Interpolation of unsubscriptable objects.", "Short one."]
    out = tokenize_and_pack(tok, docs, 16)
    for row, ws, spec in zip(out["ids"], out["word_start"], out["special"]):
        for j in range(1, 16):
            if not spec[j] and not spec[j - 1]:
                assert ws[j] == (not tok.id_to_token(row[j]).startswith("##"))
    assert (out["ids"][:, 0] == tok.cls_id).all()
    np.testing.assert_array_equal(out["ids"][~out["special"]],
                                  [i for d in tok.encode_batch(docs) for i in d])
