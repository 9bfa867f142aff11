"""GPT-1 and GPT-2 as stateless fnn layers, weight for weight Hugging Face's models.

:class:`GPT2` is ``transformers.GPT2LMHeadModel`` and :class:`GPT1` is
``transformers.OpenAIGPTLMHeadModel``: the same computation, the same parameter names, and the
same files. A model object holds only its frozen :class:`GPT2Config` / :class:`GPT1Config` (the
fields of Hugging Face's ``config.json``); the weights are a nested dict whose dotted names are
the keys of the ``model.safetensors`` file that ``save_pretrained`` writes::

    {"transformer": {"wte": {"weight": (vocab, C)}, "wpe": {"weight": (n_positions, C)},
                     "h": {"0": {"ln_1": {"weight", "bias"},
                                 "attn": {"c_attn": {"weight": (C, 3C), "bias"},
                                          "c_proj": {"weight": (C, C), "bias"}},
                                 "ln_2": {...},
                                 "mlp": {"c_fc": {"weight": (C, inner), "bias"},
                                         "c_proj": {"weight": (inner, C), "bias"}}}, "1": ...},
                     "ln_f": {"weight", "bias"}}}

GPT-1 names its embeddings ``tokens_embed`` / ``positions_embed`` and has no ``ln_f``. The
projections use Hugging Face's ``Conv1D`` layout, weights ``(in, out)``, so a projection is
``x @ W + b`` with no transpose; ``c_attn`` packs the query, key and value projections in
that order. The language-model head is tied to the token embedding (``logits = h @ wte.T``),
so ``lm_head.weight`` is not a parameter (unless ``tie_word_embeddings=False``).

The two architectures, for ``x`` the hidden states and ``d`` dropout::

    GPT-2 (pre-LN):   x = x + d(attn(ln_1(x)));  x = x + d(mlp(ln_2(x)));  ...;  h = ln_f(x)
    GPT-1 (post-LN):  x = ln_1(x + d(attn(x)));  x = ln_2(x + d(mlp(x)))    (no final LN)

with ``mlp(x) = c_proj(act(c_fc(x)))`` and causal multi-head attention
``softmax(q k^T / sqrt(head_dim) + mask) v``.

Masks and positions follow Hugging Face's forward exactly:

* ``attention_mask`` ``(B, T)`` of 1 (attend) and 0 (padding): padded keys get no attention,
  on top of the causal mask. A query that may attend to nothing (a left-padding position)
  gets a zero attention output in GPT-2 (what torch's ``scaled_dot_product_attention``, HF's
  default, returns), and in GPT-1 the uniform average over its unpadded future keys (what HF's
  ``-1e4`` causal fill gives there). Those rows' logits are meaningless but identical to HF's.
* Without ``position_ids`` the positions are ``0 .. T-1`` whatever the mask (HF's forward does
  not look at the mask for positions); :func:`fnn.models.generate` instead counts only
  unpadded tokens (``cumsum(mask) - 1``), as HF's ``generate`` does.

The KV cache (:class:`KVCache`) is a pytree that the caller carries, never hidden state:
``cache = model.init_cache(batch)`` and ``logits, cache = model.apply_cached(params, ids,
cache)`` run the new tokens only, attending to the cached keys and values; see
:meth:`GPT2.apply_cached`.

>>> import numpy as np, fgrad, fnn.models
>>> model = fnn.models.GPT2(fnn.models.GPT2Config(vocab_size=50, n_positions=16, n_embd=8,
...                                                 n_layer=2, n_head=2))
>>> params = model.init(fgrad.random.key(0))
>>> ids = np.array([[1, 2, 3, 4]])
>>> model.apply(params, ids).shape
(1, 4, 50)
>>> g = fgrad.grad(lambda p: fnn.models.lm_loss(model.apply(p, ids), ids))(params)
>>> g["transformer"]["wte"]["weight"].shape
(50, 8)

Decoding with the cache: the prompt once, then one token per step.

>>> cache = model.init_cache(1)
>>> logits, cache = model.apply_cached(params, ids, cache)             # the prompt: (1, 4, 50)
>>> token = logits[:, -1].argmax(-1)[:, None]
>>> step, cache = model.apply_cached(params, token, cache)             # one token: (1, 1, 50)
>>> full = model.apply(params, np.concatenate([ids, token], axis=1))
>>> bool(np.allclose(step[:, -1], full[:, -1], atol=1e-5)), cache.length
(True, 5)
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any, ClassVar, NamedTuple

import numpy as np

import fgrad.numpy as fnp
from fgrad import random
from fgrad.core import Tracer, dtype_of, shape_of

from .. import functional as F
from .. import init as fnn_init
from .. import io as fnn_io
from ..layers.base import Module, ParamSpec, dtype_field
from ..utils import flatten_names, unflatten_names
from . import _kernels as K

__all__ = ["GPT2Config", "GPT1Config", "GPT2", "GPT1", "KVCache", "lm_loss"]


# ============================================================================================
# Configurations: the fields of Hugging Face's config.json, with its defaults
# ============================================================================================

#: HF's attribute_map: generic names that config.json may use for the GPT fields.
_ALIASES = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
            "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}
#: Keys of config.json that describe the file rather than the model; recomputed on save.
_FILE_KEYS = {"model_type", "architectures", "transformers_version", "_name_or_path", "dtype",
              "torch_dtype"}


class _HFConfig:
    """``from_dict`` / ``to_dict`` shared by the two configurations (frozen dataclasses).

    Keys that the dataclass does not know (``n_ctx``, ``task_specific_params``, ...) are
    tolerated: they are kept, as JSON text, in ``extra`` and written back by ``to_dict``. They
    take no part in equality or hashing.
    """

    model_type: ClassVar[str]
    architectures: ClassVar[tuple]

    def __post_init__(self):
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if isinstance(value, list):                    # hashable: a list of ids becomes a tuple
                object.__setattr__(self, name, tuple(value))
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"{type(self).__name__}: n_embd={self.n_embd} must be divisible by "
                             f"n_head={self.n_head}")
        if not 0 < self.layer_norm_epsilon < 1:
            raise ValueError(f"{type(self).__name__}: layer_norm_epsilon must be in (0, 1), got "
                             f"{self.layer_norm_epsilon!r}")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{type(self).__name__}: {name} must be in [0, 1), got "
                                 f"{getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, config):
        """The configuration of a ``config.json`` dict; unknown keys are kept in ``extra``."""
        config = dict(config)
        model_type = config.get("model_type")
        if model_type is not None and model_type != cls.model_type:
            raise ValueError(f"{cls.__name__}.from_dict: config.json is for model_type "
                             f"{model_type!r}, not {cls.model_type!r}")
        for alias, name in _ALIASES.items():
            if alias in config:
                value = config.pop(alias)
                config.setdefault(name, value)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        extra = tuple(sorted((k, json.dumps(v)) for k, v in config.items()
                             if k not in names and k not in _FILE_KEYS))
        return cls(**known, extra=extra)

    @classmethod
    def from_json_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self):
        """The ``config.json`` dict: every field, ``model_type``, ``architectures`` and the kept
        unknown keys."""
        out = {k: json.loads(v) for k, v in self.extra}
        for field in dataclasses.fields(self):
            if field.name == "extra":
                continue
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        out["model_type"] = self.model_type
        out["architectures"] = list(self.architectures)
        return dict(sorted(out.items()))


def _extra_field():
    return dataclasses.field(default=(), compare=False, repr=False, kw_only=True)


@dataclasses.dataclass(frozen=True)
class GPT2Config(_HFConfig):
    """Hugging Face's ``GPT2Config``: the same field names and defaults (GPT-2 small)."""

    model_type: ClassVar[str] = "gpt2"
    architectures: ClassVar[tuple] = ("GPT2LMHeadModel",)

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    scale_attn_weights: bool = True
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | tuple | None = 50256
    pad_token_id: int | None = None
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    extra: tuple = _extra_field()


