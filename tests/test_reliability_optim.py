"""Optimizers do not trust their inputs: trees, shapes and hyper-parameters are checked.

* ``update`` and ``apply_updates`` compare gradients, the per-parameter state and the params
  leaf by leaf and name the first leaf (by path) that differs, instead of broadcasting a
  ``(3, 1)`` gradient into a ``(3,)`` parameter or reporting optree's structure error;
* hyper-parameters that can only be mistakes are refused when the optimizer is built (torch's
  ``Invalid ...`` checks, and the NaNs and complex numbers optax would compute).
"""
from __future__ import annotations

import numpy as np
import pytest

import fgrad
import fgrad.numpy as fnp
import foptim

PARAMS = {"w": np.ones(3), "b": {"bias": np.zeros(2)}}

OPTIMIZERS = {
    "sgd": lambda: foptim.sgd(0.1),
    "sgd_momentum": lambda: foptim.sgd(0.1, momentum=0.9),
    "adam": lambda: foptim.adam(0.1),
    "adamw": lambda: foptim.adamw(0.1),
    "rmsprop": lambda: foptim.rmsprop(0.1),
    "rmsprop_centered": lambda: foptim.rmsprop(0.1, centered=True),
    "adagrad": lambda: foptim.adagrad(0.1),
    "lion": lambda: foptim.lion(0.1),
    "multi_steps": lambda: foptim.multi_steps(foptim.adam(0.1), 2),
    "inject": lambda: foptim.inject_hyperparams(foptim.adam)(learning_rate=0.1),
    "chain_clip": lambda: foptim.chain(foptim.clip_by_global_norm(1.0), foptim.sgd(0.1)),
}

BAD_GRADS = [
    # (id, grads, pieces of the message)
    ("column-for-vector", {"w": np.ones((3, 1)), "b": {"bias": np.zeros(2)}}, ["['w']", "(3, 1)", "(3,)"]),
    ("length-one", {"w": np.ones(1), "b": {"bias": np.zeros(2)}}, ["['w']", "(1,)", "(3,)"]),
    ("scalar", {"w": np.float64(1.0), "b": {"bias": np.zeros(2)}}, ["['w']", "()", "(3,)"]),
    ("nested-shape", {"w": np.ones(3), "b": {"bias": np.zeros((1, 2))}}, ["['b']['bias']", "(1, 2)"]),
    ("missing-leaf", {"w": np.ones(3)}, ["tree structure", "['b']['bias']"]),
    ("extra-leaf", {"w": np.ones(3), "b": {"bias": np.zeros(2)}, "c": np.ones(1)},
     ["tree structure", "['c']"]),
    ("renamed-leaf", {"v": np.ones(3), "b": {"bias": np.zeros(2)}}, ["['v']", "['w']"]),
    ("list-for-dict", [np.ones(3), np.zeros(2)], ["tree structure"]),
]


@pytest.mark.parametrize("grads, pieces", [row[1:] for row in BAD_GRADS],
                         ids=[row[0] for row in BAD_GRADS])
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("with_params", [True, False], ids=["params", "no-params"])
def test_update_refuses_gradients_that_do_not_fit(name, grads, pieces, with_params):
    opt = OPTIMIZERS[name]()
    state = opt.init(PARAMS)
    params = PARAMS if with_params else None
    try:
        updates, _ = opt.update(grads, state, params)
    except ValueError as err:
        message = str(err)
        assert "foptim." in message and "update" in message
        if with_params or name not in ("sgd",):     # the state names the leaf too
            assert any(piece in message for piece in pieces), message
        return
    # only a stateless optimizer without params can accept it; then apply_updates refuses
    assert name in ("sgd", "chain_clip") and not with_params
    with pytest.raises(ValueError, match="apply_updates"):
        foptim.apply_updates(PARAMS, updates)


