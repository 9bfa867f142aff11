"""foptim against torch.optim, torch.optim.lr_scheduler, NumPy references and finite differences.

The core table, ``TORCH_CASES``, pairs each foptim optimizer with the torch.optim settings
that make it the same algorithm; every row runs 50 steps on a least-squares problem and on a
small MLP (fgrad's gradients for foptim, torch autograd's for torch) and compares the whole
parameter trajectory in float64. Adding an optimizer is one row. Further tests cover the
schedules, the composable transforms (chain, masked, clipping, multi_steps,
inject_hyperparams), purity, float32 dtypes, and differentiating / vmapping through a step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import fgrad
import fgrad.numpy as fnp
import foptim

STEPS = 50
RTOL = ATOL = 1e-10


def examples(per_8):
    """A hypothesis budget scaled from the loaded profile (tests/conftest.py; ``ci`` has 8):
    ``per_8`` examples for every 8 the profile gives a property."""
    return max(1, settings.default.max_examples * per_8 // 8)



# --------------------------------------------------------------------------------------------
# Problems: one loss written twice, in fgrad.numpy and in torch
# --------------------------------------------------------------------------------------------

@dataclass
class Problem:
    params: dict         # name -> float64 array
    loss: Callable       # fgrad.numpy loss of a params dict
    torch_loss: Callable  # the same loss on a dict of torch tensors


def least_squares(seed):
    rng = np.random.default_rng(seed)
    a, y = rng.normal(size=(10, 4)), rng.normal(size=10)
    params = {"w": rng.normal(size=4), "b": np.asarray(rng.normal())}
    ta, ty = torch.tensor(a), torch.tensor(y)
    return Problem(
        params,
        lambda p: fnp.mean((a @ p["w"] + p["b"] - y) ** 2),
        lambda p: ((ta @ p["w"] + p["b"] - ty) ** 2).mean())


def mlp(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    params = {"w1": rng.normal(size=(6, 3)) / 2, "b1": rng.normal(size=6) / 2,
              "w2": rng.normal(size=(2, 6)) / 2, "b2": rng.normal(size=2) / 2}
    tx, ty = torch.tensor(x), torch.tensor(y)

    def loss(p):
        hidden = fnp.tanh(x @ p["w1"].T + p["b1"])
        return fnp.mean((hidden @ p["w2"].T + p["b2"] - y) ** 2)

    def torch_loss(p):
        hidden = torch.tanh(tx @ p["w1"].T + p["b1"])
        return ((hidden @ p["w2"].T + p["b2"] - ty) ** 2).mean()

    return Problem(params, loss, torch_loss)


PROBLEMS = {"least_squares": least_squares, "mlp": mlp}


def descend(opt, problem, steps=STEPS):
    """``(trajectory, grads)``: the parameters after each of ``steps`` updates, and the
    gradient (from fgrad.grad) that each update used."""
    params, state, grad = problem.params, opt.init(problem.params), fgrad.grad(problem.loss)
    trajectory, grads = [], []
    for _ in range(steps):
        grads.append(grad(params))
        updates, state = opt.update(grads[-1], state, params)
        params = foptim.apply_updates(params, updates)
        trajectory.append(params)
    return trajectory, grads


def run_foptim(opt, problem, steps=STEPS):
    """The parameters after each of ``steps`` updates."""
    return descend(opt, problem, steps)[0]


def _snapshot(named):
    return {k: v.detach().numpy().copy() for k, v in named.items()}


def run_torch(make_opt, problem, steps=STEPS, make_scheduler=None):
    """The same with a torch optimizer ``make_opt(named_tensors)`` and torch's own gradients
    (and an optional scheduler stepped after every optimizer step)."""
    named = {k: torch.tensor(v, requires_grad=True) for k, v in problem.params.items()}
    opt = make_opt(named)
    scheduler = make_scheduler(opt) if make_scheduler else None
    trajectory = []
    for _ in range(steps):
        opt.zero_grad()
        problem.torch_loss(named).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        trajectory.append(_snapshot(named))
    return trajectory


def run_torch_from_our_points(make_opt, problem, trajectory, grads):
    """torch's step ``t`` taken from our parameters before step ``t``, with our gradient there.

    The torch optimizer keeps its own state throughout; only its parameters are reset to ours
    before each step. The result isolates the optimizer's arithmetic from the sensitivity of
    the training dynamics (which turn chaotic for, e.g., RMSprop with a tiny eps near a
    minimum, where two float64 runs one rounding apart separate exponentially).
    """
    named = {k: torch.tensor(v, requires_grad=True) for k, v in problem.params.items()}
    opt = make_opt(named)
    out = []
    for start, grad in zip([problem.params] + trajectory[:-1], grads):
        with torch.no_grad():
            for k, tensor in named.items():
                tensor.copy_(torch.as_tensor(start[k]))
                tensor.grad = torch.as_tensor(np.asarray(grad[k])).clone()
        opt.step()
        out.append(_snapshot(named))
    return out


def assert_trajectories_close(ours, theirs, rtol=RTOL, atol=ATOL):
    assert len(ours) == len(theirs)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=atol,
                                       err_msg=f"parameter {k!r} after step {step + 1}")


# --------------------------------------------------------------------------------------------
# The table: foptim optimizer <-> torch.optim optimizer
# --------------------------------------------------------------------------------------------

lr_ = st.floats(1e-3, 0.3)
momentum_ = st.floats(0.1, 0.95)
beta1_ = st.floats(0.5, 0.95)
beta2_ = st.floats(0.9, 0.999)
eps_ = st.sampled_from([1e-8, 1e-3, 0.1])
decay_ = st.floats(1e-3, 0.1)

# Settings for the free-running comparison (torch with its own gradients, no resets): the
# training dynamics stay well-conditioned here, so trajectories agree to ~1e-11.
TYPICAL = {"lr": 0.02, "m": 0.9, "d": 0.3, "wd": 0.05, "b1": 0.9, "b2": 0.99, "eps": 1e-3,
           "a": 0.95, "v0": 0.1}


@dataclass
class TorchCase:
    name: str
    ours: Callable        # hyper-parameters -> foptim optimizer
    torch: Callable       # (named tensors, hyper-parameters) -> torch optimizer
    hyper: dict = field(default_factory=dict)  # name -> hypothesis strategy
    # Centered RMSprop divides by sqrt(v - m^2), which collapses once the gradient stops
    # changing; free-running, it needs a larger eps to keep its dynamics well-conditioned.
    typical_overrides: dict = field(default_factory=dict)

    def __repr__(self):
        return self.name

    def typical(self):
        return {**{k: TYPICAL[k] for k in self.hyper}, **self.typical_overrides}


def _adam_l2(h):
    # torch.optim.Adam's weight_decay is L2: the decay term joins the gradient before the moments.
    return foptim.chain(foptim.add_decayed_weights(h["wd"]),
                        foptim.scale_by_adam(h["b1"], h["b2"], h["eps"]),
                        foptim.scale_by_learning_rate(h["lr"]))


TORCH_CASES = [
    TorchCase("sgd", lambda h: foptim.sgd(h["lr"]),
              lambda p, h: torch.optim.SGD(p.values(), lr=h["lr"]), {"lr": lr_}),
    TorchCase("sgd_momentum", lambda h: foptim.sgd(h["lr"], momentum=h["m"]),
              lambda p, h: torch.optim.SGD(p.values(), lr=h["lr"], momentum=h["m"]),
              {"lr": lr_, "m": momentum_}),
    TorchCase("sgd_dampening", lambda h: foptim.sgd(h["lr"], momentum=h["m"], dampening=h["d"]),
              lambda p, h: torch.optim.SGD(p.values(), lr=h["lr"], momentum=h["m"],
                                           dampening=h["d"]),
              {"lr": lr_, "m": momentum_, "d": st.floats(0.1, 0.9)}),
    TorchCase("sgd_nesterov", lambda h: foptim.sgd(h["lr"], momentum=h["m"], nesterov=True),
              lambda p, h: torch.optim.SGD(p.values(), lr=h["lr"], momentum=h["m"],
                                           nesterov=True),
              {"lr": lr_, "m": momentum_}),
    TorchCase("sgd_weight_decay",
              lambda h: foptim.sgd(h["lr"], momentum=h["m"], weight_decay=h["wd"]),
              lambda p, h: torch.optim.SGD(p.values(), lr=h["lr"], momentum=h["m"],
                                           weight_decay=h["wd"]),
              {"lr": lr_, "m": momentum_, "wd": decay_}),
    TorchCase("adam", lambda h: foptim.adam(h["lr"], h["b1"], h["b2"], h["eps"]),
              lambda p, h: torch.optim.Adam(p.values(), lr=h["lr"], betas=(h["b1"], h["b2"]),
                                            eps=h["eps"]),
              {"lr": lr_, "b1": beta1_, "b2": beta2_, "eps": eps_}),
    TorchCase("adam_amsgrad", lambda h: foptim.adam(h["lr"], h["b1"], h["b2"], h["eps"],
                                                    amsgrad=True),
              lambda p, h: torch.optim.Adam(p.values(), lr=h["lr"], betas=(h["b1"], h["b2"]),
                                            eps=h["eps"], amsgrad=True),
              {"lr": lr_, "b1": beta1_, "b2": beta2_, "eps": eps_}),
    TorchCase("adam_l2", _adam_l2,
              lambda p, h: torch.optim.Adam(p.values(), lr=h["lr"], betas=(h["b1"], h["b2"]),
                                            eps=h["eps"], weight_decay=h["wd"]),
              {"lr": lr_, "b1": beta1_, "b2": beta2_, "eps": eps_, "wd": decay_}),
    TorchCase("adamw", lambda h: foptim.adamw(h["lr"], h["b1"], h["b2"], h["eps"],
                                              weight_decay=h["wd"]),
              lambda p, h: torch.optim.AdamW(p.values(), lr=h["lr"], betas=(h["b1"], h["b2"]),
                                             eps=h["eps"], weight_decay=h["wd"]),
              {"lr": lr_, "b1": beta1_, "b2": beta2_, "eps": eps_, "wd": decay_}),
    TorchCase("adamw_amsgrad", lambda h: foptim.adamw(h["lr"], weight_decay=h["wd"], amsgrad=True),
              lambda p, h: torch.optim.AdamW(p.values(), lr=h["lr"], weight_decay=h["wd"],
                                             amsgrad=True),
              {"lr": lr_, "wd": decay_}),
    TorchCase("rmsprop", lambda h: foptim.rmsprop(h["lr"], decay=h["a"], eps=h["eps"],
                                                  eps_in_sqrt=False),
              lambda p, h: torch.optim.RMSprop(p.values(), lr=h["lr"], alpha=h["a"], eps=h["eps"]),
              {"lr": lr_, "a": beta2_, "eps": eps_}),
    TorchCase("rmsprop_centered",
              lambda h: foptim.rmsprop(h["lr"], decay=h["a"], eps=h["eps"], eps_in_sqrt=False,
                                       centered=True),
              lambda p, h: torch.optim.RMSprop(p.values(), lr=h["lr"], alpha=h["a"], eps=h["eps"],
                                               centered=True),
              {"lr": lr_, "a": beta2_, "eps": eps_}, {"eps": 0.1}),
    TorchCase("rmsprop_momentum",
              lambda h: foptim.rmsprop(h["lr"], decay=h["a"], eps=h["eps"], eps_in_sqrt=False,
                                       momentum=h["m"]),
              lambda p, h: torch.optim.RMSprop(p.values(), lr=h["lr"], alpha=h["a"], eps=h["eps"],
                                               momentum=h["m"]),
              {"lr": lr_, "a": beta2_, "eps": eps_, "m": momentum_}),
    TorchCase("rmsprop_centered_momentum",
              lambda h: foptim.rmsprop(h["lr"], decay=h["a"], eps=h["eps"], eps_in_sqrt=False,
                                       centered=True, momentum=h["m"]),
              lambda p, h: torch.optim.RMSprop(p.values(), lr=h["lr"], alpha=h["a"], eps=h["eps"],
                                               centered=True, momentum=h["m"]),
              {"lr": lr_, "a": beta2_, "eps": eps_, "m": momentum_}, {"eps": 0.1}),
    TorchCase("adagrad",
              lambda h: foptim.adagrad(h["lr"], initial_accumulator_value=h["v0"], eps=0.0),
              lambda p, h: torch.optim.Adagrad(p.values(), lr=h["lr"],
                                               initial_accumulator_value=h["v0"], eps=0.0),
              {"lr": lr_, "v0": st.floats(0.01, 1.0)}),
]


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=repr)
def test_trajectory_matches_torch(case, problem):
    """50 free-running steps each: foptim on fgrad.grad, torch.optim on torch autograd."""
    hyper, prob = case.typical(), PROBLEMS[problem](0)
    ours = run_foptim(case.ours(hyper), prob)
    theirs = run_torch(lambda named: case.torch(named, hyper), prob)
    assert_trajectories_close(ours, theirs)


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=repr)
@settings(max_examples=examples(3), deadline=None)  # 30 table cells x 50 steps each
@given(data=st.data())
def test_every_step_matches_torch(case, problem, data):
    """Drawn settings; each of 50 torch steps starts from our point with our gradient."""
    hyper = data.draw(st.fixed_dictionaries(case.hyper), label="hyper-parameters")
    prob = PROBLEMS[problem](data.draw(st.integers(0, 2 ** 16), label="seed"))
    ours, grads = descend(case.ours(hyper), prob)
    theirs = run_torch_from_our_points(lambda named: case.torch(named, hyper), prob, ours, grads)
    assert_trajectories_close(ours, theirs, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------
# Optimizers torch lacks, or optax defaults torch cannot express: NumPy references
# --------------------------------------------------------------------------------------------

def reference_lion(params, grads_fn, lr, b1, b2, wd, steps):
    """Lion, Algorithm 2 of Chen et al. (2023), on a flat NumPy vector."""
    p, m, out = params.copy(), np.zeros_like(params), []
    for _ in range(steps):
        g = grads_fn(p)
        p = p - lr * (np.sign(b1 * m + (1 - b1) * g) + wd * p)
        m = b2 * m + (1 - b2) * g
        out.append(p)
    return out


def reference_rmsprop_eps_inside(params, grads_fn, lr, decay, eps, steps):
    """optax's default RMSprop: eps inside the square root."""
    p, v, out = params.copy(), np.zeros_like(params), []
    for _ in range(steps):
        g = grads_fn(p)
        v = decay * v + (1 - decay) * g * g
        p = p - lr * g / np.sqrt(v + eps)
        out.append(p)
    return out