@dataclasses.dataclass(frozen=True)
class GPT1Config(_HFConfig):
    """Hugging Face's ``OpenAIGPTConfig``: the same field names and defaults (``openai-gpt``)."""

    model_type: ClassVar[str] = "openai-gpt"
    architectures: ClassVar[tuple] = ("OpenAIGPTLMHeadModel",)

    vocab_size: int = 40478
    n_positions: int = 512
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    afn: str = "gelu"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    summary_type: str = "cls_index"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | tuple | None = None
    tie_word_embeddings: bool = True
    extra: tuple = _extra_field()


# ============================================================================================
# Activations, by the names of HF's ACT2FN (GPT-2) and of modeling_openai's ACT_FNS (GPT-1)
# ============================================================================================

def _quick_gelu(x):
    return x * F.sigmoid(1.702 * x)


#: GPT-2's ``activation_function``: HF's ACT2FN entries, as fnn functions.
GPT2_ACTIVATIONS = {
    "gelu_new": K.gelu_tanh, "gelu_pytorch_tanh": K.gelu_tanh, "gelu_fast": K.gelu_tanh,
    "gelu_accurate": K.gelu_tanh, "gelu": K.gelu_erf, "gelu_python": K.gelu_erf,
    "quick_gelu": _quick_gelu, "relu": F.relu, "relu6": F.relu6, "silu": F.silu,
    "swish": F.silu, "mish": F.mish, "tanh": F.tanh, "sigmoid": F.sigmoid,
    "leaky_relu": F.leaky_relu, "linear": lambda x: x,
}
#: GPT-1's ``afn``. Note: HF's modeling_openai maps "gelu" to ``gelu_new``, the tanh
#: approximation (not the exact erf GELU of ACT2FN["gelu"]); mirrored here.
GPT1_ACTIVATIONS = {"gelu": K.gelu_tanh, "relu": F.relu, "silu": F.silu, "swish": F.silu}


# ============================================================================================
# The KV cache
# ============================================================================================

