"""What the language-model examples share, none of it the model or its training: tokenizers by
name, a corpus as one array of token ids, and checkpoint folders.

Tokenizers (``--tokenizer``):

* ``bpe``: a byte-level BPE vocabulary trained on the training documents
  (``fnn.text.BPETokenizer.train``), GPT-2's algorithm with a vocabulary of ``--vocab-size``;
* ``gpt2``: GPT-2's own 50,257-token vocabulary (``fnn.text.gpt2_tokenizer()``);
* ``char``: one token per character of the training text (:class:`CharTokenizer`), the
  character-level setting of nanoGPT's "baby GPT".

A checkpoint folder is a Hugging Face ``save_pretrained`` folder (``config.json`` and
``model.safetensors``, which ``transformers.GPT2LMHeadModel.from_pretrained`` loads), the
tokenizer's files (``vocab.json`` and ``merges.txt``, which ``GPT2TokenizerFast`` loads, or
``char_vocab.json``), the optimizer state (``optimizer.npz``) and ``trainer_state.json`` (the
step, the flags and the loss history), so that ``--resume`` continues the run exactly.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

import fgrad
import fnn
import fnn.models
import fnn.text

__all__ = ["CharTokenizer", "make_tokenizer", "load_tokenizer", "encode_documents", "eot_id",
           "save_checkpoint", "load_checkpoint", "sample", "MODELS", "EOT"]

#: The separator between documents in the BPE and GPT-2 vocabularies.
EOT = "<|endoftext|>"
#: ``--arch`` and ``config.json``'s ``model_type`` -> the fnn model class.
MODELS = {"gpt2": fnn.models.GPT2, "gpt1": fnn.models.GPT1, "openai-gpt": fnn.models.GPT1}
CHAR_VOCAB = "char_vocab.json"


class CharTokenizer:
    """One token per character: ids in sorted order of the characters of the training text.

    Characters that the training text lacks cannot be encoded (a ``ValueError`` names them).

    >>> tok = CharTokenizer.train(["to be, or not"])
    >>> tok.decode(tok.encode("not to be"))
    'not to be'
    """

    def __init__(self, chars):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, texts):
        return cls(sorted(set().union(*map(set, texts))))

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text, allowed_special="all"):
        try:
            return [self.index[c] for c in text]
        except KeyError:
            unknown = sorted(set(text) - set(self.index))
            raise ValueError(f"CharTokenizer.encode: characters {unknown!r} are not in the "
                             f"vocabulary of {self.vocab_size} characters") from None

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)

    def save(self, directory):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, CHAR_VOCAB), "w", encoding="utf-8") as f:
            json.dump(self.chars, f, ensure_ascii=False)

    @classmethod
    def from_pretrained(cls, directory):
        with open(os.path.join(directory, CHAR_VOCAB), encoding="utf-8") as f:
            return cls(json.load(f))


def eot_id(tokenizer):
    """The id of the end-of-text token, or ``None`` for a vocabulary without one (characters)."""
    if isinstance(tokenizer, CharTokenizer):
        return None
    ids = tokenizer.encode(EOT, allowed_special="all")
    return ids[0] if len(ids) == 1 else None


def make_tokenizer(kind, train_texts, vocab_size=None):
    """The tokenizer ``kind`` (``"bpe"``, ``"gpt2"`` or ``"char"``) for ``train_texts``."""
    if kind == "char":
        return CharTokenizer.train(train_texts)
    if kind == "gpt2":
        return fnn.text.gpt2_tokenizer()
    if kind == "bpe":
        return fnn.text.BPETokenizer.train(train_texts, vocab_size, special_tokens=(EOT,))
    raise ValueError(f"make_tokenizer: kind must be 'bpe', 'gpt2' or 'char', got {kind!r}")


def load_tokenizer(directory):
    """The tokenizer saved in a checkpoint folder: ``char_vocab.json``, or ``vocab.json`` plus
    ``merges.txt`` (ours or a Hugging Face GPT-2 folder's)."""
    if os.path.isfile(os.path.join(directory, CHAR_VOCAB)):
        return CharTokenizer.from_pretrained(directory)
    if all(os.path.isfile(os.path.join(directory, f)) for f in ("vocab.json", "merges.txt")):
        return fnn.text.BPETokenizer.from_pretrained(directory)
    raise FileNotFoundError(f"{directory} holds no tokenizer ({CHAR_VOCAB}, or vocab.json and "
                            f"merges.txt); pass --tokenizer gpt2 to use GPT-2's vocabulary")


def encode_documents(tokenizer, texts):
    """All ``texts`` as one int32 array of ids, each document followed by the end-of-text token
    where the vocabulary has one (BPE, GPT-2), so the model learns where a play ends."""
    end = eot_id(tokenizer)
    eot = [] if end is None else [end]
    pieces = [np.asarray(tokenizer.encode(text, allowed_special=set()) + eot, dtype=np.int32)
              for text in texts]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int32)


