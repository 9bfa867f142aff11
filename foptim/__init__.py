"""foptim: optimizers as pure ``(init, update)`` pairs, in the style of optax.

>>> import numpy as np, fgrad, fgrad.numpy as fnp, foptim
>>> def loss(params): return fnp.sum((params["w"] - 3.0) ** 2)
>>> params = {"w": np.zeros(2)}
>>> opt = foptim.adam(learning_rate=0.1)
>>> state = opt.init(params)
>>> for _ in range(3):
...     grads = fgrad.grad(loss)(params)
...     updates, state = opt.update(grads, state, params)
...     params = foptim.apply_updates(params, updates)

The pieces: ``base`` (the contract), ``transforms`` (the small stages), ``combine.chain``
(composition), ``alias`` (sgd, adam, adamw, rmsprop, adagrad, lion as chains) and
``schedules`` (learning rates as functions of the step count).
"""
from .alias import adagrad, adam, adamw, lion, rmsprop, sgd
from .base import EmptyState, GradientTransformation, apply_updates, identity
from .combine import chain
from .schedules import (constant_schedule, cosine_decay_schedule, exponential_decay,
                        join_schedules, linear_schedule, piecewise_constant_schedule,
                        polynomial_schedule, step_decay_schedule, warmup_cosine_decay_schedule)
from .transforms import (InjectHyperparamsState, MaskedState, MultiStepsState,
                         ScaleByAdamState, ScaleByLionState, ScaleByRmsState,
                         ScaleByRssState, ScaleByRStdDevState, ScaleByScheduleState, TraceState,
                         add_decayed_weights, clip, clip_by_global_norm, global_norm,
                         inject_hyperparams, masked, multi_steps, scale, scale_by_adam,
                         scale_by_learning_rate, scale_by_lion, scale_by_rms, scale_by_rss,
                         scale_by_schedule, scale_by_stddev, trace)

__all__ = [
    # the contract
    "GradientTransformation", "EmptyState", "identity", "apply_updates", "chain",
    # optimizers
    "sgd", "adam", "adamw", "rmsprop", "adagrad", "lion",
    # transforms
    "scale", "scale_by_learning_rate", "scale_by_schedule", "scale_by_adam", "scale_by_rms",
    "scale_by_stddev", "scale_by_rss", "scale_by_lion", "trace", "add_decayed_weights", "clip",
    "clip_by_global_norm", "global_norm", "masked", "multi_steps", "inject_hyperparams",
    # their states
    "ScaleByScheduleState", "ScaleByAdamState", "ScaleByRmsState", "ScaleByRStdDevState",
    "ScaleByRssState", "ScaleByLionState", "TraceState", "MaskedState", "MultiStepsState",
    "InjectHyperparamsState",
    # schedules
    "constant_schedule", "polynomial_schedule", "linear_schedule", "cosine_decay_schedule",
    "warmup_cosine_decay_schedule", "exponential_decay", "step_decay_schedule",
    "piecewise_constant_schedule", "join_schedules",
]