class KVCache(NamedTuple):
    """The keys and values of every token seen so far: a pytree the caller carries.

    ``keys[l]`` and ``values[l]`` are layer ``l``'s ``(B, n_head, S, head_dim)`` after ``S``
    tokens; ``mask`` ``(B, S)`` is True for the slots holding real (unpadded) tokens;
    ``next_position`` ``(B,)`` is the position id the next token of each row gets (the last
    position + 1, as HF's generate advances ``position_ids``). Each ``apply_cached`` returns a
    new cache whose arrays are the old ones with the new tokens appended (concatenation: the
    old cache is never modified, and a step costs time linear in ``S``).
    """

    keys: tuple
    values: tuple
    mask: Any
    next_position: Any

    @property
    def length(self):
        """``S``: the number of slots filled (padding included)."""
        return shape_of(self.mask)[1]


# ============================================================================================
# Masks (built from known values in NumPy; fgrad.numpy when the mask is being traced)
# ============================================================================================

@functools.lru_cache(maxsize=64)
def _causal_bias(q_len, k_len, dtype):
    """``(q_len, k_len)``: 0 where query ``i`` (the last ``q_len`` of ``k_len`` slots) may see key
    ``j`` (``j <= i + k_len - q_len``), ``-inf`` elsewhere. Cached and read-only."""
    allowed = _causal_allowed(q_len, k_len)
    bias = np.where(allowed, 0.0, -np.inf).astype(dtype)
    bias.flags.writeable = False
    return bias


@functools.lru_cache(maxsize=64)
def _causal_allowed(q_len, k_len):
    """``(q_len, k_len)`` booleans: True where query ``i`` may see key ``j``. Cached, read-only."""
    allowed = np.tril(np.ones((q_len, k_len), dtype=bool), k=k_len - q_len)
    allowed.flags.writeable = False
    return allowed


def _known(x):
    """The NumPy value of ``x`` when known (not a value being traced by vmap or staging)."""
    return x.concrete_value() if isinstance(x, Tracer) else np.asarray(x)


class _Mask(NamedTuple):
    """How one forward pass masks its attention scores ``(B, H, T, S)``.

    ``bias`` is added to the scores; with ``fill`` set, ``where(allowed, scores, fill)`` is
    used instead (GPT-1 with padding, to reproduce HF's constant fill). ``row_valid``
    ``(B, 1, T, 1)``, when set, multiplies the attention output (zero for a query that may
    attend to nothing, as torch's scaled_dot_product_attention returns).
    """

    bias: Any = None
    allowed: Any = None
    fill: Any = None
    row_valid: Any = None


# ============================================================================================
# The models
# ============================================================================================

def _normal(std):
    return functools.partial(fnn_init.normal, std=std)


