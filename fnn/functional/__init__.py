"""fnn.functional: pure functions with ``torch.nn.functional``'s names, arguments and layouts.

Every function takes and returns arrays (NumPy arrays outside transforms, tracers inside), holds
no state and mutates nothing, so ``grad``, ``vmap``, ``jvp`` and their compositions apply to
any model written with it. The families live in one module each:

=================  ==============================================================
``activation``     relu, leaky_relu, elu, selu, gelu, silu, mish, sigmoid, tanh,
                   softplus, logsigmoid, softsign, hardtanh, relu6, softmax,
                   log_softmax, softmin
``linear``         linear, bilinear
``conv``           conv1d/2d/3d, conv_transpose1d/2d/3d, unfold, fold
``pooling``        max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool1d/2d
``normalization``  batch_norm, layer_norm, group_norm, rms_norm
``loss``           cross_entropy, nll_loss, mse_loss, l1_loss, huber_loss,
                   smooth_l1_loss, binary_cross_entropy(_with_logits),
                   hinge_embedding_loss, multi_margin_loss, kl_div
``attention``      scaled_dot_product_attention
``sparse``         embedding, one_hot
``dropout``        dropout (with an explicit random ``key``)
``padding``        pad
=================  ==============================================================

>>> import numpy as np, fgrad, fnn.functional as F
>>> def loss(w, x, y):
...     return F.cross_entropy(F.linear(F.relu(x), w), y)
>>> w, x, y = np.random.randn(3, 4), np.random.randn(8, 4), np.arange(8) % 3
>>> per_example = fgrad.vmap(fgrad.grad(loss), in_axes=(None, 0, 0))(w, x, y)   # (8, 3, 4)
"""
from .activation import (elu, gelu, hardtanh, leaky_relu, log_softmax, logsigmoid, mish, relu,
                         relu6, selu, sigmoid, silu, softmax, softmin, softplus, softsign, tanh)
from .attention import scaled_dot_product_attention
from .conv import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d,
                   fold, unfold)
from .dropout import dropout
from .linear import bilinear, linear
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                   hinge_embedding_loss, huber_loss, kl_div, l1_loss, mse_loss,
                   multi_margin_loss, nll_loss, smooth_l1_loss)
from .normalization import batch_norm, group_norm, layer_norm, rms_norm
from .padding import pad
from .pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d,
                      max_pool1d, max_pool2d)
from .sparse import embedding, one_hot

__all__ = ["elu", "gelu", "hardtanh", "leaky_relu", "log_softmax", "logsigmoid", "mish", "relu",
           "relu6", "selu", "sigmoid", "silu", "softmax", "softmin", "softplus", "softsign",
           "tanh", "scaled_dot_product_attention", "conv1d", "conv2d", "conv3d",
           "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "fold", "unfold",
           "dropout", "bilinear", "linear", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "cross_entropy", "hinge_embedding_loss",
           "huber_loss", "kl_div", "l1_loss", "mse_loss", "multi_margin_loss", "nll_loss",
           "smooth_l1_loss", "batch_norm", "group_norm", "layer_norm", "rms_norm", "pad",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "avg_pool1d", "avg_pool2d",
           "max_pool1d", "max_pool2d", "embedding", "one_hot"]
