"""Smoke tests of every example: tiny sizes, a few steps, through each example's ``main(argv)``.

Each run must lower its training loss, write its curves and metrics only under ``--out-dir``
(a ``tmp_path``), and leave nothing in the working directory. No test needs a download or an
apt package: MNIST, Fashion-MNIST and CIFAR-10 are tiny files written here in the real formats
(MNIST's gzipped pickle of three ``(images, labels)`` pairs, IDX ``.gz`` files, CIFAR's python
batches) and passed with ``--data``; diabetes and breast cancer are scikit-learn's bundled
copies. The synthetic images are learnable (each class is a bright square at its own place),
so a handful of steps is enough to see the loss fall.

The full-size runs that reach the stated accuracies are documented commands (README,
"Examples"), not tests.
"""
from __future__ import annotations

import gzip
import importlib
import json
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

EXAMPLES = ("linear_regression", "breast_cancer", "mnist_mlp", "mnist_one_vs_rest", "mnist_cnn",
            "resnet", "per_example_grads")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------------------------
# Tiny data sets in the real file formats
# --------------------------------------------------------------------------------------------

def synthetic_images(n, channels, size, seed):
    """uint8 images ``(n, channels, size, size)`` and labels 0..9: class ``k`` is a bright
    6x6 square in cell ``k`` of a 4x3 grid, over faint noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, channels, size, size))
    step = size // 4
    for i, k in enumerate(labels):
        row, col = divmod(k, 4)
        images[i, :, row * step:row * step + 6, col * step:col * step + 6] = 250
    return images.astype(np.uint8), labels.astype(np.int64)


def write_mnist(path, sizes=(96, 32, 64), seed=0):
    """MNIST's format: a gzipped pickle of ``((x, y), (x, y), (x, y))`` (train, valid, test),
    float32 rows of 784 pixels in [0, 1) and int64 labels."""
    splits = []
    for i, n in enumerate(sizes):
        images, labels = synthetic_images(n, 1, 28, seed + i)
        splits.append(((images.reshape(n, 784) / 256).astype(np.float32), labels))
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(splits), f, protocol=4)
    return str(path)


def write_idx(path, array):
    """An IDX file of uint8 elements: magic ``0 0 8 ndim``, big-endian dimensions, the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist(directory, n_train=96, n_test=64, seed=0):
    """The four IDX files of Fashion-MNIST, with synthetic 28x28 images."""
    for split, n, offset in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = synthetic_images(n, 1, 28, seed + offset)
        write_idx(directory / f"{split}-images-idx3-ubyte.gz", images[:, 0])
        write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
    return str(directory)


def write_cifar10(directory, per_batch=24, n_test=48, seed=0):
    """CIFAR-10's python version: five training batches, a test batch and ``batches.meta``,
    each a pickled dict (uint8 ``data`` rows of 3072 pixels, a list of ``labels``)."""
    files = [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]
    for i, (name, n) in enumerate(files):
        images, labels = synthetic_images(n, 3, 32, seed + i)
        with open(directory / name, "wb") as f:
            pickle.dump({"data": images.reshape(n, 3072), "labels": labels.tolist()}, f, protocol=4)
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f, protocol=4)
    return str(directory)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name in ("fashion", "cifar"):
        (root / name).mkdir()
    return {"mnist": write_mnist(root / "mnist.pkl.gz"),
            "fashion_mnist": write_fashion_mnist(root / "fashion"),
            "cifar10": write_cifar10(root / "cifar")}


# --------------------------------------------------------------------------------------------
# Running an example
# --------------------------------------------------------------------------------------------