def test_the_issue_examples():
    params = {"w": np.ones(3)}
    adam = foptim.adam(0.1)
    with pytest.raises(ValueError, match=r"foptim\.adam\.update: grads\['w'\] has shape \(3, 1\) "
                                         r"but params\['w'\] has shape \(3,\)"):
        adam.update({"w": np.ones((3, 1))}, adam.init(params), params)
    sgd = foptim.sgd(0.1)
    updates, _ = sgd.update({"w": np.ones(1)}, sgd.init(params))
    with pytest.raises(ValueError, match=r"apply_updates: updates\['w'\] has shape \(1,\)"):
        foptim.apply_updates(params, updates)
    with pytest.raises(ValueError, match="missing from grads"):
        adam.update({}, adam.init(params), params)


@pytest.mark.parametrize("bad", [np.ones(3) * 1j, np.ones(3, np.int64)], ids=["complex", "int"])
def test_gradients_of_another_kind_of_dtype_are_refused(bad):
    opt = foptim.adam(0.1)
    params = {"w": np.ones(3)}
    with pytest.raises(ValueError, match=r"grads\['w'\] has dtype"):
        opt.update({"w": bad}, opt.init(params), params)


def test_float_precisions_may_differ_and_transforms_still_compose():
    """float64 gradients for float32 params are cast back by apply_updates (optax's rule), and
    the checks see per-example shapes under vmap and traced values under grad."""
    params = {"w": np.ones(3, np.float32)}
    opt = foptim.adam(0.1)
    updates, _ = opt.update({"w": np.ones(3)}, opt.init(params), params)
    assert foptim.apply_updates(params, updates)["w"].dtype == np.float32
    batch = {"w": np.ones((4, 3))}

    def step(p, g):
        u, _ = opt.update(g, opt.init(p), p)
        return foptim.apply_updates(p, u)
    assert fgrad.vmap(step)(batch, batch)["w"].shape == (4, 3)
    with pytest.raises(ValueError, match="shape"):
        fgrad.vmap(step)(batch, {"w": np.ones((4, 3, 1))})

    def loss_after(lr):
        tx = foptim.sgd(lr, momentum=0.9)
        u, _ = tx.update({"w": np.ones(3)}, tx.init({"w": np.ones(3)}), {"w": np.ones(3)})
        return fnp.sum(foptim.apply_updates({"w": np.ones(3)}, u)["w"] ** 2)
    assert float(fgrad.grad(loss_after)(0.1)) == pytest.approx(2 * 3 * (1 - 0.1) * -1)


BAD_HYPERPARAMETERS = [
    # (id, factory, piece of the message)
    ("clip-norm-negative", lambda: foptim.clip_by_global_norm(-1.0), "max_norm"),
    ("clip-negative", lambda: foptim.clip(-0.5), "max_delta"),
    ("adam-b1-one", lambda: foptim.adam(0.1, b1=1.0), "b1"),
    ("adam-b2-one", lambda: foptim.adam(0.1, b2=1.0), "b2"),
    ("adam-b1-negative", lambda: foptim.adam(0.1, b1=-0.1), "b1"),
    ("adam-b1-nan", lambda: foptim.adam(0.1, b1=float("nan")), "b1"),
    ("adam-eps-negative", lambda: foptim.adam(0.1, eps=-1e-8), "eps"),
    ("adamw-decay-negative", lambda: foptim.adamw(0.1, weight_decay=-0.01), "weight_decay"),
    ("sgd-momentum-negative", lambda: foptim.sgd(0.1, momentum=-0.9), "momentum"),
    ("sgd-lr-negative", lambda: foptim.sgd(-0.1), "learning_rate"),
    ("sgd-dampening", lambda: foptim.sgd(0.1, momentum=0.9, dampening=1.5), "dampening"),
    ("sgd-nesterov-no-momentum", lambda: foptim.sgd(0.1, nesterov=True), "nesterov"),
    ("sgd-nesterov-dampening", lambda: foptim.sgd(0.1, momentum=0.9, nesterov=True, dampening=0.1),
     "dampening"),
    ("sgd-weight-decay-negative", lambda: foptim.sgd(0.1, weight_decay=-1.0), "weight_decay"),
    ("rmsprop-decay", lambda: foptim.rmsprop(0.1, decay=1.5), "decay"),
    ("rmsprop-eps", lambda: foptim.rmsprop(0.1, eps=-1.0), "eps"),
    ("adagrad-accumulator", lambda: foptim.adagrad(0.1, initial_accumulator_value=-0.1),
     "initial_accumulator_value"),
    ("lion-b2", lambda: foptim.lion(0.1, b2=2.0), "b2"),
    ("trace-negative", lambda: foptim.trace(-0.5), "decay"),
    ("multi-steps-zero", lambda: foptim.multi_steps(foptim.sgd(0.1), 0), "every_k_schedule"),
    ("multi-steps-float", lambda: foptim.multi_steps(foptim.sgd(0.1), 2.5), "every_k_schedule"),
    ("exponential-rate-negative", lambda: foptim.exponential_decay(0.1, 10, -0.5), "decay_rate"),
    ("exponential-rate-zero", lambda: foptim.exponential_decay(0.1, 10, 0.0), "decay_rate"),
    ("join-unsorted", lambda: foptim.join_schedules([foptim.constant_schedule(1.0)] * 3, [10, 5]),
     "sorted"),
    ("warmup-negative", lambda: foptim.warmup_cosine_decay_schedule(0.0, 1.0, -5, 10), "warmup_steps"),
    ("piecewise-float-boundary", lambda: foptim.piecewise_constant_schedule(1.0, {2.5: 0.1}),
     "boundaries"),
    ("inject-b1-one", lambda: foptim.inject_hyperparams(foptim.adam)(0.1, b1=1.0), "b1"),
]