@dataclasses.dataclass(frozen=True)
class _GPT(Module):
    """What GPT-1 and GPT-2 share: parameters, the forward pass, the KV cache, HF files."""

    takes_key: ClassVar[bool] = True
    # set by the subclasses
    config_class: ClassVar[type]
    pre_ln: ClassVar[bool]
    token_embedding: ClassVar[str]
    position_embedding: ClassVar[str]
    hf_class: ClassVar[str]

    # ---- hyper-parameters -----------------------------------------------------------------

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.config, dict):
            object.__setattr__(self, "config", self.config_class.from_dict(self.config))
        if not isinstance(self.config, self.config_class):
            raise TypeError(f"{type(self).__name__}: config must be a {self.config_class.__name__} "
                            f"(or its dict), got {type(self.config).__name__}")
        self._activation()   # raises for an unknown activation name

    def describe(self):
        c = self.config
        return (f"{type(self).__name__}(vocab_size={c.vocab_size}, n_positions={c.n_positions}, "
                f"n_embd={c.n_embd}, n_layer={c.n_layer}, n_head={c.n_head})")

    @property
    def head_dim(self):
        return self.config.n_embd // self.config.n_head

    def _activation(self):
        raise NotImplementedError

    def _inner_dim(self):
        return 4 * self.config.n_embd

    def _attention_scale(self, layer):
        return 1.0 / math.sqrt(self.head_dim)

    # ---- parameters -----------------------------------------------------------------------

    def _conv1d_specs(self, n_in, n_out, std):
        return {"weight": ParamSpec((n_in, n_out), self.dtype, _normal(std)),
                "bias": ParamSpec((n_out,), self.dtype, fnn_init.zeros)}

    def _layer_norm_specs(self):
        c = self.config.n_embd
        return {"weight": ParamSpec((c,), self.dtype, fnn_init.ones),
                "bias": ParamSpec((c,), self.dtype, fnn_init.zeros)}

    def _conv1d_std(self, residual):
        raise NotImplementedError

    def _block_specs(self):
        c, inner = self.config.n_embd, self._inner_dim()
        return {
            "ln_1": self._layer_norm_specs(),
            "attn": {"c_attn": self._conv1d_specs(c, 3 * c, self._conv1d_std(False)),
                     "c_proj": self._conv1d_specs(c, c, self._conv1d_std(True))},
            "ln_2": self._layer_norm_specs(),
            "mlp": {"c_fc": self._conv1d_specs(c, inner, self._conv1d_std(False)),
                    "c_proj": self._conv1d_specs(inner, c, self._conv1d_std(True))},
        }

    def param_specs(self):
        cfg, std = self.config, self.config.initializer_range
        body = {
            self.token_embedding: {"weight": ParamSpec((cfg.vocab_size, cfg.n_embd), self.dtype,
                                                       _normal(std))},
            self.position_embedding: {"weight": ParamSpec((cfg.n_positions, cfg.n_embd),
                                                          self.dtype, _normal(std))},
            "h": {str(i): self._block_specs() for i in range(cfg.n_layer)},
        }
        if self.pre_ln:
            body["ln_f"] = self._layer_norm_specs()
        specs = {"transformer": body}
        if not cfg.tie_word_embeddings:
            specs["lm_head"] = {"weight": ParamSpec((cfg.vocab_size, cfg.n_embd), self.dtype,
                                                    _normal(std))}
        return specs

    # ---- the forward pass -----------------------------------------------------------------

    def apply(self, params, ids, attention_mask=None, *, position_ids=None, key=None, train=False):
        """Logits ``(B, T, vocab_size)`` of the tokens ``ids`` ``(B, T)`` (or ``(T,)`` -> ``(T,
        vocab_size)``).

        ``attention_mask`` ``(B, T)``: 1 for tokens, 0 for padding (keys that get no attention).
        ``position_ids`` ``(B, T)`` or ``(T,)``: defaults to ``0 .. T-1`` (HF's forward). (HF's
        GPT-2, given position ids that restart and no mask, also splits the attention into
        packed sequences; here position ids only pick position embeddings.)
        ``train=True`` applies dropout (``embd_pdrop``, ``attn_pdrop``, ``resid_pdrop``) with
        the random ``key``; with ``train=False`` (the default) the key is ignored.
        """
        self.check_params(params)
        ids, attention_mask, position_ids, unbatched = self._check_inputs(
            ids, attention_mask, position_ids, past=0)
        length = shape_of(ids)[1]
        mask = self._mask(attention_mask, length, length, self._compute_dtype(params))
        logits, _ = self._forward(params, ids, position_ids, mask, None, key, train)
        return logits[0] if unbatched else logits

    def init_cache(self, batch_size, dtype=None):
        """An empty :class:`KVCache` for ``batch_size`` rows (``dtype``: the model's by default)."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        h, hd = self.config.n_head, self.head_dim
        empty = np.zeros((batch_size, h, 0, hd), dtype)
        layers = tuple(empty for _ in range(self.config.n_layer))
        return KVCache(layers, layers, np.zeros((batch_size, 0), bool),
                       np.zeros((batch_size,), np.int64))

    def apply_cached(self, params, ids, cache, attention_mask=None, *, position_ids=None):
        """Run the new tokens ``ids`` ``(B, T)`` after the ``cache``d ones: ``(logits, cache)``.

        The logits ``(B, T, vocab_size)`` are those a full :meth:`apply` over all tokens so far
        would give at the new positions (with the whole mask and the same position ids). The
        new ``cache`` holds the old tokens' and the new tokens' keys and values.

        ``attention_mask`` ``(B, T)`` marks the new tokens that are padding (0); by default all
        are real. ``position_ids`` ``(B, T)`` default to HF generate's rule: each real token's
        position is the count of real tokens before it (``cache.next_position +
        cumsum(mask) - 1``), padding gets 0. So a left-padded prompt on an empty cache gets the
        positions HF's ``generate`` gives it. No dropout: this is for inference.
        """
        self.check_params(params)
        past = cache.length
        ids, attention_mask, position_ids, unbatched = self._check_inputs(
            ids, attention_mask, position_ids, past=past, cache=cache)
        if unbatched:
            raise ValueError(f"{self.describe()}.apply_cached: ids must be (B, T), got shape "
                             f"{shape_of(ids)[1:]}")
        batch, length = shape_of(ids)
        if shape_of(cache.mask)[0] != batch:
            raise ValueError(f"{self.describe()}.apply_cached: the cache holds {shape_of(cache.mask)[0]} "
                             f"rows, ids {batch}")
        new_valid = np.ones((batch, length), bool) if attention_mask is None else attention_mask
        if position_ids is None:          # HF generate: cumsum(mask) - 1 from the last position
            counts = fnp.cumsum(fnp.astype(new_valid, np.int64), axis=1)
            position_ids = fnp.where(new_valid,
                                     fnp.expand_dims(cache.next_position, 1) + counts - 1, 0)
        key_valid = fnp.concatenate([cache.mask, new_valid], axis=1)          # (B, S)
        known = _known(key_valid)
        padded = known is None or not known.all()
        mask = self._mask(key_valid if padded else None, length, past + length,
                          self._compute_dtype(params))
        logits, (keys, values) = self._forward(params, ids, position_ids, mask, cache, None, False)
        next_position = fnp.astype(position_ids[:, -1], np.int64) + 1
        if shape_of(next_position) != (batch,):                             # (1, T) positions
            next_position = fnp.broadcast_to(next_position, (batch,))
        return logits, KVCache(keys, values, key_valid, next_position)

    def _compute_dtype(self, params):
        return np.dtype(dtype_of(params["transformer"][self.token_embedding]["weight"]))

    def _check_inputs(self, ids, attention_mask, position_ids, past, cache=None):
        """Shapes, dtypes and values of the inputs; ``(ids, mask, positions, unbatched)`` with
        ``ids`` ``(B, T)``, the mask as booleans (or None) and positions ``(B, T)`` or None."""
        name = f"{self.describe()}.{'apply' if cache is None else 'apply_cached'}"
        cfg = self.config
        if not hasattr(ids, "shape"):
            ids = np.asarray(ids)
        if dtype_of(ids).kind not in "iu":
            raise TypeError(f"{name}: ids must be integer token ids, got dtype {dtype_of(ids)}")
        rank = len(shape_of(ids))
        if rank not in (1, 2):
            raise ValueError(f"{name}: ids must be (B, T) or (T,), got shape {shape_of(ids)}")
        unbatched = rank == 1
        if unbatched:
            ids = fnp.expand_dims(ids, 0)
        batch, length = shape_of(ids)
        if length == 0:
            raise ValueError(f"{name}: ids must hold at least one token, got shape {shape_of(ids)}")
        if past + length > cfg.n_positions:
            raise ValueError(f"{name}: {past + length} tokens{f' ({past} cached)' if past else ''} "
                             f"exceed n_positions={cfg.n_positions}, the longest context the "
                             f"position embedding has; shorten the input (e.g. keep its last "
                             f"{cfg.n_positions - past} tokens)")
        values = _known(ids)
        if values is not None and values.size and (values.min() < 0 or values.max() >= cfg.vocab_size):
            raise IndexError(f"{name}: token ids must be in [0, vocab_size={cfg.vocab_size}), got "
                             f"values in [{values.min()}, {values.max()}]")
        if attention_mask is not None:
            if not hasattr(attention_mask, "shape"):
                attention_mask = np.asarray(attention_mask)
            if unbatched:
                attention_mask = fnp.expand_dims(attention_mask, 0)
            if shape_of(attention_mask) != (batch, length):
                raise ValueError(f"{name}: attention_mask must have the shape of ids {(batch, length)}, "
                                 f"got {shape_of(attention_mask)}")
            if dtype_of(attention_mask) != np.bool_:
                attention_mask = attention_mask != 0
            known = _known(attention_mask)
            if cache is None and known is not None and known.all():
                attention_mask = None       # nothing is padded: the causal mask alone
        if position_ids is not None:
            if not hasattr(position_ids, "shape"):
                position_ids = np.asarray(position_ids)
            if dtype_of(position_ids).kind not in "iu":
                raise TypeError(f"{name}: position_ids must be integers, got dtype "
                                f"{dtype_of(position_ids)}")
            if len(shape_of(position_ids)) == 1:
                position_ids = fnp.expand_dims(position_ids, 0)
            if shape_of(position_ids)[1:] != (length,) or shape_of(position_ids)[0] not in (1, batch):
                raise ValueError(f"{name}: position_ids must be (B, T) or (T,) with T={length}, got "
                                 f"shape {shape_of(position_ids)}")
            known = _known(position_ids)
            if known is not None and known.size and (known.min() < 0 or known.max() >= cfg.n_positions):
                raise IndexError(f"{name}: position_ids must be in [0, n_positions={cfg.n_positions}), "
                                 f"got values in [{known.min()}, {known.max()}]")
        return ids, attention_mask, position_ids, unbatched

    def _mask(self, key_valid, q_len, k_len, dtype):
        """The :class:`_Mask` for ``q_len`` queries (the last of ``k_len`` slots) and the key
        mask ``key_valid`` ``(B, k_len)`` (None: every key is real)."""
        if key_valid is None:
            return _Mask(bias=_causal_bias(q_len, k_len, dtype))
        allowed = fnp.logical_and(_causal_allowed(q_len, k_len),
                                  fnp.expand_dims(fnp.expand_dims(key_valid, 1), 1))  # (B,1,T,S)
        return self._padding_mask(allowed, key_valid, dtype)

    def _padding_mask(self, allowed, key_valid, dtype):
        raise NotImplementedError

    def _forward(self, params, ids, position_ids, mask, cache, key, train):
        """Logits ``(B, T, V)`` and the per-layer ``(keys, values)`` (the cache's, extended)."""
        cfg = self.config
        batch, length = shape_of(ids)
        body = params["transformer"]
        wte = body[self.token_embedding]["weight"]
        wpe = body[self.position_embedding]["weight"]
        drop = _Dropout(cfg, key, train, self.describe())
        x = fnp.take(wte, ids, axis=0)                                        # (B, T, C)
        if position_ids is None:
            x = x + wpe[:length]
        else:
            x = x + fnp.take(wpe, position_ids, axis=0)
        x = drop(fnp.reshape(x, (batch * length, cfg.n_embd)), cfg.embd_pdrop)   # (N, C)
        keys, values = [], []
        act = self._activation()
        for i in range(cfg.n_layer):
            p = body["h"][str(i)]
            layer_cache = None if cache is None else (cache.keys[i], cache.values[i])
            if self.pre_ln:
                a, kv = self._attention(p["attn"], self._ln(p["ln_1"], x), batch, length, mask,
                                        layer_cache, i, drop)
                x = x + a
                x = x + self._mlp(p["mlp"], self._ln(p["ln_2"], x), act, drop)
            else:
                a, kv = self._attention(p["attn"], x, batch, length, mask, layer_cache, i, drop)
                x = self._ln(p["ln_1"], x + a)
                x = self._ln(p["ln_2"], x + self._mlp(p["mlp"], x, act, drop))
            keys.append(kv[0])
            values.append(kv[1])
        if self.pre_ln:
            x = self._ln(body["ln_f"], x)
        head = wte if cfg.tie_word_embeddings else params["lm_head"]["weight"]
        logits = K.tied_head(x, head)                                         # x @ wte.T: (N, V)
        return fnp.reshape(logits, (batch, length, cfg.vocab_size)), (tuple(keys), tuple(values))

    def _ln(self, p, x):
        return K.layer_norm(x, p["weight"], p["bias"], self.config.layer_norm_epsilon)

    def _mlp(self, p, x, act, drop):
        h = act(K.conv1d(x, p["c_fc"]["weight"], p["c_fc"]["bias"]))
        return drop(K.conv1d(h, p["c_proj"]["weight"], p["c_proj"]["bias"]), self.config.resid_pdrop)

    def _attention(self, p, x, batch, length, mask, layer_cache, layer, drop):
        """Causal self-attention of ``x`` ``(N, C)``: the output ``(N, C)`` and this layer's
        keys and values ``(B, H, S, hd)`` (the cached ones followed by the new ones)."""
        cfg, hd = self.config, self.head_dim
        h = cfg.n_head
        qkv = K.conv1d(x, p["c_attn"]["weight"], p["c_attn"]["bias"])          # (N, 3C)
        qkv = fnp.transpose(fnp.reshape(qkv, (batch, length, 3 * h, hd)), (0, 2, 1, 3))
        q, k, v = fnp.split(qkv, 3, axis=1)                                   # (B, H, T, hd)
        if layer_cache is not None:
            k = fnp.concatenate([layer_cache[0], k], axis=2)                  # (B, H, S, hd)
            v = fnp.concatenate([layer_cache[1], v], axis=2)
        out = K.attention(q, k, v, self._attention_scale(layer), mask.bias, mask.allowed,
                          mask.fill, drop.key_for(cfg.attn_pdrop), cfg.attn_pdrop)
        if mask.row_valid is not None:
            out = out * mask.row_valid
        out = fnp.reshape(fnp.transpose(out, (0, 2, 1, 3)), (batch * length, cfg.n_embd))
        out = K.conv1d(out, p["c_proj"]["weight"], p["c_proj"]["bias"])
        return drop(out, cfg.resid_pdrop), (k, v)

    # ---- Hugging Face files ---------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, directory, dtype=np.float32):
        """``(model, params)`` from a directory written by HF's ``save_pretrained`` (or ours).

        Reads ``config.json`` and ``model.safetensors`` (or the shards a
        ``model.safetensors.index.json`` names); ``dtype`` casts every weight. Tolerated and
        dropped: ``lm_head.weight`` (tied to the token embedding), the causal-mask buffers
        ``attn.bias`` / ``attn.masked_bias`` of old checkpoints; names with or without the
        ``transformer.`` prefix (the hub's GPT-2 files have none). Any other missing or
        unexpected tensor name, or a wrong shape, is a ValueError naming them all.
        """
        directory = os.fspath(directory)
        name = f"{cls.__name__}.from_pretrained({directory!r})"
        config_path = os.path.join(directory, "config.json")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{name}: no config.json in that directory; expected what "
                                    f"transformers' save_pretrained writes")
        config = cls.config_class.from_json_file(config_path)
        model = cls(config, dtype=dtype)
        tensors = _read_safetensors_dir(directory, name)
        params = model._params_from_hf(tensors, name)
        return model, params

    def _params_from_hf(self, tensors, name):
        """The params tree from a flat ``{HF name: array}``, checking names and shapes."""
        specs = flatten_names(self.param_shapes(), is_leaf=lambda s: isinstance(s, tuple))
        found = {}
        for key, value in tensors.items():
            canonical = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
            found[canonical] = value
        ignored = []
        for key in list(found):
            parts = key.split(".")
            buffer = (parts[-1] in ("bias", "masked_bias") and len(parts) == 5 and parts[3] == "attn")
            if (buffer or key == "transformer.position_ids"
                    or (key == "lm_head.weight" and self.config.tie_word_embeddings)):
                ignored.append(key)
                del found[key]
        missing = [k for k in specs if k not in found]
        unexpected = [k for k in found if k not in specs]
        bad_shapes = [f"{k!r} is {tuple(found[k].shape)}, expected {specs[k]}" for k in specs
                      if k in found and tuple(found[k].shape) != tuple(specs[k])]
        problems = []
        if missing:
            problems.append("missing tensors: " + ", ".join(map(repr, missing)))
        if unexpected:
            problems.append("unexpected tensors: " + ", ".join(map(repr, unexpected)))
        problems += bad_shapes
        if problems:
            raise ValueError(f"{name}: the weights do not fit {self.describe()}:\n  "
                             + "\n  ".join(problems))
        dtype = self.dtype
        return unflatten_names({k: np.asarray(found[k]).astype(dtype, copy=False) for k in specs})

    def save_pretrained(self, directory, params):
        """Write ``config.json`` and ``model.safetensors`` (metadata ``{"format": "pt"}``) into
        ``directory`` (created if needed), in the layout transformers' ``from_pretrained``
        loads: ``transformers.GPT2LMHeadModel`` / ``OpenAIGPTLMHeadModel`` for GPT2 / GPT1."""
        self.check_params(params)
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        dtypes = {np.asarray(v).dtype for v in flatten_names(params).values()}
        config = self.config.to_dict()
        config["dtype"] = dtypes.pop().name if len(dtypes) == 1 else "float32"
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        # the leaves' dotted names are HF's tensor names; HF's loaders require format "pt"
        fnn_io.save(os.path.join(directory, "model.safetensors"), params,
                    metadata={"format": "pt"})


