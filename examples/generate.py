"""Sample text from a GPT checkpoint folder: one that ``examples.gpt2`` wrote, or any Hugging
Face GPT-2 / GPT-1 ``save_pretrained`` folder (``config.json`` + ``model.safetensors``).

    python -m examples.generate --checkpoint runs/gpt2/checkpoint --prompt "ROMEO"
    python -m examples.generate --checkpoint DIR --prompt "To be" --temperature 0   # greedy
    python -m examples.generate --checkpoint HF_DIR --tokenizer gpt2 --prompt "Hello"

Decoding runs ``fnn.models.generate``: the prompt fills a key/value cache (a pytree returned
by each step, not hidden state), then each new token costs one position of attention over
the cache. Past the model's context (``n_positions``) the window slides
(``examples.lm.sample``). ``--temperature 0`` is greedy decoding; ``--top-k`` and ``--top-p`` restrict the
sampling; every draw comes from ``--seed``'s ``fgrad.random`` key.
"""
from __future__ import annotations

import argparse
import sys

import fgrad
import fnn.text

from . import lm


def make_parser():
    parser = argparse.ArgumentParser(prog="python -m examples.generate",
                                     description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--checkpoint", required=True, help="a checkpoint folder (ours or Hugging Face's)")
    add("--prompt", default="\n", help="the text to continue")
    add("--max-new-tokens", type=int, default=200, help="tokens to generate per sample")
    add("--num-samples", type=int, default=1, help="samples to draw")
    add("--temperature", type=float, default=0.8, help="softmax temperature (0: greedy)")
    add("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    add("--top-p", type=float, default=None, help="sample from the smallest set of tokens "
                                                  "whose probability reaches p")
    add("--tokenizer", choices=("checkpoint", "gpt2"), default="checkpoint",
        help="the folder's own tokenizer, or GPT-2's vocabulary")
    add("--seed", type=int, default=0, help="seed of the sampling key")
    return parser


def main(argv=None):
    """Print ``--num-samples`` continuations of ``--prompt``; returns them as a list."""
    args = make_parser().parse_args(argv)
    model, params, tokenizer = lm.load_checkpoint(args.checkpoint)
    if args.tokenizer == "gpt2":
        tokenizer = fnn.text.gpt2_tokenizer()
    elif tokenizer is None:
        raise SystemExit(f"{args.checkpoint} has no tokenizer files; pass --tokenizer gpt2")
    prompt = tokenizer.encode(args.prompt)
    if not prompt:
        raise SystemExit("--prompt encodes to no tokens; give at least one character")
    eos = lm.eot_id(tokenizer)
    key = fgrad.random.key(args.seed)
    samples = []
    for i in range(args.num_samples):
        ids = lm.sample(model, params, prompt, args.max_new_tokens,
                        key=fgrad.random.fold_in(key, i), temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, eos_token_id=eos)
        text = tokenizer.decode(ids)
        samples.append(text)
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(text)
    return samples


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
