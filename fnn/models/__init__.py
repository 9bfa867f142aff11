"""Language models on fnn: GPT-1 and GPT-2 with Hugging Face's weights and files, KV-cache
generation.

* :class:`GPT2` / :class:`GPT1` (``transformers.GPT2LMHeadModel`` / ``OpenAIGPTLMHeadModel``)
  with their configurations :class:`GPT2Config` / :class:`GPT1Config` (HF's config.json);
* :func:`lm_loss`, the next-token cross-entropy HF computes from ``labels``;
* :func:`generate`: greedy decoding and sampling (temperature, top-k, top-p) with a KV cache;
  the cache itself is a pytree, :class:`KVCache` (``model.init_cache``, ``model.apply_cached``).
"""
from .gpt import GPT1, GPT2, GPT1Config, GPT2Config, KVCache, lm_loss  # noqa: F401
from .generation import filter_logits, generate  # noqa: F401

__all__ = ["GPT1", "GPT2", "GPT1Config", "GPT2Config", "KVCache", "lm_loss", "generate",
           "filter_logits"]