class _Dropout:
    """Dropout with a fresh subkey per call when training, else the identity.

    Keys are drawn in a fixed order (``fold_in(key, i)`` for the ``i``-th call), so the same
    ``key`` gives the same masks."""

    def __init__(self, config, key, train, name):
        self.active = train and max(config.embd_pdrop, config.attn_pdrop, config.resid_pdrop) > 0
        if self.active and key is None:
            raise ValueError(f"{name}.apply: train=True with dropout needs key=<a fgrad.random "
                             f"key> (or set the config's embd_pdrop, attn_pdrop and resid_pdrop "
                             f"to 0)")
        self.key = key
        self.count = 0

    def key_for(self, p):
        """A fresh key for a dropout of rate ``p`` done elsewhere (attention), or None."""
        if not self.active or p == 0:
            return None
        self.count += 1
        return random.fold_in(self.key, self.count)

    def __call__(self, x, p):
        k = self.key_for(p)
        return x if k is None else F.dropout(x, p, training=True, key=k)


@dataclasses.dataclass(frozen=True)
class GPT2(_GPT):
    """GPT-2: ``transformers.GPT2LMHeadModel`` as an fnn layer (see the module docstring).

    ``GPT2(config, dtype=np.float32)``; ``init(key)`` draws HF's initialisation: weights and
    embeddings ``N(0, initializer_range)``, the residual projections ``attn.c_proj.weight`` and
    ``mlp.c_proj.weight`` ``N(0, initializer_range / sqrt(2 n_layer))``, zero biases, LayerNorm
    ones and zeros. ``scale_attn_by_inverse_layer_idx`` is honoured;
    ``reorder_and_upcast_attn`` only changes HF's mixed-precision arithmetic and is ignored;
    ``add_cross_attention`` (encoder-decoder use) is not supported.
    """

    config_class: ClassVar[type] = GPT2Config
    pre_ln: ClassVar[bool] = True
    token_embedding: ClassVar[str] = "wte"
    position_embedding: ClassVar[str] = "wpe"

    config: GPT2Config = GPT2Config()
    dtype: object = dtype_field()

    def __post_init__(self):
        super().__post_init__()
        if self.config.add_cross_attention:
            raise ValueError("GPT2: add_cross_attention=True (cross-attention to an encoder) is "
                             "not supported")

    def _activation(self):
        name = self.config.activation_function
        if name not in GPT2_ACTIVATIONS:
            raise ValueError(f"GPT2: activation_function {name!r} is not supported; expected one of "
                             f"{', '.join(sorted(GPT2_ACTIVATIONS))}")
        return GPT2_ACTIVATIONS[name]

    def _inner_dim(self):
        n_inner = self.config.n_inner
        return 4 * self.config.n_embd if n_inner is None else n_inner

    def _attention_scale(self, layer):
        scale = 1.0 / math.sqrt(self.head_dim) if self.config.scale_attn_weights else 1.0
        if self.config.scale_attn_by_inverse_layer_idx:
            scale /= layer + 1
        return scale

    def _conv1d_std(self, residual):
        std = self.config.initializer_range
        return std / math.sqrt(2 * self.config.n_layer) if residual else std

    def _padding_mask(self, allowed, key_valid, dtype):
        # 0 / -inf, and 0 on rows that may attend to nothing (whose output row_valid zeroes):
        # torch's scaled_dot_product_attention gives those rows zeros, and so do we.
        row_valid = fnp.any(allowed, axis=-1, keepdims=True)                   # (B, 1, T, 1)
        bias = fnp.where(fnp.logical_or(allowed, fnp.logical_not(row_valid)), 0.0, -np.inf)
        bias = fnp.astype(bias, dtype)
        known = _known(row_valid)
        needs_zeroing = known is None or not known.all()
        return _Mask(bias=bias, row_valid=fnp.astype(row_valid, dtype) if needs_zeroing else None)


