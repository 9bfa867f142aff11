"""One whole training step of the MNIST CNN example equals the same step in torch (float64).

The network of ``examples/mnist_cnn.py`` (conv-relu-maxpool twice, a hidden linear layer, the
classifier) is built in float64, and a ``torch.nn.Sequential`` of the same layers gets the same
weights through ``fnn.io.to_torch_state_dict``. On the same batch, the step of
the example's own ``make_step`` must give torch's loss, torch's gradient for every parameter,
and, after one Adam step, torch's updated parameters (``torch.optim.Adam`` with the same
hyper-parameters).

The same check for the ResNet of ``examples/resnet.py``, whose step also carries BatchNorm's
running statistics: after one AdamW step the weights and the new running means, variances and
batch counts must be torch's, and so must the logits in evaluation mode that use them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fgrad
import foptim
from examples import mnist_cnn, resnet
from fnn.io import to_torch_state_dict
from fnn.utils import flatten_names


def torch_cnn(channels=(16, 32), hidden=128, num_classes=10):
    """The torch twin of ``mnist_cnn.build_model(1, 28, channels, hidden)``: same layers, same
    order, so the state_dict keys are the fnn params' dotted names."""
    layers, c, size = [], 1, 28
    for out in channels:
        layers += [torch.nn.Conv2d(c, out, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        c, size = out, size // 2
    layers += [torch.nn.Flatten(), torch.nn.Linear(c * size * size, hidden), torch.nn.ReLU(),
               torch.nn.Linear(hidden, num_classes)]
    return torch.nn.Sequential(*layers).double()


@pytest.mark.parametrize("seed", [0, 1])
def test_one_training_step_matches_torch(seed):
    rng = np.random.default_rng(seed)
    model = mnist_cnn.build_model(1, 28, dtype=np.float64)
    params = model.init(fgrad.random.key(seed))
    x = rng.normal(size=(16, 1, 28, 28))
    y = rng.integers(0, 10, size=16)

    twin = torch_cnn()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch_state_dict(params).items()})
    assert sorted(twin.state_dict()) == sorted(flatten_names(params))

    # torch: loss, gradients, one Adam step
    lr, betas, eps = 1e-3, (0.9, 0.999), 1e-8
    torch_opt = torch.optim.Adam(twin.parameters(), lr=lr, betas=betas, eps=eps)
    logits = twin(torch.from_numpy(x))
    torch_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    torch_loss.backward()
    torch_grads = {k: p.grad.numpy().copy() for k, p in twin.named_parameters()}
    torch_opt.step()
    torch_updated = {k: p.detach().numpy() for k, p in twin.named_parameters()}

    # fgrad: the example's loss and its pure step
    loss = mnist_cnn.make_loss(model)
    (value, metrics), grads = fgrad.value_and_grad(loss, has_aux=True)(params, (x, y), None)
    optimizer = foptim.adam(lr, b1=betas[0], b2=betas[1], eps=eps)
    step = mnist_cnn.make_step(loss, optimizer)
    updated, _, step_metrics = step(params, optimizer.init(params), (x, y), fgrad.random.key(0))

    np.testing.assert_allclose(value, torch_loss.item(), rtol=1e-12)
    np.testing.assert_allclose(step_metrics["loss"], torch_loss.item(), rtol=1e-12)
    expected_accuracy = (logits.argmax(1).numpy() == y).mean()
    assert metrics["accuracy"] == pytest.approx(expected_accuracy)
    grads, updated = flatten_names(grads), flatten_names(updated)
    assert sorted(grads) == sorted(torch_grads)
    for name, expected in torch_grads.items():
        np.testing.assert_allclose(grads[name], expected, rtol=1e-9, atol=1e-12, err_msg=name)
    for name, expected in torch_updated.items():
        np.testing.assert_allclose(updated[name], expected, rtol=1e-12, atol=1e-14, err_msg=name)


