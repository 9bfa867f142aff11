"""Learning-rate schedules: functions from the step count to a value.

A schedule is any callable ``schedule(count) -> value``, ``count`` being the number of
updates taken before this one (0 at the first step). Pass one wherever a ``learning_rate``
goes; the optimizer keeps the count in its state::

    lr = foptim.warmup_cosine_decay_schedule(0.0, peak_value=3e-4, warmup_steps=100,
                                             decay_steps=10_000)
    opt = foptim.adamw(learning_rate=lr)

The schedules are written with ``fgrad.numpy`` operations, so ``count`` may be an int, a
NumPy integer or a traced value (a ``vmap``-ed optimizer state). Their names and arguments
are optax's; each docstring names the ``torch.optim.lr_scheduler`` class it reproduces,
where one exists (a torch scheduler's "epoch" is this count).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from fgrad import numpy as fnp

__all__ = ["constant_schedule", "polynomial_schedule", "linear_schedule", "cosine_decay_schedule",
           "warmup_cosine_decay_schedule", "exponential_decay", "step_decay_schedule",
           "piecewise_constant_schedule", "join_schedules"]


def _positive_steps(name, what, steps):
    if steps <= 0:
        raise ValueError(f"{name}: {what} must be a positive number of steps, got {steps}")


def constant_schedule(value) -> Callable:
    """``value`` at every step."""
    return lambda count: value


def polynomial_schedule(init_value, end_value, power, transition_steps,
                        transition_begin: int = 0) -> Callable:
    """Polynomial interpolation from ``init_value`` to ``end_value`` over ``transition_steps``::

        s = clip(count - transition_begin, 0, transition_steps)
        value = (init_value - end_value) (1 - s / transition_steps)^power + end_value

    ``init_value`` before ``transition_begin``, ``end_value`` after the transition.
    ``torch.optim.lr_scheduler.PolynomialLR(total_iters=n, power=k)`` on base rate ``lr`` is
    ``polynomial_schedule(lr, 0.0, k, n)``.
    """
    _positive_steps("polynomial_schedule", "transition_steps", transition_steps)

    def schedule(count):
        s = fnp.clip(count - transition_begin, 0, transition_steps)
        return (init_value - end_value) * (1 - s / transition_steps) ** power + end_value

    return schedule


def linear_schedule(init_value, end_value, transition_steps, transition_begin: int = 0) -> Callable:
    """Linear interpolation from ``init_value`` to ``end_value``: :func:`polynomial_schedule`
    with ``power=1``; a linear warm-up when ``init_value < end_value``.

    ``torch.optim.lr_scheduler.LinearLR(start_factor=a, end_factor=b, total_iters=n)`` on base
    rate ``lr`` is ``linear_schedule(a * lr, b * lr, n)``.
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def cosine_decay_schedule(init_value, decay_steps, alpha: float = 0.0,
                          exponent: float = 1.0) -> Callable:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``::

        s = min(count, decay_steps)
        value = init_value ((1 - alpha) (0.5 (1 + cos(pi s / decay_steps)))^exponent + alpha)

    and constant afterwards. ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=n,
    eta_min=e)`` on base rate ``lr`` is ``cosine_decay_schedule(lr, n, alpha=e / lr)`` for the
    first ``n`` steps (torch then climbs back up the cosine; optax and this schedule stay at
    the minimum).
    """
    _positive_steps("cosine_decay_schedule", "decay_steps", decay_steps)

    def schedule(count):
        s = fnp.minimum(count, decay_steps)
        cosine = 0.5 * (1 + fnp.cos(math.pi * s / decay_steps))
        return init_value * ((1 - alpha) * cosine ** exponent + alpha)

    return schedule


def warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps, decay_steps,
                                 end_value: float = 0.0, exponent: float = 1.0) -> Callable:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then cosine
    decay to ``end_value``; ``decay_steps`` counts the whole schedule, warm-up included (as in
    optax)::

        value = linear_schedule(init_value, peak_value, warmup_steps)(count)    count < warmup_steps
        value = cosine_decay_schedule(peak_value, decay_steps - warmup_steps,
                                      alpha=end_value / peak_value)(count - warmup_steps)
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_cosine_decay_schedule: warmup_steps must be non-negative, got "
                         f"{warmup_steps}")
    if decay_steps <= warmup_steps:
        raise ValueError(f"warmup_cosine_decay_schedule: decay_steps ({decay_steps}) counts the "
                         f"warm-up too, so it must exceed warmup_steps ({warmup_steps})")
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    warmup = (linear_schedule(init_value, peak_value, warmup_steps) if warmup_steps > 0
              else constant_schedule(peak_value))
    return join_schedules(
        [warmup, cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)],
        [warmup_steps])


def exponential_decay(init_value, transition_steps, decay_rate, transition_begin: int = 0,
                      staircase: bool = False, end_value=None) -> Callable:
    """Exponential decay by ``decay_rate`` every ``transition_steps``::

        value = init_value decay_rate^((count - transition_begin) / transition_steps)

    (``init_value`` before ``transition_begin``). ``staircase=True`` floors the exponent, so
    the value drops in steps. ``end_value`` bounds the result (below when decaying, above when
    ``decay_rate > 1``). ``torch.optim.lr_scheduler.ExponentialLR(gamma)`` is
    ``exponential_decay(lr, 1, gamma)``; ``StepLR(step_size, gamma)`` is
    ``exponential_decay(lr, step_size, gamma, staircase=True)``, also spelled
    :func:`step_decay_schedule`. ``decay_rate`` must be positive: a fractional power of a
    negative rate is complex, and of zero infinite before the first transition.
    """
    _positive_steps("exponential_decay", "transition_steps", transition_steps)
    if not callable(decay_rate) and not decay_rate > 0:
        raise ValueError(f"exponential_decay: decay_rate must be positive (the factor applied "
                         f"every transition_steps), got {decay_rate!r}")

    def schedule(count):
        elapsed = count - transition_begin
        exponent = elapsed / transition_steps
        if staircase:
            exponent = fnp.floor(exponent)
        value = fnp.where(elapsed <= 0, init_value, init_value * decay_rate ** exponent)
        if end_value is not None:
            bound = fnp.maximum if decay_rate < 1 else fnp.minimum
            value = bound(value, end_value)
        return value

    return schedule


def step_decay_schedule(init_value, step_size, gamma: float = 0.1) -> Callable:
    """Step decay: multiply by ``gamma`` every ``step_size`` steps,
    ``init_value gamma^floor(count / step_size)``.

    ``torch.optim.lr_scheduler.StepLR(step_size, gamma)``; the same as
    ``exponential_decay(init_value, step_size, gamma, staircase=True)``.
    """
    return exponential_decay(init_value, step_size, gamma, staircase=True)


def piecewise_constant_schedule(init_value, boundaries_and_scales=None) -> Callable:
    """``init_value`` multiplied by ``scale`` from the step ``boundary`` on, for every
    ``boundary: scale`` pair of ``boundaries_and_scales``.

    ``torch.optim.lr_scheduler.MultiStepLR(milestones, gamma)`` is
    ``piecewise_constant_schedule(lr, {m: gamma for m in milestones})``. Boundaries are step
    counts (ints); their order in the dict does not matter.
    """
    pairs = sorted((boundaries_and_scales or {}).items())
    if any(isinstance(b, bool) or not isinstance(b, (int, np.integer)) for b, _ in pairs):
        raise ValueError(f"piecewise_constant_schedule: boundaries must be int step counts, got "
                         f"{[b for b, _ in pairs]}")
    if any(scale < 0 for _, scale in pairs):
        raise ValueError(f"piecewise_constant_schedule: scales must be non-negative, got "
                         f"{dict(pairs)}")

    def schedule(count):
        value = init_value
        for boundary, scale in pairs:
            value = fnp.where(count < boundary, value, value * scale)
        return value

    return schedule


def join_schedules(schedules: Sequence[Callable], boundaries: Sequence[int]) -> Callable:
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]`` until ``boundaries[1]``,
    and so on; each later schedule sees the count since its own start (``count - boundary``).
    ``boundaries`` must be non-decreasing step counts.
    """
    boundaries = list(boundaries)
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(f"join_schedules: {len(schedules)} schedules need "
                         f"{len(schedules) - 1} boundaries, got {len(boundaries)}")
    if any(b > a for b, a in zip(boundaries, boundaries[1:])):
        raise ValueError(f"join_schedules: boundaries must be sorted (each schedule starts where "
                         f"the previous one ends), got {boundaries}")

    def schedule(count):
        value = schedules[0](count)
        for boundary, later in zip(boundaries, schedules[1:]):
            value = fnp.where(count < boundary, value, later(count - boundary))
        return value

    return schedule