@dataclasses.dataclass(frozen=True)
class GPT1(_GPT):
    """GPT-1: ``transformers.OpenAIGPTLMHeadModel`` (post-LN, no final LayerNorm) as an fnn layer.

    Params ``{"transformer": {"tokens_embed", "positions_embed", "h": {...}}}`` with the same
    block names as GPT-2. ``init(key)``: embeddings ``N(0, initializer_range)``, the
    projections ``N(0, 0.02)`` (HF's ``Conv1D`` draws them with a fixed 0.02, which
    ``_init_weights`` leaves alone), zero biases, LayerNorm ones and zeros. The activation
    ``afn``: "gelu" is HF's ``gelu_new`` (tanh approximation), also "relu", "silu", "swish".
    """

    config_class: ClassVar[type] = GPT1Config
    pre_ln: ClassVar[bool] = False
    token_embedding: ClassVar[str] = "tokens_embed"
    position_embedding: ClassVar[str] = "positions_embed"

    config: GPT1Config = GPT1Config()
    dtype: object = dtype_field()

    def _activation(self):
        name = self.config.afn
        if name not in GPT1_ACTIVATIONS:
            raise ValueError(f"GPT1: afn {name!r} is not supported; expected one of "
                             f"{', '.join(sorted(GPT1_ACTIVATIONS))}")
        return GPT1_ACTIVATIONS[name]

    def _conv1d_std(self, residual):
        return 0.02

    def _padding_mask(self, allowed, key_valid, dtype):
        # HF: w = w * causal + -1e4 * (1 - causal), then + (1 - mask) * finfo.min: a causally
        # hidden real key scores exactly -1e4, a padded key finfo.min (it absorbs w and -1e4).
        tiny = np.finfo(dtype).min
        fill = fnp.where(fnp.expand_dims(fnp.expand_dims(key_valid, 1), 1), -1e4, tiny)
        return _Mask(allowed=allowed, fill=fnp.astype(fill, dtype))


