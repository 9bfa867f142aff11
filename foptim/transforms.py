"""The small gradient transformations that optimizers are chained from.

Each factory returns a :class:`~foptim.base.GradientTransformation`; its hyper-parameters
are closed over and its state is a small ``NamedTuple``. With ``g`` the incoming update (the
gradient, at the head of a chain), ``p`` the parameters and ``t`` the step number::

    scale(a)                  u = a g
    scale_by_learning_rate    u = -lr g            (lr a number, or a schedule of the count)
    scale_by_schedule(f)      u = f(t - 1) g
    scale_by_adam             u = m_hat / (sqrt(v_hat + eps_root) + eps)         Adam
    scale_by_rms              u = g / sqrt(v + eps)                              RMSprop
    scale_by_stddev           u = g / sqrt(v - m^2 + eps)                        centered RMSprop
    scale_by_rss              u = g / sqrt(sum_s g_s^2 + eps)                    Adagrad
    scale_by_lion             u = sign(b1 m + (1 - b1) g)                        Lion
    trace                     u = b_t,  b_t = decay b_{t-1} + g                  momentum
    add_decayed_weights       u = g + wd p                                       weight decay
    clip                      u = clip(g, -d, d)
    clip_by_global_norm       u = g min(1, c / ||g||)
    masked                    apply a transformation to the selected leaves only
    multi_steps               accumulate k gradients, then take one inner step
    inject_hyperparams        keep an optimizer's hyper-parameters in its state

All arithmetic is ``fgrad.numpy``, so an update step is differentiable and batchable; step
counts are 0-d int64 arrays in the state, and anything that depends on them (bias
correction, schedules, the accumulation switch) is written with ``fnp`` operations rather
than Python branches, so that a batched (``vmap``-ed) count works too.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple

import numpy as np

from fgrad import numpy as fnp
from fgrad import tree
from fgrad.core import Tracer, dtype_of

from .base import EmptyState, GradientTransformation, check_hyperparameter, check_like

__all__ = [
    "scale", "scale_by_learning_rate", "scale_by_schedule", "scale_by_adam", "scale_by_rms",
    "scale_by_stddev", "scale_by_rss", "scale_by_lion", "trace", "add_decayed_weights", "clip",
    "clip_by_global_norm", "global_norm", "masked", "multi_steps", "inject_hyperparams",
    "ScaleByScheduleState", "ScaleByAdamState", "ScaleByRmsState", "ScaleByRStdDevState",
    "ScaleByRssState", "ScaleByLionState", "TraceState", "MaskedState", "MultiStepsState",
    "InjectHyperparamsState",
]


def _zero_count():
    return np.zeros([], np.int64)


def _zeros_like(tree_):
    return tree.map(fnp.zeros_like, tree_)


def _ema(new, avg, decay):
    """Exponential moving average ``decay * avg + (1 - decay) * new``, leaf by leaf."""
    return tree.map(lambda x, a: decay * a + (1 - decay) * x, new, avg)


def _bias_corrected(avg, decay, count):
    """``avg / (1 - decay^t)``: undoes the pull towards the zero initialisation of an EMA."""
    correction = 1 - decay ** count
    return tree.map(lambda a: a / _cast_like(correction, a), avg)


def _cast_like(scalar, x):
    """``scalar`` in the dtype of ``x``, so that a float64 factor computed from a step count
    does not promote float32 updates to float64 (NumPy scalars are not weakly typed)."""
    return fnp.astype(scalar, dtype_of(x))


def _check_grads(name, updates, state, state_type, what):
    """The state must be this stage's (not another optimizer's, whose fields may happen to
    fit), and the incoming updates shaped like the state it keeps per parameter."""
    if not isinstance(state, state_type):
        raise TypeError(f"foptim.{name}.update: state must be a {state_type.__name__} (what this "
                        f"stage's init returns), got a {type(state).__name__}; pass the state "
                        f"that this optimizer's init returned")
    check_like(f"foptim.{name}.update", "updates", updates, f"state.{what}", getattr(state, what),
               dtypes=False, note=f"state.{what} is shaped like the params given to init")


def _unit(name, what, value, *, high_open=False, why=""):
    """A decay rate or moment coefficient: a number in [0, 1] (or [0, 1))."""
    check_hyperparameter(f"foptim.{name}", what, value, low=0.0, high=1.0, high_open=high_open,
                         why=why)


def _non_negative(name, what, value, why=""):
    check_hyperparameter(f"foptim.{name}", what, value, low=0.0, why=why)


def _is_static_zero(x):
    """True for a concrete scalar equal to 0 (not a schedule, not a traced value)."""
    return isinstance(x, (int, float, np.ndarray, np.generic)) and np.ndim(x) == 0 and x == 0


# --------------------------------------------------------------------------------------------
# Scaling
# --------------------------------------------------------------------------------------------

def scale(step_size) -> GradientTransformation:
    """Multiply updates by a fixed ``step_size``: ``u = step_size * g``."""

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return tree.map(lambda g: step_size * g, updates), state

    return GradientTransformation(init, update)


class ScaleByScheduleState(NamedTuple):
    count: Any  # int64 scalar: the number of updates taken so far


def scale_by_schedule(step_size_fn: Callable) -> GradientTransformation:
    """Multiply updates by ``step_size_fn(count)``, where ``count`` is 0 at the first step."""

    def init(params):
        return ScaleByScheduleState(count=_zero_count())

    def update(updates, state, params=None):
        step_size = step_size_fn(state.count)
        updates = tree.map(lambda g: _cast_like(step_size, g) * g, updates)
        return updates, ScaleByScheduleState(count=state.count + 1)

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate, *, flip_sign: bool = True) -> GradientTransformation:
    """``u = -learning_rate * g`` (descent); ``learning_rate`` is a number or a schedule.

    A schedule is any function of the step count (0 at the first step), for example
    ``foptim.cosine_decay_schedule(0.1, 1000)``; its count is kept in this stage's state.
    ``flip_sign=False`` gives ``+learning_rate * g`` (ascent).
    """
    _non_negative("scale_by_learning_rate", "learning_rate", learning_rate,
                  "a negative rate ascends; use flip_sign=False for ascent")
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


# --------------------------------------------------------------------------------------------
# Adaptive preconditioners
# --------------------------------------------------------------------------------------------

class ScaleByAdamState(NamedTuple):
    count: Any   # int64 scalar: steps taken
    mu: Any      # EMA of the gradients (first moment)
    nu: Any      # EMA of the squared gradients (second moment)
    nu_max: Any  # running maximum of nu (AMSGrad); None when amsgrad=False


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  *, amsgrad: bool = False) -> GradientTransformation:
    """Rescale updates by Adam's bias-corrected moment estimates (Kingma & Ba, 2015).

    With ``t`` the step number (1 at the first step)::

        m_t = b1 m_{t-1} + (1 - b1) g          m_hat = m_t / (1 - b1^t)
        v_t = b2 v_{t-1} + (1 - b2) g^2        v_hat = v_t / (1 - b2^t)
        u   = m_hat / (sqrt(v_hat + eps_root) + eps)

    ``eps_root`` (inside the square root) keeps the derivative of the step finite when a
    gradient is exactly zero, which matters when differentiating through the optimizer;
    torch has only ``eps`` (outside), so ``eps_root=0`` matches ``torch.optim.Adam``.

    ``amsgrad=True`` (Reddi et al., 2018) divides by the running maximum of ``v`` instead:
    ``vmax_t = max(vmax_{t-1}, v_t)``, ``u = m_hat / (sqrt(vmax_t / (1 - b2^t) + eps_root) + eps)``.
    This is torch's convention (the maximum of the raw ``v``, bias-corrected afterwards);
    ``optax.scale_by_amsgrad`` instead keeps the maximum of the already corrected ``v_hat``.

    ``b1`` and ``b2`` must be in [0, 1) (at 1 the bias correction divides by zero), ``eps`` and
    ``eps_root`` non-negative, as ``torch.optim.Adam`` checks.
    """
    for what, value in (("b1", b1), ("b2", b2)):
        _unit("scale_by_adam", what, value, high_open=True,
              why="at 1 the bias correction 1 - b^t is 0 and the update NaN")
    _non_negative("scale_by_adam", "eps", eps)
    _non_negative("scale_by_adam", "eps_root", eps_root)

    def init(params):
        return ScaleByAdamState(count=_zero_count(), mu=_zeros_like(params),
                                nu=_zeros_like(params),
                                nu_max=_zeros_like(params) if amsgrad else None)

    def update(updates, state, params=None):
        _check_grads("scale_by_adam", updates, state, ScaleByAdamState, "mu")
        count = state.count + 1
        mu = _ema(updates, state.mu, b1)
        nu = _ema(tree.map(lambda g: g * g, updates), state.nu, b2)
        nu_max = tree.map(fnp.maximum, state.nu_max, nu) if amsgrad else None
        mu_hat = _bias_corrected(mu, b1, count)
        nu_hat = _bias_corrected(nu_max if amsgrad else nu, b2, count)
        updates = tree.map(lambda m, v: m / (fnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    nu: Any  # EMA of the squared gradients


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                 *, eps_in_sqrt: bool = True) -> GradientTransformation:
    """Divide updates by the root of an EMA of squared gradients (RMSprop, Hinton 2012)::

        v_t = decay v_{t-1} + (1 - decay) g^2,     v_0 = initial_scale
        u   = g / sqrt(v_t + eps)          (eps_in_sqrt=True, optax's default)
        u   = g / (sqrt(v_t) + eps)        (eps_in_sqrt=False, torch's RMSprop)

    ``torch.optim.RMSprop(alpha=decay, eps=eps)`` is ``eps_in_sqrt=False, initial_scale=0``.
    ``decay`` must be in [0, 1]; ``eps`` and ``initial_scale`` non-negative.
    """
    _unit("scale_by_rms", "decay", decay)
    _non_negative("scale_by_rms", "eps", eps)
    _non_negative("scale_by_rms", "initial_scale", initial_scale, "it is a mean of squares")

    def init(params):
        return ScaleByRmsState(nu=tree.map(lambda p: fnp.full_like(p, initial_scale), params))

    def update(updates, state, params=None):
        _check_grads("scale_by_rms", updates, state, ScaleByRmsState, "nu")
        nu = _ema(tree.map(lambda g: g * g, updates), state.nu, decay)
        updates = tree.map(lambda g, v: g / _root(v, eps, eps_in_sqrt), updates, nu)
        return updates, ScaleByRmsState(nu=nu)

    return GradientTransformation(init, update)


def _root(v, eps, eps_in_sqrt):
    return fnp.sqrt(v + eps) if eps_in_sqrt else fnp.sqrt(v) + eps


class ScaleByRStdDevState(NamedTuple):
    mu: Any  # EMA of the gradients
    nu: Any  # EMA of the squared gradients


def scale_by_stddev(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                    *, eps_in_sqrt: bool = True) -> GradientTransformation:
    """Centered RMSprop: divide by an estimate of the gradient's standard deviation::

        m_t = decay m_{t-1} + (1 - decay) g
        v_t = decay v_{t-1} + (1 - decay) g^2
        u   = g / sqrt(v_t - m_t^2 + eps)      (or g / (sqrt(v_t - m_t^2) + eps))

    ``torch.optim.RMSprop(centered=True)`` is ``eps_in_sqrt=False, initial_scale=0``.
    ``decay`` must be in [0, 1]; ``eps`` and ``initial_scale`` non-negative.
    """
    _unit("scale_by_stddev", "decay", decay)
    _non_negative("scale_by_stddev", "eps", eps)
    _non_negative("scale_by_stddev", "initial_scale", initial_scale, "it is a mean of squares")

    def init(params):
        return ScaleByRStdDevState(mu=_zeros_like(params),
                                   nu=tree.map(lambda p: fnp.full_like(p, initial_scale), params))

    def update(updates, state, params=None):
        _check_grads("scale_by_stddev", updates, state, ScaleByRStdDevState, "mu")
        mu = _ema(updates, state.mu, decay)
        nu = _ema(tree.map(lambda g: g * g, updates), state.nu, decay)
        updates = tree.map(lambda g, m, v: g / _root(v - m * m, eps, eps_in_sqrt), updates, mu, nu)
        return updates, ScaleByRStdDevState(mu=mu, nu=nu)

    return GradientTransformation(init, update)


class ScaleByRssState(NamedTuple):
    sum_of_squares: Any  # initial_accumulator_value + the sum of all squared gradients


def scale_by_rss(initial_accumulator_value: float = 0.1,
                 eps: float = 1e-7) -> GradientTransformation:
    """Adagrad's preconditioner: divide by the root of the sum of squared gradients::

        s_t = s_{t-1} + g^2,    s_0 = initial_accumulator_value
        u   = g / sqrt(s_t + eps)      (u = 0 where s_t = 0)

    torch's Adagrad puts ``eps`` outside the root (``g / (sqrt(s_t) + eps)``) and starts from
    ``initial_accumulator_value=0``, ``eps=1e-10``; with ``eps=0`` and one positive
    ``initial_accumulator_value`` in both, the two are the same optimizer. Both must be
    non-negative (as torch checks).
    """
    _non_negative("scale_by_rss", "initial_accumulator_value", initial_accumulator_value,
                  "it is a sum of squares")
    _non_negative("scale_by_rss", "eps", eps)

    def init(params):
        return ScaleByRssState(
            sum_of_squares=tree.map(lambda p: fnp.full_like(p, initial_accumulator_value), params))

    def update(updates, state, params=None):
        _check_grads("scale_by_rss", updates, state, ScaleByRssState, "sum_of_squares")
        sum_of_squares = tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)

        def precondition(g, s):
            seen = s > 0
            # The inner where keeps 1/sqrt(0) out of the discarded branch (and its derivative).
            inv_root = fnp.where(seen, 1 / fnp.sqrt(fnp.where(seen, s, 1.0) + eps), 0.0)
            return g * inv_root

        updates = tree.map(precondition, updates, sum_of_squares)
        return updates, ScaleByRssState(sum_of_squares=sum_of_squares)

    return GradientTransformation(init, update)


class ScaleByLionState(NamedTuple):
    mu: Any  # EMA of the gradients, with rate b2


def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> GradientTransformation:
    """Lion's sign update (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms")::

        u   = sign(b1 m_{t-1} + (1 - b1) g)      (the step interpolates with rate b1)
        m_t = b2 m_{t-1} + (1 - b2) g           (the memory decays with rate b2)

    Every coordinate moves by exactly the learning rate, so Lion wants a learning rate 3-10x
    smaller than Adam's and a correspondingly larger weight decay. ``b1``, ``b2`` in [0, 1].
    """
    _unit("scale_by_lion", "b1", b1)
    _unit("scale_by_lion", "b2", b2)

    def init(params):
        return ScaleByLionState(mu=_zeros_like(params))

    def update(updates, state, params=None):
        _check_grads("scale_by_lion", updates, state, ScaleByLionState, "mu")
        direction = tree.map(lambda g, m: fnp.sign(b1 * m + (1 - b1) * g), updates, state.mu)
        mu = _ema(updates, state.mu, b2)
        return direction, ScaleByLionState(mu=mu)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Momentum and weight decay
# --------------------------------------------------------------------------------------------

class TraceState(NamedTuple):
    count: Any  # int64 scalar: steps taken (the first step is not dampened)
    trace: Any  # the momentum buffer


def trace(decay: float, nesterov: bool = False, dampening: float = 0.0) -> GradientTransformation:
    """Momentum, as in ``torch.optim.SGD``: ``decay`` is torch's ``momentum``::

        b_1 = g,   b_t = decay b_{t-1} + (1 - dampening) g      (the momentum buffer)
        u   = b_t                      (heavy ball)
        u   = g + decay b_t            (nesterov=True)

    The first buffer is the gradient itself, not dampened, as in torch. With
    ``dampening=0`` (the default) this is exactly ``optax.trace``, whose buffer starts at zero.
    ``decay`` must be non-negative and ``dampening`` in [0, 1]; Nesterov momentum needs
    ``dampening=0`` (torch raises the same errors).
    """
    _non_negative("trace", "decay (momentum)", decay, "a negative momentum oscillates")
    _unit("trace", "dampening", dampening)
    if nesterov and not isinstance(dampening, Tracer) and np.any(np.asarray(dampening) != 0):
        raise ValueError(f"foptim.trace: Nesterov momentum needs dampening=0 (as torch), got "
                         f"dampening={dampening!r}")

    def init(params):
        return TraceState(count=_zero_count(), trace=_zeros_like(params))

    def update(updates, state, params=None):
        _check_grads("trace", updates, state, TraceState, "trace")
        # 1 at the first step, (1 - dampening) afterwards; the old buffer is zero at step one.
        grad_weight = 1 - dampening * (state.count > 0)
        buffer = tree.map(lambda g, b: decay * b + _cast_like(grad_weight, g) * g,
                          updates, state.trace)
        if nesterov:
            updates = tree.map(lambda g, b: g + decay * b, updates, buffer)
        else:
            updates = buffer
        return updates, TraceState(count=state.count + 1, trace=buffer)

    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay: float = 0.0, mask=None) -> GradientTransformation:
    """Add ``weight_decay * params`` to the updates: ``u = g + wd p``.

    Where this stage sits in a chain decides the kind of weight decay:

    * before the preconditioner (``chain(add_decayed_weights(wd), scale_by_adam(), ...)``) it
      is L2 regularisation, the ``weight_decay`` argument of ``torch.optim.SGD`` / ``Adam``:
      the decay term is rescaled with the gradient;
    * after it (``chain(scale_by_adam(), add_decayed_weights(wd), scale_by_learning_rate(lr))``)
      it is decoupled weight decay, ``torch.optim.AdamW``: ``p <- p - lr (adam(g) + wd p)``.

    ``mask`` (a pytree of bools matching, or a prefix of, the params, or a function of the
    params returning one) limits the decay to the ``True`` leaves: see :func:`masked`. The
    parameters must be passed to ``update``.
    """
    _non_negative("add_decayed_weights", "weight_decay", weight_decay,
                  "a negative decay pushes the parameters away from zero")
    if mask is not None:
        return masked(add_decayed_weights(weight_decay), mask)

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        if _is_static_zero(weight_decay):  # no decay: nothing to add, and params not needed
            return updates, state
        if params is None:
            raise ValueError("add_decayed_weights: update(grads, state, params) needs the params "
                             "to decay them; pass params=... to the optimizer's update")
        check_like("foptim.add_decayed_weights.update", "updates", updates, "params", params,
                   dtypes=False)
        return tree.map(lambda g, p: g + weight_decay * p, updates, params), state

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Clipping
# --------------------------------------------------------------------------------------------

def global_norm(updates):
    """The 2-norm of all leaves together: ``sqrt(sum over leaves of sum(x^2))``.

    Its derivative at zero is taken to be zero (as torch's norm does), not the NaN that
    ``0 * d sqrt(0)`` would give, so clipping zero gradients stays differentiable.
    """
    squared = sum(fnp.sum(x * x) for x in tree.leaves(updates))
    nonzero = squared > 0
    return fnp.where(nonzero, fnp.sqrt(fnp.where(nonzero, squared, 1.0)), 0.0)


def clip(max_delta: float) -> GradientTransformation:
    """Clip every element to ``[-max_delta, max_delta]`` (``torch.nn.utils.clip_grad_value_``);
    ``max_delta`` must be non-negative."""
    _non_negative("clip", "max_delta", max_delta, "a negative bound flips every update")

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        return tree.map(lambda g: fnp.clip(g, -max_delta, max_delta), updates), state

    return GradientTransformation(init, update)


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Rescale all updates together so that their :func:`global_norm` is at most ``max_norm``::

        u = g                          if ||g|| < max_norm
        u = g * max_norm / ||g||       otherwise

    ``torch.nn.utils.clip_grad_norm_`` divides by ``||g|| + 1e-6`` instead (and always
    multiplies, by ``min(1, max_norm / (||g|| + 1e-6))``), so its clipped norm is a little
    below ``max_norm``; optax's formula, used here, lands on it exactly. ``max_norm`` must be
    non-negative: a negative one would flip the clipped updates into ascent.
    """
    _non_negative("clip_by_global_norm", "max_norm", max_norm,
                  "a negative norm flips the clipped updates into ascent")

    def init(params):
        return EmptyState()

    def update(updates, state, params=None):
        norm = global_norm(updates)
        under = norm < max_norm
        # The inner where keeps 1/0 out of the discarded branch when every update is zero.
        factor = max_norm / fnp.where(under, 1.0, norm)
        updates = tree.map(lambda g: fnp.where(under, g, g * factor), updates)
        return updates, state

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------------------------
# Wrappers: masks, gradient accumulation, injected hyper-parameters
# --------------------------------------------------------------------------------------------

class MaskedState(NamedTuple):
    inner_state: Any  # the inner transformation's state, over the selected leaves only


def masked(inner: GradientTransformation, mask) -> GradientTransformation:
    """Apply ``inner`` to the leaves where ``mask`` is True; pass the others through.

    ``mask`` is a pytree of bools with the structure of the params (or a prefix of it: one
    bool covers a subtree), or a function ``params -> mask`` (called on the params in
    ``init`` and on the updates in ``update``). The inner transformation sees, and keeps state
    for, the selected leaves only, as a list. The usual use is no weight decay on biases and
    normalisation scales::

        decay_matrices = lambda params: fgrad.tree.map(lambda p: p.ndim > 1, params)
        tx = foptim.masked(foptim.add_decayed_weights(1e-2), decay_matrices)
    """

    def flags(tree_):
        mask_tree = mask(tree_) if callable(mask) else mask
        return [bool(m) for m in tree.broadcast_prefix(mask_tree, tree_, what="mask")]

    def select(leaves, chosen):
        return [x for x, keep in zip(leaves, chosen) if keep]

    def init(params):
        return MaskedState(inner_state=inner.init(select(tree.leaves(params), flags(params))))

    def update(updates, state, params=None):
        chosen = flags(updates)
        leaves, treedef = tree.flatten(updates)
        inner_params = None if params is None else select(tree.leaves(params), chosen)
        new_selected, inner_state = inner.update(select(leaves, chosen), state.inner_state,
                                                 inner_params)
        new_selected = iter(new_selected)
        leaves = [next(new_selected) if keep else x for x, keep in zip(leaves, chosen)]
        return tree.unflatten(treedef, leaves), MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


class MultiStepsState(NamedTuple):
    mini_step: Any      # int64 scalar: gradients accumulated since the last inner step
    gradient_step: Any  # int64 scalar: inner steps taken
    inner_state: Any    # the wrapped optimizer's state
    acc_grads: Any      # the running mean (or sum) of the accumulated gradients


def multi_steps(inner: GradientTransformation, every_k_schedule,
                use_grad_mean: bool = True) -> GradientTransformation:
    """Gradient accumulation: take one ``inner`` step every ``k`` calls (optax's ``MultiSteps``).

    The first ``k - 1`` calls add their gradients to an accumulator and return zero updates;
    the ``k``-th passes the mean of the ``k`` gradients (their sum if ``use_grad_mean=False``)
    to ``inner`` and returns its updates. So ``k`` calls on the gradients of ``k`` micro-
    batches make the same step as one call on the gradient of the whole batch.
    ``every_k_schedule`` is an int or a function of the number of inner steps taken.

    Both outcomes are computed at every call and one is chosen with ``fnp.where``: the
    choice depends on a count in the state, which may be a traced (``vmap``-ed) value.
    """
    if not callable(every_k_schedule):
        if isinstance(every_k_schedule, bool) or not isinstance(every_k_schedule, (int, np.integer)) \
                or every_k_schedule < 1:
            raise ValueError(f"foptim.multi_steps: every_k_schedule must be a positive int (the "
                             f"number of gradients per step) or a schedule, got "
                             f"{every_k_schedule!r}")
    k_of = every_k_schedule if callable(every_k_schedule) else (lambda step: every_k_schedule)

    def init(params):
        return MultiStepsState(mini_step=_zero_count(), gradient_step=_zero_count(),
                               inner_state=inner.init(params), acc_grads=_zeros_like(params))

    def update(updates, state, params=None):
        _check_grads("multi_steps", updates, state, MultiStepsState, "acc_grads")
        n = state.mini_step
        if use_grad_mean:
            # The running mean after n + 1 gradients: a + (g - a) / (n + 1).
            acc = tree.map(lambda g, a: a + (g - a) / _cast_like(n + 1, g), updates, state.acc_grads)
        else:
            acc = tree.map(lambda g, a: a + g, updates, state.acc_grads)
        inner_updates, inner_state = inner.update(acc, state.inner_state, params)
        emit = n == k_of(state.gradient_step) - 1
        new_state = MultiStepsState(
            mini_step=fnp.where(emit, 0, n + 1),
            gradient_step=state.gradient_step + fnp.astype(emit, np.int64),
            inner_state=tree.map(lambda new, old: fnp.where(emit, new, old),
                                 inner_state, state.inner_state),
            acc_grads=tree.map(lambda a: fnp.where(emit, fnp.zeros_like(a), a), acc))
        updates = tree.map(lambda u: fnp.where(emit, u, fnp.zeros_like(u)), inner_updates)
        return updates, new_state

    return GradientTransformation(init, update)


class InjectHyperparamsState(NamedTuple):
    count: Any        # int64 scalar: steps taken (the argument of the schedules)
    hyperparams: Any  # dict name -> 0-d array: the values used at the last step
    inner_state: Any  # the wrapped optimizer's state


def inject_hyperparams(inner_factory: Callable, static_args=()) -> Callable:
    """Make an optimizer's numeric hyper-parameters part of its state.

    ``inject_hyperparams(foptim.adam)(learning_rate=..., b1=...)`` builds an optimizer whose
    numeric arguments live in ``state.hyperparams`` (a dict of 0-d arrays). Each one may be:

    * a number: stored in the state, where it can be read and changed between steps::

          state = state._replace(hyperparams={**state.hyperparams, "learning_rate": 1e-4})

    * a schedule (any callable): evaluated at the step count before every step; the value
      used is recorded in ``state.hyperparams`` (changing it there has no effect).

    Booleans, ``None`` and the names in ``static_args`` (for callables that are not schedules,
    such as a weight-decay ``mask``) are fixed arguments of ``inner_factory``. The inner
    optimizer is rebuilt with the current values at every step, so its state structure must
    not depend on them. Float hyper-parameters are stored in the params' float dtype.
    """
    static_args = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = static_args - set(signature.parameters)
    if unknown:
        raise ValueError(f"inject_hyperparams({inner_factory.__name__}): static_args "
                         f"{sorted(unknown)} are not parameters of {inner_factory.__name__}; "
                         f"it takes {list(signature.parameters)}")

    @functools.wraps(inner_factory)
    def build(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs)
        arguments.apply_defaults()
        fixed, schedules, numeric = {}, {}, {}
        for name, value in arguments.arguments.items():
            if name in static_args or isinstance(value, bool) or value is None:
                fixed[name] = value
            elif callable(value):
                schedules[name] = value
            elif isinstance(value, (int, float, np.ndarray, np.generic, Tracer)):
                numeric[name] = value
            else:
                fixed[name] = value

        def current(hyperparams, count):
            """The stored numbers, with every schedule evaluated at ``count``, each in its dtype."""
            values = dict(hyperparams)
            for name, schedule in schedules.items():
                values[name] = fnp.astype(schedule(count), dtype_of(hyperparams[name]))
            return values

        def init(params):
            dtype = _float_dtype(params)
            stored = {name: _as_hyperparam(value, dtype) for name, value in numeric.items()}
            count = _zero_count()
            stored.update({name: _as_hyperparam(s(count), dtype) for name, s in schedules.items()})
            inner_state = inner_factory(**fixed, **stored).init(params)
            return InjectHyperparamsState(count=count, hyperparams=stored, inner_state=inner_state)

        def update(updates, state, params=None):
            hyperparams = current(state.hyperparams, state.count)
            inner = inner_factory(**fixed, **hyperparams)
            updates, inner_state = inner.update(updates, state.inner_state, params)
            return updates, InjectHyperparamsState(count=state.count + 1, hyperparams=hyperparams,
                                                   inner_state=inner_state)

        return GradientTransformation(init, update)

    return build


def _float_dtype(params):
    """The widest float dtype among the leaves of ``params`` (float64 if there is none)."""
    floats = [dtype_of(p) for p in tree.leaves(params) if np.issubdtype(dtype_of(p), np.floating)]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


def _as_hyperparam(value, float_dtype):
    """A 0-d array: floats in ``float_dtype``, integers as they are."""
    if np.issubdtype(dtype_of(value), np.floating):
        return fnp.astype(value, float_dtype)
    return fnp.asarray(value)