def run_example(name, args, tmp_path, monkeypatch):
    """``examples.<name>.main(args + --out-dir)`` from an empty working directory; checks that
    the run wrote exactly its curves and metrics and nothing else; returns main's result."""
    work, out = tmp_path / "cwd", tmp_path / "out"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    module = importlib.import_module(f"examples.{name}")
    result = module.main(list(args) + ["--out-dir", str(out)])
    assert os.listdir(work) == [], f"{name} left files in the working directory"
    assert sorted(os.listdir(out)) == ["curves.png", "metrics.json"]
    with open(out / "curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(out / "metrics.json") as f:
        saved = json.load(f)
    for key, value in result.items():
        if key != "history":
            assert saved[key] == pytest.approx(value)
    return result


def runs_of(result):
    """The history of each run in a result (``{label: history}`` or a single history)."""
    history = result["history"]
    return history.values() if "train" not in history else [history]


def assert_loss_fell(result, steps=3):
    """In every run, the mean training loss of the last ``steps`` steps is below the first's."""
    for history in runs_of(result):
        losses = history["train"]["loss"]
        assert len(losses) >= 2 * steps, f"only {len(losses)} steps"
        assert np.all(np.isfinite(losses))
        assert np.mean(losses[-steps:]) < np.mean(losses[:steps]), losses


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXAMPLES)
def test_help_runs_as_a_module(name):
    """``python -m examples.NAME --help`` works from the repository root."""
    done = subprocess.run([sys.executable, "-m", f"examples.{name}", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m examples.{name}" in done.stdout
    for flag in ("--seed", "--epochs", "--batch-size", "--lr", "--out-dir", "--quick"):
        assert flag in done.stdout


def test_linear_regression(tmp_path, monkeypatch):
    result = run_example("linear_regression", ["--epochs", "4", "--degree", "2"], tmp_path, monkeypatch)
    assert_loss_fell(result)
    assert set(result["history"]) == {"linear", "degree 2"}
    # least squares minimises the training loss: it is finite and positive on the test set
    assert 0 < result["linear_lstsq_test_mse"] < 1e4


def test_breast_cancer(tmp_path, monkeypatch):
    result = run_example("breast_cancer", ["--epochs", "3"], tmp_path, monkeypatch)
    assert_loss_fell(result)
    assert result["logistic_test_accuracy"] > 0.8        # logistic regression is easy here


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mnist_mlp(tmp_path, monkeypatch, data_files, batchnorm):
    args = ["--data", data_files["mnist"], "--epochs", "3", "--batch-size", "16", "--lr", "3e-3",
            "--hidden", "32"] + (["--batchnorm"] if batchnorm else [])
    assert_loss_fell(run_example("mnist_mlp", args, tmp_path, monkeypatch))


def test_mnist_one_vs_rest(tmp_path, monkeypatch, data_files):
    args = ["--data", data_files["mnist"], "--epochs", "3", "--batch-size", "16", "--lr", "1e-2"]
    result = run_example("mnist_one_vs_rest", args, tmp_path, monkeypatch)
    assert set(result["history"]) == {"bce", "hinge"}
    assert_loss_fell(result)


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10"])
def test_mnist_cnn(tmp_path, monkeypatch, data_files, dataset):
    args = ["--dataset", dataset, "--data", data_files[dataset], "--epochs", "2",
            "--batch-size", "16", "--channels", "4", "8", "--hidden", "16", "--lr", "5e-3"]
    assert_loss_fell(run_example("mnist_cnn", args, tmp_path, monkeypatch), steps=2)


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_resnet(tmp_path, monkeypatch, data_files, dataset):
    args = ["--dataset", dataset, "--data", data_files[dataset], "--epochs", "2",
            "--batch-size", "16", "--width", "4", "--lr", "1e-2"]
    assert_loss_fell(run_example("resnet", args, tmp_path, monkeypatch), steps=2)


def test_per_example_grads(tmp_path, monkeypatch, data_files):
    args = ["--data", data_files["mnist"], "--epochs", "3", "--batch-size", "16",
            "--hidden", "16", "--compare-batch", "6", "--lr", "0.05", "--noise", "0.1"]
    result = run_example("per_example_grads", args, tmp_path, monkeypatch)
    assert_loss_fell(result)
    assert result["vmap_vs_loop_max_difference"] < 1e-5   # float32 gradients, one per example
    clipped = result["history"]["train"]["clipped"]
    assert all(0 <= c <= 1 for c in clipped)


def test_a_seed_repeats_a_run_exactly(tmp_path, monkeypatch, data_files):
    """Everything random (init, batch order, dropout, DP noise) comes from --seed's keys."""
    args = ["--data", data_files["mnist"], "--epochs", "1", "--batch-size", "16", "--hidden", "8",
            "--compare-batch", "2", "--train-size", "48", "--test-size", "16"]
    runs = [run_example("per_example_grads", args + ["--seed", seed], tmp_path / str(i), monkeypatch)
            for i, seed in enumerate(["3", "3", "4"])]
    losses = [r["history"]["train"]["loss"] for r in runs]
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_quick_gives_way_to_explicit_sizes():
    from examples import common
    parser = common.make_parser("demo", "demo", epochs=5, batch_size=8, lr=0.1)
    args = common.parse(parser, ["--quick", "--epochs", "2", "--train-size", "10"])
    assert (args.epochs, args.train_size, args.test_size) == (2, 10, common.QUICK_TEST_SIZE)
    args = common.parse(parser, ["--quick"])
    assert (args.epochs, args.train_size) == (1, common.QUICK_TRAIN_SIZE)


def test_missing_plotting_extra_says_what_to_install(monkeypatch):
    from examples import common
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    history = {"train": {"step": [1], "loss": [1.0]}, "eval": {"step": []}, "seconds": 0.0}
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[examples\]'"):
        common.save_curves(history, "unused.png")


# --------------------------------------------------------------------------------------------
# What a run prints, and what its plots look like
# --------------------------------------------------------------------------------------------

def test_a_quick_run_says_it_is_a_sanity_run_and_what_it_used(tmp_path, monkeypatch, capsys):
    """Diabetes has 354 training rows, fewer than --quick's 2048: the run says what it used, and
    its last line says it was a sanity run and what the full run reached."""
    run_example("linear_regression", ["--quick"], tmp_path, monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("data (--quick): all 354 training examples (fewer than the 2048 asked "
                        "for), all 88 test examples (fewer than the 1024 asked for)")
    last = lines[-1]
    assert last.startswith("linear_regression --quick: a sanity run, 1 epoch on 354 training "
                           "examples in ")
    assert "far from a full run" in last
    assert "Full run: python -m examples.linear_regression reached test MSE 3260.5" in last
    assert " 0 s" not in last


def test_a_quick_run_quotes_the_full_run_of_its_own_variant(tmp_path, monkeypatch, capsys,
                                                             data_files):
    args = ["--quick", "--batchnorm", "--data", data_files["mnist"], "--batch-size", "16",
            "--hidden", "8"]
    run_example("mnist_mlp", args, tmp_path, monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("data (--quick): all 128 training examples (fewer than the 2048")
    assert lines[-1].startswith("mnist_mlp --quick: a sanity run, 1 epoch on 128 training examples")
    assert lines[-1].endswith("Full run: python -m examples.mnist_mlp --batchnorm reached test "
                              "accuracy 98.36% in 78 s (README).")


def test_a_full_run_ends_with_its_result_and_real_duration(tmp_path, monkeypatch, capsys):
    run_example("breast_cancer", ["--epochs", "2", "--model", "logistic"], tmp_path, monkeypatch)
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("breast_cancer: logistic_test_accuracy ")
    assert "--quick" not in last and "(training 0 s)" not in last


@pytest.mark.parametrize("seconds, shown", [(0.0312, "0.03 s"), (0.42, "0.42 s"), (8.34, "8.3 s"),
                                            (38.2, "38 s"), (247.4, "4 min 7 s"),
                                            (376, "6 min 16 s")])
def test_durations_read_as_people_write_them(seconds, shown):
    from examples import common
    assert common.format_seconds(seconds) == shown


def fake_history(losses, **metrics):
    steps = list(range(1, len(losses) + 1))
    return {"train": {"step": steps, "loss": list(losses), **metrics},
            "eval": {"step": [steps[-1]], "loss": [losses[-1]]}, "seconds": 1.0}


def visible_tick_labels(ax):
    """The y tick labels (major and minor) that a reader sees on ``ax``."""
    ax.figure.draw_without_rendering()
    low, high = ax.get_ylim()
    ticks = ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
    return [t.label1.get_text() for t in ticks
            if low <= t.get_loc() <= high and t.label1.get_visible() and t.label1.get_text()]


@pytest.mark.parametrize("high, low, at_least", [(2.3, 0.02, 5), (2.3, 0.18, 5), (900, 0.3, 4)])
def test_a_log_loss_axis_has_labels_a_person_can_read(high, low, at_least):
    from examples import common
    fig = common.plot_curves(fake_history(np.geomspace(high, low, 200)))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    labels = visible_tick_labels(ax)
    assert len(labels) >= at_least, labels
    for label in labels:                        # plain numbers, no 2x10^0
        float(label)


def test_a_loss_within_a_decade_stays_on_a_linear_axis():
    from examples import common
    fig = common.plot_curves(fake_history(np.linspace(2.37, 2.13, 16)))
    assert fig.axes[0].get_yscale() == "linear"
    assert len(visible_tick_labels(fig.axes[0])) >= 4


def test_figures_fit_a_laptop_screen_and_panels_can_be_chosen_and_titled():
    from examples import common
    history = fake_history(np.geomspace(2, 0.1, 50), accuracy=list(np.linspace(0.1, 0.9, 50)),
                           grad_norm=list(np.linspace(12, 3, 50)), clipped=[1.0] * 50)
    fig = common.plot_curves(history, "title")
    width, height = fig.get_size_inches() * 100          # save_curves writes at 100 dpi
    assert width <= 1300 and height <= 800, (width, height)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4
    fig = common.plot_curves(history, metrics=("loss", "clipped"), limits={"clipped": (0, 1.05)},
                             titles={"clipped": "every gradient clipped"})
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["loss", "every gradient clipped"]
    assert shown[1].get_ylim() == (0, 1.05)