# ============================================================================================
# The language-model loss
# ============================================================================================

def lm_loss(logits, labels, ignore_index=-100, *, shift=True):
    """Mean next-token cross-entropy, as HF's models compute it from ``labels``.

    ``logits`` ``(B, T, V)`` (or ``(T, V)``), ``labels`` ``(B, T)`` (or ``(T,)``) of token ids:
    position ``t`` predicts ``labels[t + 1]`` (the shift happens here, so ``labels = ids``
    works; ``shift=False`` scores ``logits[:, t]`` on ``labels[:, t]``, for targets shifted
    already), and targets equal to ``ignore_index`` (e.g. padding) count for nothing, in the
    loss or in the mean's denominator. HF casts the logits to float32 first; here the logits'
    dtype is kept (float64 logits give a float64 loss). Equal to ``fnn.functional.cross_entropy``
    on the flattened positions, in fewer passes over the logits (a fused kernel).
    """
    if dtype_of(labels).kind not in "iu":
        raise TypeError(f"fnn.models.lm_loss: labels must be integer ids, got dtype {dtype_of(labels)}")
    ls, ys = shape_of(logits), shape_of(labels)
    if len(ls) != len(ys) + 1 or ls[:-1] != ys or len(ys) not in (1, 2):
        raise ValueError(f"fnn.models.lm_loss: expected logits (B, T, V) and labels (B, T), got "
                         f"shapes {ls} and {ys}")
    if len(ys) == 1:
        logits, labels = fnp.expand_dims(logits, 0), fnp.expand_dims(labels, 0)
    known = _known(labels)
    if known is not None:
        targets = known[:, 1:] if shift else known
        bad = ((targets < 0) | (targets >= ls[-1])) & (targets != ignore_index)
        if bad.any():
            raise ValueError(f"fnn.models.lm_loss: labels must be token ids in [0, {ls[-1]}) or "
                             f"ignore_index={ignore_index}, got {targets[bad][:5].tolist()}")
        labels = known
    return K.token_cross_entropy(logits, labels, ignore_index, shift)


# ============================================================================================
# safetensors files (fnn.io reads them; writing needs HF's {"format": "pt"} metadata)
# ============================================================================================

def _read_safetensors_dir(directory, name):
    """``{tensor name: array}`` of a save_pretrained directory's safetensors file(s)."""
    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        files = [os.path.join(directory, shard) for shard in sorted(set(weight_map.values()))]
    else:
        pickles = [f for f in ("pytorch_model.bin", "pytorch_model.bin.index.json")
                   if os.path.isfile(os.path.join(directory, f))]
        if pickles:
            raise ValueError(
                f"{name}: the weights are in {pickles[0]}, a pickle file, which fnn does not read "
                f"(unpickling can run arbitrary code). Convert it to safetensors once, with "
                f"transformers: `m = AutoModelForCausalLM.from_pretrained(dir); "
                f"m.save_pretrained(dir, safe_serialization=True)`.")
        raise FileNotFoundError(f"{name}: no model.safetensors in that directory")
    tensors = {}
    for path in files:
        tensors.update(flatten_names(fnn_io.load(path)))
    return tensors