def sample(model, params, prompt, max_new_tokens, *, key, temperature=0.8, top_k=None,
           top_p=None, eos_token_id=None):
    """``prompt + new`` ids (a list): ``fnn.models.generate`` with a sliding context window.

    A model sees at most ``n_positions`` tokens. Past that, as nanoGPT's ``generate`` does,
    the context becomes the latest tokens: here the last half window, from which one more
    ``generate`` call (a fresh KV cache) continues, with its own key ``fold_in(key, chunk)``.
    Stops early at ``eos_token_id``.
    """
    window = model.config.n_positions
    out = list(prompt)
    chunk = 0
    while max_new_tokens > 0:
        context = out[-(window // 2):] if len(out) + 1 > window else out
        n = min(max_new_tokens, window - len(context))
        new = fnn.models.generate(model, params, [context], n,
                                  key=fgrad.random.fold_in(key, chunk) if key is not None else None,
                                  temperature=temperature, top_k=top_k, top_p=top_p,
                                  eos_token_id=() if eos_token_id is None else eos_token_id)
        new = np.asarray(new[0]).tolist()[len(context):]
        if eos_token_id is not None and eos_token_id in new:
            out += new[:new.index(eos_token_id)]
            break
        out += new
        max_new_tokens -= len(new)
        chunk += 1
    return out


def save_checkpoint(directory, model, params, tokenizer, opt_state, trainer_state):
    """Write a checkpoint folder (see the module docstring), replacing one that exists.

    The files are written into a fresh folder beside ``directory`` that is then renamed over
    it, so an interrupted save never leaves a half-written checkpoint behind.
    """
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".checkpoint.", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)          # mkdtemp makes it 0700; a folder gets 0755
    model.save_pretrained(staging, params)
    tokenizer.save(staging)
    fnn.io.save(os.path.join(staging, "optimizer.npz"), opt_state)
    with open(os.path.join(staging, "trainer_state.json"), "w") as f:
        json.dump(trainer_state, f, indent=1)
    old = None
    if os.path.exists(directory):
        old = tempfile.mkdtemp(prefix=".old-checkpoint.", dir=parent)
        os.replace(directory, os.path.join(old, "checkpoint"))
    os.replace(staging, directory)
    if old is not None:
        shutil.rmtree(old)


def load_checkpoint(directory, dtype=np.float32):
    """``(model, params, tokenizer)`` from a checkpoint folder: ours, or any Hugging Face GPT-2
    / GPT-1 ``save_pretrained`` folder (the tokenizer is ``None`` when it has none)."""
    with open(os.path.join(directory, "config.json")) as f:
        model_type = json.load(f).get("model_type", "gpt2")
    if model_type not in MODELS:
        raise ValueError(f"{directory}/config.json: model_type {model_type!r} is not one of "
                         f"{sorted(MODELS)}")
    model, params = MODELS[model_type].from_pretrained(directory, dtype=dtype)
    try:
        tokenizer = load_tokenizer(directory)
    except FileNotFoundError:
        tokenizer = None
    return model, params, tokenizer
