"""examples/transformer.py end to end, on a small tree of Python files in the real format.

``load_docstring_pairs(roots=...)`` reads the ``.py`` files written here exactly as it reads the
standard library, numpy and scikit-learn (``ast``, split by module, deduplicated), so the run
below takes the same path as the default one: BPE vocabulary, bucketed batches, the training
step, greedy and beam decoding, BLEU beside the copy baseline, curves and metrics.json. A few
seconds. (The model itself is checked against torch in ``tests/test_transformer.py``.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fgrad
import fnn
from examples import transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERBS = ["Return", "Compute", "Build", "Read", "Write", "Check", "Parse", "Format"]
NOUNS = ["the path", "a table", "the mean", "one token", "the header", "a matrix", "the key",
         "each row"]


def write_docstring_tree(root, modules=60):
    """``pkg/m{i}.py`` files, each with three documented functions whose summary is a verb and
    a noun and whose body restates them: a package of the loader's format."""
    rng = np.random.default_rng(0)
    os.makedirs(root / "pkg")
    (root / "pkg" / "__init__.py").write_text('"""A package."""\n')
    for i in range(modules):
        functions = []
        for j in range(3):
            verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
            functions.append(
                f'def f{i}_{j}(x):\n    """{verb} {noun} of x number {i}.\n\n'
                f'    This function will {verb.lower()} {noun}, given x, for case {i}.{j}.\n'
                f'    It returns the result.\n    """\n    return x\n')
        (root / "pkg" / f"m{i}.py").write_text("\n\n".join(functions))
    return root / "pkg"


def test_help_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "examples.transformer", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m examples.transformer" in done.stdout
    for flag in ("--seed", "--batch-size", "--lr", "--out-dir", "--quick", "--jit", "--beam",
                 "--length-alpha", "--label-smoothing", "--warmup", "--final-norm"):
        assert flag in done.stdout


@pytest.mark.parametrize("extra", [["--no-jit", "--average-last", "3"],
                                   ["--final-norm", "--no-copy"]], ids=["eager", "jit"])
def test_quick_run_on_docstring_files(tmp_path, monkeypatch, extra):
    package = write_docstring_tree(tmp_path / "src")
    monkeypatch.setenv("FGRAD_DATA", str(tmp_path / "cache"))
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir()
    monkeypatch.chdir(work)
    saved_params = tmp_path / "params.npz"
    if "--final-norm" in extra:
        extra = extra + ["--save-params", str(saved_params)]
    result = transformer.main(["--quick", "--roots", str(package), "--epochs", "2",
                               "--batch-size", "16", "--out-dir", str(out)] + extra)
    assert os.listdir(work) == []
    assert sorted(os.listdir(out)) == ["curves.png", "metrics.json"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    for key, value in result.items():
        if key != "history":
            assert saved[key] == pytest.approx(value)
    losses = result["history"]["train"]["loss"]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-2:]) < np.mean(losses[:2])
    for name in ("test_bleu_greedy", "test_bleu_beam2", "copy_test_bleu"):
        assert 0.0 <= result[name] <= 100.0
    assert saved["args"]["final_norm"] == ("--final-norm" in extra)
    assert saved["args"]["copy"] == ("--no-copy" not in extra)
    assert saved["args"]["jit"] == ("--no-jit" not in extra)
    # 2 epochs of 32 steps, a checkpoint every half epoch: 4, of which the last K are averaged
    assert result["checkpoints_averaged"] == (3 if "--average-last" in extra else 4)
    assert np.isfinite(result["val_loss"]) and np.isfinite(result["val_loss_last"])
    if "--final-norm" in extra:   # the averaged params, loadable into the model's structure
        model = transformer.Transformer(saved["vocab_size"], 64, 4, 2, 2, 128, final_norm=True)
        params = fnn.io.load(saved_params, like=model.init(fgrad.random.key(0)))
        assert fnn.utils.count_params(params) == result["parameters"]


def test_teacher_forcing_reads_bos_and_predicts_eos():
    targets = np.array([[7, 8, transformer.EOS, 0], [9, transformer.EOS, 0, 0]])
    tgt_in, tgt_out = transformer.teacher_forcing(targets)
    np.testing.assert_array_equal(tgt_in, [[transformer.BOS, 7, 8, 0], [transformer.BOS, 9, 0, 0]])
    np.testing.assert_array_equal(tgt_out, targets)
