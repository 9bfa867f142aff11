"""The tour (``python -m examples.tour``) checks what it prints and fails loudly on a wrong rule.

Each row of ``BROKEN_RULES`` breaks one rule of one primitive for the length of a test (by 1%,
or by raising), runs the tour's checks in-process, and expects a non-zero exit status and the
names of the checks that must catch it among the failures.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from examples import tour
from fgrad.core import PRIMITIVES, zero

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scaled_vjp(rules):
    """Every cotangent rule of a primitive, times 1.01."""
    return tuple(None if rule is None else
                 (lambda g, *args, rule=rule, **params: 1.01 * rule(g, *args, **params))
                 for rule in rules)


def scaled_jvp(rule):
    """A JVP rule whose output tangent is 1.01 times the right one."""
    def broken(primals, tangents, **params):
        out, tangent = rule(primals, tangents, **params)
        return out, tangent if tangent is zero else 1.01 * tangent
    return broken


def scaled_batch(rule):
    """A batching rule whose output is 1.01 times the right one."""
    def broken(vals, dims, **params):
        out, out_dim = rule(vals, dims, **params)
        return 1.01 * out, out_dim
    return broken


def raising_vjp(rules):
    def broken(*args, **params):
        raise RuntimeError("a deliberately broken rule")
    return tuple(None if rule is None else broken for rule in rules)


# primitive, rule, how to break it, checks that must fail (substrings of their names)
BROKEN_RULES = [
    ("tanh", "vjp", scaled_vjp, ["grad(tanh) against the closed form",
                                 "grad(grad(tanh)) against the closed form",
                                 "finite differences"]),
    ("sin", "jvp", scaled_jvp, ["J t against finite differences",
                                "jacfwd against the closed form"]),
    ("sin", "vjp", scaled_vjp, ["vjp against jvp", "jacrev (one vjp per row) against jacfwd",
                                "staged program against the closed form"]),
    ("tanh", "batch", scaled_batch, ["vmap(grad) against a Python loop"]),
    ("tanh", "vjp", raising_vjp, ["section derivatives: raised RuntimeError"]),
]


def test_the_tour_runs_as_a_module_and_every_check_passes():
    done = subprocess.run([sys.executable, "-m", "examples.tour"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    checks = [line for line in lines if line.startswith("  ok  ")]
    assert "FAILED" not in done.stdout
    assert len(checks) >= 12
    assert lines[-1] == f"all {len(checks)} checks ok"
    assert all("error" in line or "fell" in line for line in checks)


@pytest.mark.parametrize("name, rule, breaker, must_fail", BROKEN_RULES,
                         ids=[f"{row[0]}-{row[1]}-{row[2].__name__}" for row in BROKEN_RULES])
def test_a_broken_rule_fails_the_tour(monkeypatch, capsys, name, rule, breaker, must_fail):
    prim = PRIMITIVES[name]
    monkeypatch.setattr(prim, rule, breaker(getattr(prim, rule)))
    status = tour.main(["--steps", "20"])
    out = capsys.readouterr().out
    assert status == 1, out
    summary = out.split("\nFAILED ", 1)[1]
    for check in must_fail:
        assert check in summary, f"the tour missed a broken {name} {rule} rule: {check}"


def test_the_tour_passes_again_once_the_rule_is_restored(capsys):
    """The monkeypatches above are undone: the same in-process run passes."""
    assert tour.main(["--steps", "20"]) == 0
    assert "all " in capsys.readouterr().out


def test_a_check_reports_its_error_and_tolerance(capsys):
    checks = tour.Checks()
    assert checks.close("same", [1.0, 2.0], [1.0, 2.0], 1e-12)
    assert not checks.close("off", 2.02, 2.0, 1e-3)                 # relative error 0.01
    assert not checks.close("nan", float("nan"), 1.0, 1e-3)
    assert not checks.close("shape", [1.0], [1.0, 1.0], 1e-3)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "  ok  same: error 0.0e+00 (tolerance 1e-12)"
    assert out[1] == "  FAILED  off: error 1.0e-02 > tolerance 0.001"
    assert checks.count == 4 and len(checks.failures) == 3