@pytest.mark.parametrize("make, piece", [row[1:] for row in BAD_HYPERPARAMETERS],
                         ids=[row[0] for row in BAD_HYPERPARAMETERS])
def test_hyperparameters_that_can_only_be_mistakes_are_refused(make, piece):
    with pytest.raises(ValueError, match=piece):
        opt = make()
        if isinstance(opt, foptim.GradientTransformation):   # inject_hyperparams builds at init
            opt.init({"w": np.ones(2)})


@pytest.mark.parametrize("make", [
    lambda: foptim.adam(0.0, b1=0.0, b2=0.0), lambda: foptim.sgd(0.0, momentum=0.0),
    lambda: foptim.clip_by_global_norm(0.0), lambda: foptim.rmsprop(0.1, decay=1.0),
    lambda: foptim.exponential_decay(0.1, 10, 1.5), lambda: foptim.lion(0.1, b1=1.0, b2=0.0),
    lambda: foptim.sgd(foptim.exponential_decay(0.1, 10, 0.5), momentum=0.9, nesterov=True),
], ids=["adam-zeros", "sgd-zeros", "clip-zero", "rmsprop-decay-one", "exponential-growth",
        "lion-ends", "sgd-schedule-nesterov"])
def test_edge_hyperparameters_that_are_legitimate_still_build(make):
    make()


def test_join_schedules_with_sorted_boundaries_and_schedules_of_traced_counts():
    s = foptim.join_schedules([foptim.constant_schedule(1.0), foptim.constant_schedule(2.0),
                               foptim.constant_schedule(3.0)], [5, 5])
    assert [float(s(c)) for c in (0, 5, 9)] == [1.0, 3.0, 3.0]
    lr = foptim.exponential_decay(1.0, 2, 0.5)
    np.testing.assert_allclose(fgrad.vmap(lr)(np.arange(3)), [1.0, 0.5 ** 0.5, 0.5])


@pytest.mark.parametrize("ours, theirs", [("lion", "adamw"), ("sgd_momentum", "adam"),
                                          ("rmsprop", "adagrad"), ("adam", "sgd")],
                         ids=["adamw-state-for-lion", "adam-state-for-sgd", "adagrad-for-rmsprop",
                              "sgd-state-for-adam"])
def test_the_state_of_another_optimizer_is_refused(ours, theirs):
    """adamw's state has as many stages as lion's, and a mu shaped like the params: without a
    check lion would silently run on adam's first moment."""
    opt, other = OPTIMIZERS[ours](), OPTIMIZERS[theirs]()
    with pytest.raises((TypeError, ValueError), match="state"):
        opt.update(PARAMS, other.init(PARAMS), PARAMS)
