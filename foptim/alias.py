"""The familiar optimizers, each a :func:`~foptim.chain` of the transforms in ``transforms.py``.

Names, arguments and defaults are optax's. Each one is a ``torch.optim`` optimizer, step for
step, when the settings correspond (the tests compare 50-step trajectories in float64)::

    sgd(lr, momentum, nesterov, dampening, weight_decay)
        = SGD(lr, momentum, dampening, weight_decay, nesterov)
    adam(lr, b1, b2, eps, amsgrad=a)
        = Adam(lr, betas=(b1, b2), eps, amsgrad=a)
    adamw(lr, b1, b2, eps, weight_decay=wd)
        = AdamW(lr, betas=(b1, b2), eps, weight_decay=wd)
    rmsprop(lr, decay=a, eps, eps_in_sqrt=False, centered, momentum)
        = RMSprop(lr, alpha=a, eps, centered, momentum)
    adagrad(lr, initial_accumulator_value=v, eps=0)
        = Adagrad(lr, initial_accumulator_value=v, eps=0)

Where the two libraries differ by default (each docstring says how):

* defaults: optax's ``rmsprop`` decay is 0.9 (torch's ``alpha`` 0.99); ``adamw``'s weight
  decay is 1e-4 (torch 1e-2); ``adagrad`` starts its accumulator at 0.1 with ``eps=1e-7``
  inside the square root (torch: 0 and 1e-10 outside);
* ``eps`` placement: Adam adds it outside the root in both; RMSprop adds it inside in optax
  (``eps_in_sqrt=True``) and outside in torch;
* weight decay: ``torch.optim.Adam(weight_decay=wd)`` is L2 regularisation, coupled to the
  gradient; here that is ``chain(add_decayed_weights(wd), scale_by_adam(...),
  scale_by_learning_rate(lr))``, while ``adamw`` decouples it as ``torch.optim.AdamW`` does.
"""
from __future__ import annotations

import numpy as np

from fgrad.core import Tracer

from . import transforms as tx
from .base import GradientTransformation, identity
from .combine import named_chain

__all__ = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "lion"]


def sgd(learning_rate, momentum=None, nesterov: bool = False, dampening: float = 0.0,
        weight_decay: float = 0.0) -> GradientTransformation:
    """Stochastic gradient descent, with optional momentum and L2 weight decay::

        d = g + weight_decay p                                 (L2 term, as in torch)
        b = d (first step),  b = momentum b + (1 - dampening) d    (if momentum is not None)
        p <- p - lr (d + momentum b)   (nesterov)   or   p <- p - lr b

    This is ``torch.optim.SGD(lr, momentum, dampening, weight_decay, nesterov)`` exactly
    (``momentum=None`` here is torch's ``momentum=0``). optax's ``sgd`` has no weight decay
    or dampening; with both zero the two agree. ``learning_rate`` may be a schedule.
    As torch, ``nesterov=True`` needs a positive ``momentum`` and no dampening, and the
    learning rate, momentum and weight decay must be non-negative.
    """
    if nesterov and (momentum is None or (not callable(momentum) and np.ndim(momentum) == 0
                                          and not isinstance(momentum, Tracer) and momentum <= 0)):
        raise ValueError(f"foptim.sgd: nesterov=True needs a positive momentum (as torch), got "
                         f"momentum={momentum!r}")
    return named_chain("sgd",
        tx.add_decayed_weights(weight_decay),
        tx.trace(decay=momentum, nesterov=nesterov, dampening=dampening)
        if momentum is not None else identity(),
        tx.scale_by_learning_rate(learning_rate),
    )


def adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, amsgrad: bool = False) -> GradientTransformation:
    """Adam (Kingma & Ba, 2015): ``p <- p - lr m_hat / (sqrt(v_hat + eps_root) + eps)``.

    ``m_hat``, ``v_hat`` are the bias-corrected moving averages of ``g`` and ``g^2`` (see
    :func:`foptim.scale_by_adam`, which also defines ``amsgrad``). Equals
    ``torch.optim.Adam(lr, betas=(b1, b2), eps=eps, amsgrad=amsgrad)``. For torch's
    ``weight_decay`` (L2, added to the gradient before the moments) use
    ``chain(add_decayed_weights(wd), scale_by_adam(...), scale_by_learning_rate(lr))``.
    """
    return named_chain("adam",
        tx.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, amsgrad=amsgrad),
        tx.scale_by_learning_rate(learning_rate),
    )


def adamw(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, weight_decay: float = 1e-4, mask=None,
          amsgrad: bool = False) -> GradientTransformation:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019)::

        p <- p - lr (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay p)

    The decay is applied to the parameters directly, not passed through Adam's moments.
    Equals ``torch.optim.AdamW(lr, betas=(b1, b2), eps, weight_decay, amsgrad)`` (torch's
    default ``weight_decay`` is 1e-2, optax's 1e-4). ``mask`` (a pytree of bools or a
    function of the params, see :func:`foptim.masked`) limits the decay, typically to
    exclude biases and normalisation scales.
    """
    return named_chain("adamw",
        tx.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, amsgrad=amsgrad),
        tx.add_decayed_weights(weight_decay, mask),
        tx.scale_by_learning_rate(learning_rate),
    )


def rmsprop(learning_rate, decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
            eps_in_sqrt: bool = True, centered: bool = False, momentum=None,
            nesterov: bool = False) -> GradientTransformation:
    """RMSprop: divide by a moving root mean square of the gradients (Hinton, 2012)::

        v <- decay v + (1 - decay) g^2               (v starts at initial_scale)
        s  = v                      s = v - m^2, m <- decay m + (1 - decay) g   (centered)
        d  = g / sqrt(s + eps)      (eps_in_sqrt=True)   or   g / (sqrt(s) + eps)
        p <- p - lr d                       or, with momentum, b <- momentum b + lr d; p <- p - b

    ``torch.optim.RMSprop(lr, alpha=decay, eps, centered, momentum)`` is this with
    ``eps_in_sqrt=False`` and ``initial_scale=0`` (torch puts ``eps`` outside the root; optax's
    default puts it inside). The learning rate is applied before the momentum buffer, as in
    optax; with a constant learning rate that equals torch's ``p <- p - lr b``.
    """
    preconditioner = tx.scale_by_stddev if centered else tx.scale_by_rms
    return named_chain("rmsprop",
        preconditioner(decay=decay, eps=eps, initial_scale=initial_scale, eps_in_sqrt=eps_in_sqrt),
        tx.scale_by_learning_rate(learning_rate),
        tx.trace(decay=momentum, nesterov=nesterov) if momentum is not None else identity(),
    )


def adagrad(learning_rate, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> GradientTransformation:
    """Adagrad (Duchi et al., 2011): ``p <- p - lr g / sqrt(s + eps)``, ``s`` the running sum of
    ``g^2`` started at ``initial_accumulator_value``.

    ``torch.optim.Adagrad`` puts ``eps`` outside the root and starts at 0 by default; with
    ``eps=0`` and the same positive ``initial_accumulator_value`` (and torch's
    ``lr_decay=0``) the two are identical.
    """
    return named_chain("adagrad",
        tx.scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps),
        tx.scale_by_learning_rate(learning_rate),
    )


def lion(learning_rate, b1: float = 0.9, b2: float = 0.99, weight_decay: float = 1e-3,
         mask=None) -> GradientTransformation:
    """Lion (Chen et al., 2023): a sign step with decoupled weight decay::

        p <- p - lr (sign(b1 m + (1 - b1) g) + weight_decay p),    m <- b2 m + (1 - b2) g

    torch.optim has no Lion; this follows the paper's Algorithm 2 and optax.
    """
    return named_chain("lion",
        tx.scale_by_lion(b1=b1, b2=b2),
        tx.add_decayed_weights(weight_decay, mask),
        tx.scale_by_learning_rate(learning_rate),
    )
