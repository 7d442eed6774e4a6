"""The benchmarked architectures written in PyTorch from their published definitions,
for `benchmarks/bench_vs_torch.py` (PyTorch is a benchmark-only dependency: the
`bench` extra). Each builder returns an `nn.Module` taking `[B, 3, T, H, W]` with the
same layers, widths, strides and parameter count as the tfsts model of that name
(the benchmark asserts the counts equal):

* r2plus1d_18: VMZ's `pt/vmz/models/r2plus1d.py` (torchvision's `VideoResNet` with
  `R2Plus1dStem` and a per-conv (2+1)D mid width), blocks [2, 2, 2, 2];
* resnet3d_18: Hara et al.'s `models/resnet.py` (7x7x7 stem, 3x3x3 max pool, shortcut A);
* ircsn_50 / ipcsn_50: VMZ's `pt/vmz/models/csn.py` with layers [3, 4, 6, 3];
* x3d_s: pytorchvideo's `create_x3d` (hub `x3d_s`);
* slowonly_r50: pytorchvideo's `create_resnet` (hub `slow_r50`).

Only what the forward pass needs is written (no weight init schemes: timing does not
depend on the values).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _bn(channels: int, eps: float) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=eps, momentum=0.1)


def _conv(cin, cout, kernel, stride=1, groups=1, bias=False):
    kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
    return nn.Conv3d(cin, cout, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), groups=groups, bias=bias)


def _conv_bn(cin, cout, kernel, stride=1, groups=1, eps=1e-5, relu=True):
    layers = [_conv(cin, cout, kernel, stride, groups), _bn(cout, eps)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Head(nn.Module):
    """Global average pool, dropout, linear (torchvision / VMZ / pytorchvideo ResNets)."""

    def __init__(self, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(self.dropout(x.mean(dim=(2, 3, 4))))


class _Residual(nn.Module):
    def __init__(self, branch: nn.Module, shortcut: nn.Module | None):
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.branch(x) + residual)


class _ZeroPadShortcut(nn.Module):
    """Hara's shortcut A: `avg_pool3d(kernel_size=1, stride)` then zero channels."""

    def __init__(self, filters: int, stride: int):
        super().__init__()
        self.filters, self.stride = filters, stride

    def forward(self, x):
        x = nn.functional.avg_pool3d(x, kernel_size=1, stride=self.stride)
        pad = x.new_zeros(x.shape[0], self.filters - x.shape[1], *x.shape[2:])
        return torch.cat([x, pad], dim=1)


def _projection(cin, cout, stride, eps):
    return nn.Sequential(_conv(cin, cout, 1, stride), _bn(cout, eps))


# ------------------------------------------------------------------ R(2+1)D-18 (VMZ)
def _mid(cin: int, cout: int) -> int:
    return (27 * cin * cout) // (9 * cin + 3 * cout)


def _conv2plus1d(cin, cout, stride, eps, relu):
    st, ss = stride
    mid = _mid(cin, cout)
    return nn.Sequential(
        _conv_bn(cin, mid, (1, 3, 3), (1, ss, ss), eps=eps),
        _conv_bn(mid, cout, (3, 1, 1), (st, 1, 1), eps=eps, relu=relu),
    )


def r2plus1d_18(num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    eps = 1e-3
    layers = [_conv_bn(3, 45, (1, 7, 7), (1, 2, 2), eps=eps), _conv_bn(45, 64, (3, 1, 1), eps=eps)]
    cin = 64
    for index, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            s = 2 if index > 0 and block == 0 else 1
            branch = nn.Sequential(_conv2plus1d(cin, cout, (s, s), eps, True), _conv2plus1d(cout, cout, (1, 1), eps, False))
            shortcut = _projection(cin, cout, s, eps) if (s != 1 or cin != cout) else None
            layers.append(_Residual(branch, shortcut))
            cin = cout
    return nn.Sequential(*layers, _Head(512, num_classes, dropout))


# --------------------------------------------------------------- ResNet3D-18 (Hara)
def resnet3d_18(num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    eps = 1e-5
    layers = [_conv_bn(3, 64, (7, 7, 7), (1, 2, 2), eps=eps), nn.MaxPool3d(3, 2, 1)]
    cin = 64
    for index, cout in enumerate((64, 128, 256, 512)):
        for block in range(2):
            s = 2 if index > 0 and block == 0 else 1
            branch = nn.Sequential(_conv_bn(cin, cout, 3, s, eps=eps), _conv_bn(cout, cout, 3, eps=eps, relu=False))
            shortcut = _ZeroPadShortcut(cout, s) if (s != 1 or cin != cout) else None
            layers.append(_Residual(branch, shortcut))
            cin = cout
    return nn.Sequential(*layers, _Head(512, num_classes, dropout))


# ------------------------------------------------------------------- ir/ip-CSN (VMZ)
def _csn(mode: str, num_classes: int, dropout: float) -> nn.Module:
    eps = 1e-3
    layers = [_conv_bn(3, 64, (3, 7, 7), (1, 2, 2), eps=eps), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))]
    cin = 64
    for index, (blocks, st) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
        inner = 64 * 2**index
        for block in range(blocks):
            stride = (st, 2 if index else 1, 2 if index else 1) if block == 0 else (1, 1, 1)
            parts = [_conv_bn(cin, inner, 1, eps=eps)]
            if mode == "ip":
                parts.append(_conv_bn(inner, inner, 1, eps=eps, relu=False))
            parts += [_conv_bn(inner, inner, 3, stride, groups=inner, eps=eps), _conv_bn(inner, inner * 4, 1, eps=eps, relu=False)]
            shortcut = _projection(cin, inner * 4, stride, eps) if (stride != (1, 1, 1) or cin != inner * 4) else None
            layers.append(_Residual(nn.Sequential(*parts), shortcut))
            cin = inner * 4
    return nn.Sequential(*layers, _Head(2048, num_classes, dropout))


