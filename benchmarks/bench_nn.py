"""fnn layers vs torch eager on the CPU: Conv2d and LSTM, forward and forward+backward.

Each workload runs the fnn layer (gradients with ``fgrad.value_and_grad``) and the torch module
loaded with the same state_dict, in float32, in the same process; the outputs and gradients are
checked to agree before anything is timed. "forward+backward" is the gradient of
``sum(output * cotangent)`` with respect to every parameter and the input.

* conv2d: ``Conv2d(16, 32, 3, padding=1)`` on a batch of 32 images of 28x28;
* LSTM step: ``LSTM(64, 128)`` on one time step of a batch of 32;
* LSTM sequence: the same layer on 50 time steps (torch runs its fused C++ kernel; fnn.LSTM
  its fused NumPy layer, ``fnn/layers/_recurrent_kernels.py``, one tape node per layer).

fnn and torch are timed in interleaved rounds (each round times both once; the best round
counts), so that the ratio holds while other jobs share the machine. By default both run on one
thread (NumPy's BLAS through threadpoolctl, ``torch.set_num_threads(1)``) and the times are CPU
time (``time.process_time``), which the other jobs' load does not inflate; ``--threads 0``
leaves the libraries' default thread counts and measures wall-clock time.

    python -m benchmarks.bench_nn [--threads N] [--clock cpu|wall]
"""
import argparse
import time

import numpy as np
import torch

import fgrad
import fgrad.numpy as fnp
import fnn
from benchmarks._timing import interleaved_best, print_table


def fnn_workload(layer, params, inputs, cotangent, pick):
    """``forward()`` and ``forward_backward()`` closures for an fnn layer."""
    def loss(params, *inputs):
        return fnp.sum(pick(layer.apply(params, *inputs)) * cotangent)

    value_and_grad = fgrad.value_and_grad(loss, argnums=tuple(range(1 + len(inputs))))
    return (lambda: layer.apply(params, *inputs)), (lambda: value_and_grad(params, *inputs))


def torch_workload(module, inputs, cotangent, pick):
    tensors = [torch.from_numpy(x).requires_grad_(True) for x in inputs]
    ct = torch.from_numpy(cotangent)

    def forward():
        with torch.no_grad():
            return module(*tensors)

    def forward_backward():
        module.zero_grad()
        for t in tensors:
            t.grad = None
        loss = (pick(module(*tensors)) * ct).sum()
        loss.backward()
        return loss, [p.grad for p in module.parameters()], [t.grad for t in tensors]

    return forward, forward_backward


def check_agreement(name, fnn_fb, torch_fb, module):
    """The fnn and torch losses and gradients agree to float32 accuracy (relative to each
    array's largest entry: the gradients are sums of many terms)."""
    value, grads = fnn_fb()
    t_value, t_param_grads, t_input_grads = torch_fb()
    pairs = [(value, t_value.detach().numpy())]
    ours = fnn.utils.flatten_names(grads[0])
    pairs += [(ours[param_name], g.numpy()) for (param_name, _), g in zip(module.named_parameters(), t_param_grads)]
    pairs += [(g, t.numpy()) for g, t in zip(grads[1:], t_input_grads)]
    for got, expected in pairs:
        scale = float(np.abs(expected).max())
        assert np.abs(got - expected).max() <= 1e-4 * scale, f"{name}: fnn and torch disagree"


def workloads(rng):
    """``(name, fnn layer, torch module, inputs, output picker for fnn, for torch)``."""
    conv = fnn.Conv2d(16, 32, 3, padding=1)
    lstm = fnn.LSTM(64, 128)
    image = rng.standard_normal((32, 16, 28, 28)).astype(np.float32)
    step = rng.standard_normal((1, 32, 64)).astype(np.float32)
    sequence = rng.standard_normal((50, 32, 64)).astype(np.float32)
    first = lambda out: out[0]  # noqa: E731 - the output sequence of an LSTM
    same = lambda out: out  # noqa: E731
    return [
        ("conv2d 32x16x28x28 -> 32 ch, 3x3", conv, torch.nn.Conv2d(16, 32, 3, padding=1), [image], same),
        ("LSTM(64, 128) one step, batch 32", lstm, torch.nn.LSTM(64, 128), [step], first),
        ("LSTM(64, 128) 50 steps, batch 32", lstm, torch.nn.LSTM(64, 128), [sequence], first),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and torch threads (0: leave the libraries' defaults)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default=None,
                        help="CPU time (the default with one thread) or wall-clock time")
    parser.add_argument("--only", choices=("conv", "lstm"), default=None)
    args = parser.parse_args(argv)
    if args.threads:
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl is not installed: NumPy's BLAS uses its default thread count")
        torch.set_num_threads(args.threads)
    clock_name = args.clock or ("cpu" if args.threads == 1 else "wall")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    rng = np.random.default_rng(0)
    rows = []
    for name, layer, module, inputs, pick in workloads(rng):
        if args.only and not name.lower().startswith(args.only):
            continue
        params = layer.init(fgrad.random.key(0))
        module.load_state_dict({k: torch.from_numpy(v) for k, v in fnn.io.to_torch_state_dict(params).items()})
        out = pick(layer.apply(params, *inputs))
        cotangent = rng.standard_normal(np.shape(out)).astype(np.float32)
        fnn_fwd, fnn_fb = fnn_workload(layer, params, inputs, cotangent, pick)
        torch_fwd, torch_fb = torch_workload(module, inputs, cotangent, pick)
        check_agreement(name, fnn_fb, torch_fb, module)
        for what, ours, theirs in (("forward", fnn_fwd, torch_fwd), ("forward+backward", fnn_fb, torch_fb)):
            t = interleaved_best({"fnn": ours, "torch": theirs}, number=3, repeat=7, clock=clock)
            rows.append((name, what, f"{t['fnn'] * 1e3:.2f}", f"{t['torch'] * 1e3:.2f}",
                         f"{t['fnn'] / t['torch']:.2f}"))
    print_table(f"fnn vs torch {torch.__version__} eager, CPU, float32 ({clock_name} time, torch threads: "
                f"{torch.get_num_threads()}, best of 7 interleaved rounds)",
                ("workload", "pass", "fnn ms", "torch ms", "ratio fnn/torch"), rows)
    for row in rows:
        if row[0].startswith("LSTM(64, 128) 50 steps") and row[1] == "forward+backward":
            print(f"\nLSTM(64, 128) 50 steps forward+backward, fnn / torch eager: {row[4]}x")


if __name__ == "__main__":
    main()