def reference_adagrad_eps_inside(params, grads_fn, lr, v0, eps, steps):
    """optax's default Adagrad: accumulator starts at v0, eps inside the square root."""
    p, s, out = params.copy(), np.full_like(params, v0), []
    for _ in range(steps):
        g = grads_fn(p)
        s = s + g * g
        p = p - lr * g / np.sqrt(s + eps)
        out.append(p)
    return out


REFERENCE_CASES = [
    ("lion", lambda: foptim.lion(0.01, b1=0.8, b2=0.95, weight_decay=0.1),
     lambda p, g: reference_lion(p, g, 0.01, 0.8, 0.95, 0.1, STEPS)),
    ("rmsprop_default", lambda: foptim.rmsprop(0.01, eps=1e-3),
     lambda p, g: reference_rmsprop_eps_inside(p, g, 0.01, 0.9, 1e-3, STEPS)),
    ("adagrad_default", lambda: foptim.adagrad(0.1),
     lambda p, g: reference_adagrad_eps_inside(p, g, 0.1, 0.1, 1e-7, STEPS)),
]


@pytest.mark.parametrize("name, ours, reference", REFERENCE_CASES,
                         ids=[c[0] for c in REFERENCE_CASES])
@settings(max_examples=examples(4), deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_trajectory_matches_numpy_reference(name, ours, reference, seed):
    prob = least_squares(seed)
    # The reference works on one flat vector [w, b].
    unflatten = lambda v: {"w": v[:4], "b": v[4]}
    flat = lambda p: np.concatenate([p["w"], np.atleast_1d(p["b"])])
    grad = fgrad.grad(prob.loss)
    expected = reference(flat(prob.params), lambda v: flat(grad(unflatten(v))))
    got = [flat(p) for p in run_foptim(ours(), prob)]
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------

def torch_lrs(make_scheduler, base_lr, steps):
    """The learning rate a torch scheduler sets at steps 0 .. steps-1."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(lrs)


SCHEDULER_CASES = [
    ("StepLR", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5),
     lambda lr: foptim.step_decay_schedule(lr, 7, 0.5)),
    ("StepLR_as_exponential", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.3),
     lambda lr: foptim.exponential_decay(lr, 4, 0.3, staircase=True)),
    ("ExponentialLR", lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.93),
     lambda lr: foptim.exponential_decay(lr, 1, 0.93)),
    ("CosineAnnealingLR", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40),
     lambda lr: foptim.cosine_decay_schedule(lr, 40)),
    ("CosineAnnealingLR_eta_min",
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40, eta_min=0.01),
     lambda lr: foptim.cosine_decay_schedule(lr, 40, alpha=0.01 / lr)),
    ("LinearLR", lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, end_factor=1.0,
                                                             total_iters=15),
     lambda lr: foptim.linear_schedule(0.1 * lr, lr, 15)),
    ("LinearLR_decay", lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1.0,
                                                                   end_factor=0.2, total_iters=25),
     lambda lr: foptim.linear_schedule(lr, 0.2 * lr, 25)),
    ("MultiStepLR", lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[5, 12, 30],
                                                                   gamma=0.5),
     lambda lr: foptim.piecewise_constant_schedule(lr, {5: 0.5, 12: 0.5, 30: 0.5})),
    ("PolynomialLR", lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total_iters=30, power=2.0),
     lambda lr: foptim.polynomial_schedule(lr, 0.0, 2.0, 30)),
]


@pytest.mark.parametrize("name, make_torch, make_ours", SCHEDULER_CASES,
                         ids=[c[0] for c in SCHEDULER_CASES])
def test_schedule_matches_torch_scheduler(name, make_torch, make_ours):
    base_lr, steps = 0.3, 40
    expected = torch_lrs(make_torch, base_lr, steps)
    schedule = make_ours(base_lr)
    one_by_one = np.array([schedule(np.int64(t)) for t in range(steps)])
    np.testing.assert_allclose(one_by_one, expected, rtol=1e-12, atol=1e-15)
    # fnp operations throughout: an array of counts, and a vmapped count, work too.
    np.testing.assert_allclose(schedule(np.arange(steps)), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fgrad.vmap(schedule)(np.arange(steps)), expected,
                               rtol=1e-12, atol=1e-15)


def test_schedules_against_formulas():
    t = np.arange(60)
    np.testing.assert_array_equal(foptim.constant_schedule(0.2)(t), 0.2)

    warm_cos = foptim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=50,
                                                   end_value=0.1)
    expected = np.where(t < 10, t / 10,
                        0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.minimum(t - 10, 40) / 40)))
    np.testing.assert_allclose(warm_cos(t), expected, rtol=1e-13)
    assert warm_cos(10) == pytest.approx(1.0) and warm_cos(59) == pytest.approx(0.1)

    exp = foptim.exponential_decay(2.0, 5, 0.5, transition_begin=10, end_value=0.3)
    expected = np.maximum(np.where(t <= 10, 2.0, 2.0 * 0.5 ** ((t - 10) / 5)), 0.3)
    np.testing.assert_allclose(exp(t), expected, rtol=1e-13)

    growth = foptim.exponential_decay(1.0, 1, 1.1, end_value=2.0)
    np.testing.assert_allclose(growth(t), np.minimum(1.1 ** t, 2.0), rtol=1e-13)

    cos_exp = foptim.cosine_decay_schedule(1.0, 20, alpha=0.2, exponent=2.0)
    expected = 0.8 * (0.5 * (1 + np.cos(np.pi * np.minimum(t, 20) / 20))) ** 2 + 0.2
    np.testing.assert_allclose(cos_exp(t), expected, rtol=1e-13)

    joined = foptim.join_schedules([foptim.constant_schedule(1.0),
                                    foptim.linear_schedule(1.0, 0.0, 10),
                                    foptim.constant_schedule(5.0)], [20, 40])
    expected = np.where(t < 20, 1.0, np.where(t < 40, 1 - np.minimum(t - 20, 10) / 10, 5.0))
    np.testing.assert_allclose(joined(t), expected, rtol=1e-13)

    late_linear = foptim.linear_schedule(1.0, 3.0, 10, transition_begin=5)
    np.testing.assert_allclose(late_linear(t), 1.0 + 2.0 * np.clip(t - 5, 0, 10) / 10, rtol=1e-13)


@pytest.mark.parametrize("bad, message", [
    (lambda: foptim.cosine_decay_schedule(1.0, 0), "decay_steps"),
    (lambda: foptim.linear_schedule(1.0, 0.0, -3), "transition_steps"),
    (lambda: foptim.exponential_decay(1.0, 0, 0.5), "transition_steps"),
    (lambda: foptim.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), "decay_steps"),
    (lambda: foptim.piecewise_constant_schedule(1.0, {3: -0.5}), "non-negative"),
    (lambda: foptim.join_schedules([foptim.constant_schedule(1.0)], [3]), "boundaries"),
])
def test_schedule_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


@pytest.mark.parametrize("problem", PROBLEMS)
def test_scheduled_optimizers_match_torch_schedulers(problem):
    prob = PROBLEMS[problem](3)
    # SGD with momentum + StepLR: the schedule enters at the end of the chain, as torch's lr.
    ours = run_foptim(foptim.sgd(foptim.step_decay_schedule(0.05, 10, 0.5), momentum=0.9), prob)
    theirs = run_torch(lambda p: torch.optim.SGD(p.values(), lr=0.05, momentum=0.9), prob,
                       make_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 10, 0.5))
    assert_trajectories_close(ours, theirs)
    # AdamW + cosine annealing: the schedule also scales the decoupled weight decay, as in torch.
    ours = run_foptim(foptim.adamw(foptim.cosine_decay_schedule(0.02, STEPS), weight_decay=0.1),
                      prob)
    theirs = run_torch(lambda p: torch.optim.AdamW(p.values(), lr=0.02, weight_decay=0.1), prob,
                       make_scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o,
                                                                                           STEPS))
    assert_trajectories_close(ours, theirs)


# --------------------------------------------------------------------------------------------
# Composition and wrappers
# --------------------------------------------------------------------------------------------

def test_chain_composes_stages_in_order():
    prob = mlp(1)
    by_hand = foptim.chain(foptim.scale_by_adam(b1=0.8, b2=0.99),
                           foptim.scale_by_learning_rate(0.01))
    assert_trajectories_close(run_foptim(by_hand, prob),
                              run_foptim(foptim.adam(0.01, 0.8, 0.99), prob), rtol=0, atol=0)

    grads = {"a": np.array([1.0, -2.0]), "b": np.array(3.0)}
    chained = foptim.chain(foptim.scale(2.0), foptim.clip(3.0), foptim.scale(-1.0))
    updates, state = chained.update(grads, chained.init(grads))
    np.testing.assert_array_equal(updates["a"], [-2.0, 3.0])   # 2g, clipped to [-3, 3], negated
    np.testing.assert_array_equal(updates["b"], -3.0)
    assert len(state) == 3 and all(s == foptim.EmptyState() for s in state)

    empty = foptim.chain()
    assert empty.update(grads, empty.init(grads))[0] is grads
    with pytest.raises(ValueError, match="stage states"):
        chained.update(grads, (foptim.EmptyState(),))


def test_masked_weight_decay_skips_biases_like_torch_param_groups():
    prob = mlp(2)
    not_bias = lambda p: fgrad.tree.map(lambda x: x.ndim > 1, p)
    ours = run_foptim(foptim.adamw(0.01, weight_decay=0.2, mask=not_bias), prob)

    def torch_groups(named):
        weights = [v for k, v in named.items() if k.startswith("w")]
        biases = [v for k, v in named.items() if k.startswith("b")]
        return torch.optim.AdamW([{"params": weights}, {"params": biases, "weight_decay": 0.0}],
                                 lr=0.01, weight_decay=0.2)

    assert_trajectories_close(ours, run_torch(torch_groups, prob))
    # The mask given as a pytree instead of a function gives the same.
    mask_tree = {"w1": True, "b1": False, "w2": True, "b2": False}
    with_tree = run_foptim(foptim.adamw(0.01, weight_decay=0.2, mask=mask_tree), prob)
    assert_trajectories_close(with_tree, ours, rtol=0, atol=0)


def test_masked_inner_state_covers_selected_leaves_only():
    params = {"layer": {"w": np.ones((2, 2)), "b": np.ones(2)}, "head": np.ones(3)}
    # A prefix of the params: one bool stands for the whole "layer" subtree.
    tx = foptim.masked(foptim.scale_by_adam(), {"layer": True, "head": False})
    state = tx.init(params)
    assert [np.shape(m) for m in state.inner_state.mu] == [(2,), (2, 2)]  # layer.b, layer.w
    grads = fgrad.tree.map(lambda p: 2 * p, params)
    updates, _ = tx.update(grads, state)
    np.testing.assert_array_equal(updates["head"], grads["head"])          # passed through
    # Adam's first step is g / (|g| + eps): sign(g), up to eps.
    np.testing.assert_allclose(updates["layer"]["w"], np.ones((2, 2)), rtol=1e-7)


def test_add_decayed_weights_needs_params():
    tx = foptim.adamw(0.1)
    params = {"w": np.ones(2)}
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(params, tx.init(params))
    # With no decay (sgd's default) the params are not needed.
    sgd = foptim.sgd(0.1)
    updates, _ = sgd.update(params, sgd.init(params))
    np.testing.assert_array_equal(updates["w"], [-0.1, -0.1])


@settings(max_examples=examples(8), deadline=None)
@given(seed=st.integers(0, 2 ** 16), max_norm=st.floats(0.05, 20.0))
def test_clip_by_global_norm_matches_torch(seed, max_norm):
    rng = np.random.default_rng(seed)
    grads = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=5), "c": np.asarray(rng.normal())}
    tensors = [torch.tensor(g).requires_grad_() for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm).item()
    norm = foptim.global_norm(grads)
    assert norm == pytest.approx(torch_norm, rel=1e-13)

    tx = foptim.clip_by_global_norm(max_norm)
    clipped, _ = tx.update(grads, tx.init(grads))
    # torch scales by min(1, max_norm / (norm + 1e-6)); foptim (as optax) by max_norm / norm.
    torch_coef = min(1.0, max_norm / (torch_norm + 1e-6))
    our_coef = min(1.0, max_norm / norm)
    for ours, t in zip(clipped.values(), tensors):
        np.testing.assert_allclose(ours, t.grad.numpy() / torch_coef * our_coef, rtol=1e-13)
    assert foptim.global_norm(clipped) == pytest.approx(min(norm, max_norm), rel=1e-13)


def test_clip_matches_torch_clip_grad_value():
    g = np.linspace(-3, 3, 13)
    t = torch.tensor(g, requires_grad=True)
    t.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_([t], 1.5)
    clipped, _ = foptim.clip(1.5).update(g, foptim.EmptyState())
    np.testing.assert_array_equal(clipped, t.grad.numpy())


def test_clip_by_global_norm_of_zero_updates_is_finite():
    zeros = {"a": np.zeros(3)}
    tx = foptim.clip_by_global_norm(1.0)
    clipped, _ = tx.update(zeros, tx.init(zeros))
    np.testing.assert_array_equal(clipped["a"], 0.0)
    # ... and so is its derivative (the discarded branch never divides by zero).
    d = fgrad.grad(lambda g: fnp.sum(tx.update({"a": g}, foptim.EmptyState())[0]["a"]))(np.zeros(3))
    np.testing.assert_array_equal(d, 1.0)


@pytest.mark.parametrize("use_grad_mean", [True, False])
@settings(max_examples=examples(4), deadline=None)
@given(seed=st.integers(0, 2 ** 16), k=st.integers(1, 4))
def test_multi_steps_equals_one_step_on_the_accumulated_gradient(use_grad_mean, seed, k):
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    inner = foptim.adam(0.05)
    accumulating = foptim.multi_steps(inner, k, use_grad_mean=use_grad_mean)
    state, ref_state = accumulating.init(params), inner.init(params)
    p, ref_p = params, params
    for outer in range(3):
        micro = [fgrad.tree.map(lambda x: rng.normal(size=x.shape), params) for _ in range(k)]
        for i, g in enumerate(micro):
            updates, state = accumulating.update(g, state, p)
            if i < k - 1:   # accumulating: no movement, the inner state waits
                assert all(np.all(u == 0) for u in fgrad.tree.leaves(updates))
                assert int(state.inner_state[0].count) == outer
            p = foptim.apply_updates(p, updates)
        total = fgrad.tree.map(lambda *gs: sum(gs) / (k if use_grad_mean else 1), *micro)
        ref_updates, ref_state = inner.update(total, ref_state, ref_p)
        ref_p = foptim.apply_updates(ref_p, ref_updates)
        assert int(state.mini_step) == 0 and int(state.gradient_step) == outer + 1
        fgrad.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14),
                       p, ref_p)


def test_multi_steps_with_a_schedule_of_k():
    # k = 1 for the first inner step, then 3.
    tx = foptim.multi_steps(foptim.sgd(1.0), lambda step: fnp.where(step < 1, 1, 3))
    g = np.array([1.0])
    state = tx.init(g)
    moved = []
    for _ in range(7):
        updates, state = tx.update(g, state)
        moved.append(bool(updates[0] != 0))
    assert moved == [True, False, False, True, False, False, True]


def test_inject_hyperparams_constant_and_schedule():
    prob = mlp(4)
    plain = run_foptim(foptim.adam(0.01, b1=0.8), prob)
    injected = run_foptim(foptim.inject_hyperparams(foptim.adam)(learning_rate=0.01, b1=0.8), prob)
    assert_trajectories_close(injected, plain, rtol=1e-14, atol=1e-15)

    schedule = foptim.exponential_decay(0.05, 1, 0.95)
    scheduled = foptim.inject_hyperparams(foptim.sgd)(learning_rate=schedule, momentum=0.9)
    assert_trajectories_close(run_foptim(scheduled, prob),
                              run_foptim(foptim.sgd(schedule, momentum=0.9), prob),
                              rtol=1e-14, atol=1e-15)
    state = scheduled.init(prob.params)
    assert set(state.hyperparams) == {"learning_rate", "momentum", "dampening", "weight_decay"}
    for t in range(3):
        _, state = scheduled.update(fgrad.grad(prob.loss)(prob.params), state, prob.params)
        assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.05 * 0.95 ** t)
    assert int(state.count) == 3


def test_inject_hyperparams_values_can_be_changed_between_steps():
    params = {"w": np.array([1.0, -2.0])}
    grads = {"w": np.array([0.5, 0.25])}
    opt = foptim.inject_hyperparams(foptim.sgd)(learning_rate=0.1)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], -0.1 * grads["w"])
    state = state._replace(hyperparams={**state.hyperparams, "learning_rate": 0.01,
                                        "weight_decay": 0.5})
    updates, state = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], -0.01 * (grads["w"] + 0.5 * params["w"]))


def test_inject_hyperparams_rejects_unknown_static_args():
    with pytest.raises(ValueError, match="not parameters of adamw"):
        foptim.inject_hyperparams(foptim.adamw, static_args=("mask_fn",))
    # A callable that is not a schedule (a mask) is declared static and left alone.
    opt = foptim.inject_hyperparams(foptim.adamw, static_args="mask")(
        learning_rate=0.1, mask=lambda p: fgrad.tree.map(lambda x: x.ndim > 0, p))
    params = {"w": np.ones(2), "b": np.asarray(1.0)}
    state = opt.init(params)
    assert "mask" not in state.hyperparams
    opt.update(params, state, params)


# --------------------------------------------------------------------------------------------
# Purity and dtypes
# --------------------------------------------------------------------------------------------

PURITY_CASES = {
    "sgd": foptim.sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "adam_amsgrad": foptim.adam(0.01, amsgrad=True),
    "adamw_masked": foptim.adamw(0.01, mask={"w": True, "b": False}),
    "rmsprop": foptim.rmsprop(0.01, centered=True, momentum=0.5),
    "adagrad": foptim.adagrad(0.1),
    "lion": foptim.lion(0.01),
    "multi_steps": foptim.multi_steps(foptim.adam(0.01), 2),
    "inject": foptim.inject_hyperparams(foptim.adam)(foptim.cosine_decay_schedule(0.1, 10)),
    "clip_chain": foptim.chain(foptim.clip_by_global_norm(0.1), foptim.sgd(0.1, momentum=0.9)),
}


@pytest.mark.parametrize("opt", PURITY_CASES.values(), ids=PURITY_CASES.keys())
def test_update_mutates_nothing(opt):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    state = opt.init(params)
    for _ in range(2):   # the second call sees a non-trivial state
        grads = fgrad.tree.map(lambda x: rng.normal(size=x.shape), params)
        before = copy.deepcopy((grads, state, params))
        updates, new_state = opt.update(grads, state, params)
        new_params = foptim.apply_updates(params, updates)
        after = (grads, state, params)
        assert fgrad.tree.structure(before) == fgrad.tree.structure(after)
        for a, b in zip(fgrad.tree.leaves(before), fgrad.tree.leaves(after)):
            np.testing.assert_array_equal(a, b)
        assert not any(np.shares_memory(x, y) for x in fgrad.tree.leaves(new_params)
                       for y in fgrad.tree.leaves(params))
        assert fgrad.tree.structure(new_state) == fgrad.tree.structure(state)
        state, params = new_state, new_params


@pytest.mark.parametrize("make", [
    lambda: foptim.adam(1e-3), lambda: foptim.sgd(foptim.cosine_decay_schedule(0.1, 10),
                                                   momentum=0.9, dampening=0.5),
    lambda: foptim.inject_hyperparams(foptim.adamw)(foptim.linear_schedule(0.1, 0.0, 10)),
    lambda: foptim.rmsprop(1e-3, centered=True), lambda: foptim.adagrad(0.1),
], ids=["adam", "sgd_schedule", "inject_adamw", "rmsprop", "adagrad"])
def test_float32_stays_float32(make):
    opt = make()
    params = {"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}
    grads = fgrad.tree.map(lambda p: p + np.float32(0.5), params)
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(grads, state, params)
        params = foptim.apply_updates(params, updates)
    for leaf in fgrad.tree.leaves((updates, params)):
        assert leaf.dtype == np.float32
    for leaf in fgrad.tree.leaves(state):
        assert np.issubdtype(leaf.dtype, np.integer) or leaf.dtype == np.float32


def test_apply_updates_keeps_the_parameter_dtype():
    params = {"w": np.ones(3, np.float32), "n": np.ones(2)}
    updates = {"w": np.full(3, 0.25), "n": np.full(2, 0.5, np.float32)}   # float64 / float32
    new = foptim.apply_updates(params, updates)
    assert new["w"].dtype == np.float32 and new["n"].dtype == np.float64
    np.testing.assert_array_equal(new["w"], 1.25)
    np.testing.assert_array_equal(new["n"], 1.5)


# --------------------------------------------------------------------------------------------
# Transforming through an optimizer step: meta-gradients and vmap
# --------------------------------------------------------------------------------------------

def _loss_after_steps(make_opt, prob, steps):
    """Loss after ``steps`` updates, as a function of (learning rate, initial params)."""
    grad = fgrad.grad(prob.loss)

    def f(lr, params):
        opt = make_opt(lr)
        state = opt.init(params)
        for _ in range(steps):
            updates, state = opt.update(grad(params), state, params)
            params = foptim.apply_updates(params, updates)
        return prob.loss(params)

    return f


def _central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def test_meta_gradient_through_one_sgd_step_matches_torch_func():
    prob = mlp(5)
    lr, f = 0.3, _loss_after_steps(lambda lr: foptim.sgd(lr), prob, 1)
    d_lr, d_params = fgrad.grad(f, argnums=(0, 1))(lr, prob.params)

    def torch_f(lr, params):
        g = torch.func.grad(prob.torch_loss)(params)
        return prob.torch_loss({k: params[k] - lr * g[k] for k in params})

    t_params = {k: torch.tensor(v) for k, v in prob.params.items()}
    t_lr = torch.tensor(lr, dtype=torch.float64)
    t_lr, t_params_grad = torch.func.grad(torch_f, argnums=(0, 1))(t_lr, t_params)
    assert float(d_lr) == pytest.approx(t_lr.item(), rel=1e-10)
    for k in prob.params:
        np.testing.assert_allclose(d_params[k], t_params_grad[k].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, make_opt, steps", [
    ("sgd_momentum", lambda lr: foptim.sgd(lr, momentum=0.9, weight_decay=0.01), 3),
    ("adam", lambda lr: foptim.adam(lr), 1),
    ("adam_3_steps", lambda lr: foptim.adam(lr, amsgrad=True), 3),
    ("adamw_cosine",
     lambda lr: foptim.adamw(foptim.cosine_decay_schedule(lr, 5), weight_decay=0.1), 3),
])
def test_meta_gradient_wrt_learning_rate_matches_finite_differences(name, make_opt, steps):
    prob = mlp(6)
    f = _loss_after_steps(make_opt, prob, steps)
    d_lr = fgrad.grad(f)(0.05, prob.params)
    assert float(d_lr) == pytest.approx(_central_difference(lambda lr: f(lr, prob.params), 0.05),
                                        rel=1e-6)


def test_meta_gradient_through_adam_wrt_initial_params_matches_finite_differences():
    prob = least_squares(7)
    f = _loss_after_steps(lambda lr: foptim.adam(lr), prob, 2)
    d_params = fgrad.grad(f, argnums=1)(0.05, prob.params)
    for k, v in prob.params.items():
        for i in np.ndindex(v.shape):
            def along(x):
                bumped = {**prob.params, k: fnp.at(v)[i].set(x)}
                return f(0.05, bumped)
            assert d_params[k][i] == pytest.approx(_central_difference(along, v[i]), rel=1e-5,
                                                   abs=1e-9)


@pytest.mark.parametrize("make_opt", [
    lambda: foptim.adam(0.01), lambda: foptim.sgd(0.1, momentum=0.9, nesterov=True),
    lambda: foptim.sgd(0.1, momentum=0.9, dampening=0.3),
    lambda: foptim.rmsprop(0.01, centered=True),
    lambda: foptim.inject_hyperparams(foptim.adamw)(foptim.cosine_decay_schedule(0.1, 10)),
    lambda: foptim.multi_steps(foptim.adam(0.01), 2),
], ids=["adam", "sgd_nesterov", "sgd_dampening", "rmsprop_centered", "inject_adamw",
        "multi_steps"])
def test_vmap_over_a_batch_of_params_equals_a_loop(make_opt):
    opt = make_opt()
    rng = np.random.default_rng(8)
    batch = {"w": rng.normal(size=(5, 3, 2)), "b": rng.normal(size=(5, 2))}
    grads = [fgrad.tree.map(lambda x: rng.normal(size=x.shape), batch) for _ in range(3)]

    def train(params, *grads_seq):
        state = opt.init(params)
        for g in grads_seq:
            updates, state = opt.update(g, state, params)
            params = foptim.apply_updates(params, updates)
        return params, state

    batched_params, batched_state = fgrad.vmap(train)(batch, *grads)
    for i in range(5):
        take = lambda tree: fgrad.tree.map(lambda x: x[i], tree)
        params_i, state_i = train(take(batch), *[take(g) for g in grads])
        fgrad.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15),
                       take(batched_params), params_i)
        fgrad.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15),
                       take(batched_state), state_i)

    # The states themselves can be mapped too (count included): one step from the batched state.
    step = lambda g, s, p: opt.update(g, s, p)
    updates, _ = fgrad.vmap(step)(grads[0], batched_state, batched_params)
    for i in range(5):
        take = lambda tree: fgrad.tree.map(lambda x: x[i], tree)
        expected, _ = opt.update(take(grads[0]), take(batched_state), take(batched_params))
        fgrad.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15),
                       take(updates), expected)