def ircsn_50(num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    return _csn("ir", num_classes, dropout)


def ipcsn_50(num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    return _csn("ip", num_classes, dropout)


# ------------------------------------------------------------ X3D-S (pytorchvideo)
def _round_width(width, multiplier, min_width=8, divisor=8):
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * width else out)


class _SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv3d(channels, reduced, 1, bias=True)
        self.expand = nn.Conv3d(reduced, channels, 1, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


class _X3DHead(nn.Module):
    def __init__(self, cin, inner, num_classes, dropout):
        super().__init__()
        self.conv5 = _conv_bn(cin, inner, 1)
        self.lin5 = nn.Conv3d(inner, 2048, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.conv5(x).mean(dim=(2, 3, 4), keepdim=True)
        x = torch.relu(self.lin5(x)).flatten(1)
        return self.proj(self.dropout(x))


def x3d_s(num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    stem = nn.Sequential(
        _conv(3, 24, (1, 3, 3), (1, 2, 2)), _conv(24, 24, (5, 1, 1), groups=24), _bn(24, 1e-5), nn.ReLU(inplace=True)
    )
    layers, cin = [stem], 24
    dims = [12]
    for _ in range(3):
        dims.append(_round_width(dims[-1], 2.0))
    for dim, depth in zip(dims, (1, 2, 5, 3)):
        out = _round_width(dim, 2.0)
        inner = int(2.25 * out)
        for block in range(math.ceil(2.2 * depth)):
            s = 2 if block == 0 else 1
            parts = [_conv_bn(cin, inner, 1), _conv(inner, inner, 3, (1, s, s), groups=inner), _bn(inner, 1e-5)]
            if block % 2 == 0:
                parts.append(_SqueezeExcitation(inner, _round_width(inner, 0.0625)))
            parts += [nn.SiLU(), _conv_bn(inner, out, 1, relu=False)]
            shortcut = None
            if cin != out or s != 1:
                conv = _conv(cin, out, 1, (1, s, s))
                shortcut = nn.Sequential(conv, _bn(out, 1e-5)) if cin != out else conv
            layers.append(_Residual(nn.Sequential(*parts), shortcut))
            cin = out
    return nn.Sequential(*layers, _X3DHead(cin, int(2.25 * cin), num_classes, dropout))


# ------------------------------------------------------- SlowOnly-R50 (pytorchvideo)
def slowonly_r50(num_classes: int = 400, dropout: float = 0.5) -> nn.Module:
    layers = [_conv_bn(3, 64, (1, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))]
    cin = 64
    for index, (blocks, t) in enumerate(zip((3, 4, 6, 3), (1, 1, 3, 3))):
        inner = 64 * 2**index
        for block in range(blocks):
            s = 2 if index > 0 and block == 0 else 1
            branch = nn.Sequential(
                _conv_bn(cin, inner, (t, 1, 1)), _conv_bn(inner, inner, (1, 3, 3), (1, s, s)),
                _conv_bn(inner, inner * 4, 1, relu=False),
            )
            shortcut = _projection(cin, inner * 4, (1, s, s), 1e-5) if (s != 1 or cin != inner * 4) else None
            layers.append(_Residual(branch, shortcut))
            cin = inner * 4
    return nn.Sequential(*layers, _Head(2048, num_classes, dropout))


BUILDERS = {
    "r2plus1d_18": r2plus1d_18,
    "ircsn_50": ircsn_50,
    "ipcsn_50": ipcsn_50,
    "x3d_s": x3d_s,
    "slowonly_r50": slowonly_r50,
    "resnet3d_18": resnet3d_18,
}


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
