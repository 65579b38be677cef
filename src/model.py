"""The classic PyTorch examples MNIST CNN, with a faster CPU forward pass.

The parameters (conv1, conv2, fc1, fc2) and the function computed are those of the
``Net`` in pytorch/examples mnist/main.py, so state dicts load either way. The forward
pass is rearranged for speed on CPU, without changing the maths:

* ``max_pool(relu(x)) == relu(max_pool(x))`` exactly (ReLU is monotonic), so the second
  ReLU runs on the pooled tensor (4x fewer elements), and both ReLUs run in place.
* the 2x2 max-pool is computed in channels-last layout, where PyTorch's CPU kernel is
  vectorised (the NCHW one is several times slower); gradients are bit-identical to
  ``F.max_pool2d`` including the choice among tied maxima.
* dropout masks come from random bytes compared with a threshold (keep probability
  0.75 = 192/256 and 0.5 = 128/256 exactly), several times cheaper on CPU than
  ``bernoulli_``; it is the same inverted dropout (kept units scaled by 1/(1-p)).
* the convolutions' weight gradients are computed as forward convolutions (the batch
  taking the place of the channels), which oneDNN runs much faster than its
  backward-weights kernel for these shapes; they agree with autograd's to float rounding.

On other devices (CUDA) the standard functional ops are used.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHITECTURE = "mnist-cnn"
INPUT_SHAPE = (1, 28, 28)
NUM_CLASSES = 10


class _MaxPool2x2(torch.autograd.Function):
    """2x2/stride-2 max-pool of an NCHW tensor via the channels-last CPU kernel."""

    @staticmethod
    def forward(ctx, x):
        y, idx = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), [2, 2], [2, 2]
        )
        # The indices are per-plane (h * W + w), the same in either layout, so the
        # plain NCHW backward kernel can use them.
        idx = idx.contiguous()
        ctx.save_for_backward(x, idx)
        return y.contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx
        )


class _Conv2dValid(torch.autograd.Function):
    """Stride-1, unpadded conv2d whose weight gradient is computed as a convolution.

    dL/dW[o, c] = sum_n x[n, c] (cross-correlated with) g[n, o], i.e. conv2d of the input
    with the batch as channels by the output gradient with the batch as input channels.
    oneDNN runs that as a forward convolution markedly faster on CPU than its backward-
    weights kernel for these shapes (and for the 1-channel first layer, several times).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                None,
                [1, 1],
                [0, 0],
                [1, 1],
                False,
                [0, 0],
                1,
                [True, False, False],
            )[0]
        if ctx.needs_input_grad[1]:
            grad_w = F.conv2d(x.transpose(0, 1), grad.transpose(0, 1)).transpose(0, 1).contiguous()
            if grad_w.stride() != weight.stride():
                # A size-1 dim (conv1's one input channel) keeps a stride that .contiguous()
                # accepts but DistributedDataParallel's gradient buckets do not ("Grad strides
                # do not match bucket view strides"); same values, the weight's layout.
                grad_w = torch.empty_like(weight).copy_(grad_w)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


def conv2d(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a stride-1, unpadded, ungrouped nn.Conv2d, faster to train on CPU."""
    if (
        x.device.type != "cpu"
        or not torch.is_grad_enabled()
        or conv.stride != (1, 1)
        or conv.padding != (0, 0)
        or conv.dilation != (1, 1)
        or conv.groups != 1
        or conv.bias is None
        or conv.padding_mode != "zeros"
    ):
        return conv(x)
    return _Conv2dValid.apply(x, conv.weight, conv.bias)


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    if x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous():
        return F.max_pool2d(x, 2)
    return _MaxPool2x2.apply(x)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout; on CPU the mask is drawn from random bytes when p*256 is whole."""
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    threshold = keep * 256
    if x.device.type != "cpu" or threshold != int(threshold) or not 0 < threshold < 256:
        return F.dropout(x, p, True)
    n = x.numel()
    # int64 random_() yields 63 uniform bits: use the 7 low bytes of each word.
    words = torch.empty((n + 6) // 7, dtype=torch.int64, device=x.device).random_()
    random_bytes = words.view(torch.uint8).view(-1, 8)[:, :7]
    mask = (random_bytes < int(threshold)).view(-1)[:n].view(x.shape)
    return x * (mask * (1.0 / keep))


class Net(nn.Module):
    """conv(1->32,3) relu conv(32->64,3) relu maxpool2 dropout(.25) fc(9216->128) relu
    dropout(.5) fc(128->10) log_softmax, as in pytorch/examples mnist/main.py."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(conv2d(x, self.conv1), inplace=True)
        x = max_pool2x2(conv2d(x, self.conv2))
        x = F.relu(x, inplace=True)
        x = dropout(x, self.dropout1.p, self.training)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x), inplace=True)
        x = dropout(x, self.dropout2.p, self.training)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)