class TorchResNet(torch.nn.Module):
    """The torch twin of ``resnet.ResNet``: same attribute names, so the same state_dict keys."""

    def __init__(self, in_channels, num_classes, width, blocks, stem_stride):
        super().__init__()

        def conv_bn(c_in, c_out, k, stride):
            return torch.nn.ModuleDict({
                "conv": torch.nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
                "bn": torch.nn.BatchNorm2d(c_out)})

        self.stem = conv_bn(in_channels, width, 3, stem_stride)
        channels = width
        for stage, (out, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2)], 1):
            stage_blocks = torch.nn.ModuleDict()
            for i in range(blocks):
                s = stride if i == 0 else 1
                block = torch.nn.ModuleDict({"block1": conv_bn(channels, out, 3, s),
                                             "block2": conv_bn(out, out, 3, 1)})
                if s != 1 or channels != out:
                    block["shortcut"] = conv_bn(channels, out, 1, s)
                stage_blocks[str(i)] = block
                channels = out
            setattr(self, f"stage{stage}", stage_blocks)
        self.fc = torch.nn.Linear(channels, num_classes)

    def forward(self, x):
        def conv_bn(pair, h):
            return pair["bn"](pair["conv"](h))

        h = torch.relu(conv_bn(self.stem, x))
        for stage in (self.stage1, self.stage2, self.stage3):
            for block in stage.values():
                out = conv_bn(block["block2"], torch.relu(conv_bn(block["block1"], h)))
                skip = conv_bn(block["shortcut"], h) if "shortcut" in block else h
                h = torch.relu(out + skip)
        return self.fc(h.mean(dim=(2, 3)))


@pytest.mark.parametrize("blocks, stem_stride", [(1, 2), (2, 1)])
def test_one_resnet_step_matches_torch(blocks, stem_stride):
    rng = np.random.default_rng(blocks)
    model = resnet.ResNet(3, 10, width=4, blocks=blocks, stem_stride=stem_stride, dtype=np.float64)
    weights, state = model.init(fgrad.random.key(blocks)), model.init_state()
    x, y = rng.normal(size=(8, 3, 16, 16)), rng.integers(0, 10, size=8)

    twin = TorchResNet(3, 10, 4, blocks, stem_stride).double()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v))
                          for k, v in to_torch_state_dict(weights, state).items()})
    lr, weight_decay = 1e-2, 1e-2
    torch_opt = torch.optim.AdamW(twin.parameters(), lr=lr, weight_decay=weight_decay)
    twin.train()
    torch_loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
    torch_loss.backward()
    torch_grads = {k: p.grad.numpy().copy() for k, p in twin.named_parameters()}
    torch_opt.step()

    loss = resnet.make_loss(model)
    (value, (_, _)), grads = fgrad.value_and_grad(loss, has_aux=True)(weights, state, (x, y))
    optimizer = foptim.adamw(lr, weight_decay=weight_decay)
    step = resnet.make_step(loss, optimizer)
    (new_weights, new_state), _, metrics = step((weights, state), optimizer.init(weights), (x, y), None)

    np.testing.assert_allclose(value, torch_loss.item(), rtol=1e-12)
    np.testing.assert_allclose(metrics["loss"], torch_loss.item(), rtol=1e-12)
    grads = flatten_names(grads)
    assert sorted(grads) == sorted(torch_grads)
    for name, expected in torch_grads.items():
        np.testing.assert_allclose(grads[name], expected, rtol=1e-9, atol=1e-12, err_msg=name)
    ours = to_torch_state_dict(new_weights, new_state)
    theirs = twin.state_dict()
    assert sorted(ours) == sorted(theirs)
    for name, expected in theirs.items():              # weights after AdamW, running statistics
        np.testing.assert_allclose(ours[name], expected.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)

    twin.eval()
    x_new = rng.normal(size=(4, 3, 16, 16))
    logits, _ = model.apply(new_weights, x_new, state=new_state, train=False)
    np.testing.assert_allclose(logits, twin(torch.from_numpy(x_new)).detach().numpy(), rtol=1e-9,
                               atol=1e-12)
