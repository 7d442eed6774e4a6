"""Independent NumPy implementations used as test oracles.

Written from ../shared/reference/sts.md with explicit index arithmetic (no Keras, no
TensorFlow), so that tests compare two unrelated implementations of the same text.
"""

from __future__ import annotations

import numpy as np


def tap_window(offset, out_sizes, strides) -> tuple:
    """The index of the padded input [B, *spatial, C] that kernel tap `offset` reads for each
    output position: from the offset, every stride-th, one per output."""
    return (slice(None), *(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, out_sizes, strides)))


def conv_nd(x: np.ndarray, kernel: np.ndarray, strides, groups: int = 1) -> np.ndarray:
    """Grouped N-d conv, channels-last, symmetric zero padding (k - 1) / 2 per side.

    x: [B, *spatial, C]; kernel: [*k, C // groups, O].
    """
    nd = kernel.ndim - 2
    ks = kernel.shape[:nd]
    pads = [(0, 0)] + [((k - 1) // 2, (k - 1) // 2) for k in ks] + [(0, 0)]
    xp = np.pad(x, pads)
    out_sizes = [
        (x.shape[1 + i] + 2 * ((ks[i] - 1) // 2) - ks[i]) // strides[i] + 1 for i in range(nd)
    ]
    cin_g = kernel.shape[-2]
    cout = kernel.shape[-1]
    cout_g = cout // groups
    out = np.zeros((x.shape[0], *out_sizes, cout), dtype=np.float64)
    for offset in np.ndindex(*ks):
        window = xp[tap_window(offset, out_sizes, strides)]  # [B, *out, C]
        tap = kernel[offset]  # [C // groups, O]
        for g in range(groups):
            xs = window[..., g * cin_g : (g + 1) * cin_g]
            out[..., g * cout_g : (g + 1) * cout_g] += xs @ tap[:, g * cout_g : (g + 1) * cout_g]
    return out


def depthwise_seq_conv(seq: np.ndarray, taps: np.ndarray, stride: int) -> np.ndarray:
    """1-D depthwise conv over [N, L, C] with taps [k, C], padding (k - 1) / 2."""
    k = taps.shape[0]
    pad = (k - 1) // 2
    n, length, c = seq.shape
    out_len = (length + 2 * pad - k) // stride + 1
    out = np.zeros((n, out_len, c))
    for i in range(out_len):
        for j in range(k):
            src = i * stride + j - pad
            if 0 <= src < length:
                out[:, i] += seq[:, src] * taps[j]
    return out


def dense_seq_conv(seq: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """1-D dense conv over [N, L, C] with taps [k, C, O], stride 1, padding (k - 1) / 2."""
    k = taps.shape[0]
    pad = (k - 1) // 2
    n, length, _ = seq.shape
    out = np.zeros((n, length, taps.shape[-1]))
    for i in range(length):
        for j in range(k):
            src = i + j - pad
            if 0 <= src < length:
                out[:, i] += seq[:, src] @ taps[j]
    return out


def sts_case_a(x: np.ndarray, kernel: np.ndarray, spatial_stride: int) -> np.ndarray:
    """sts.md case A. x: [B, T, H, W, C]; kernel: [3, 3, 3, 1, C]."""
    b, t, h, w, c = x.shape
    half = c // 2
    s = spatial_stride
    x_app, x_mot = x[..., :half], x[..., half:]
    k_app, k_mot = kernel[..., 0, :half], kernel[..., 0, half:]  # [3, 3, 3, half]
    motion = conv_nd(x_mot, k_mot[..., None, :], (1, s, s), groups=half)

    frames = x_app.reshape(b * t, h, w, half)
    spatial = conv_nd(frames, k_app[1][..., None, :], (s, s), groups=half)
    raster = frames.reshape(b * t, h * w, half)  # index h * W + w
    r = depthwise_seq_conv(raster, k_app[0].reshape(9, half), s * s)
    r = r.reshape(b * t, h // s, w // s, half)
    transposed = frames.transpose(0, 2, 1, 3).reshape(b * t, w * h, half)  # index w * H + h
    col = depthwise_seq_conv(transposed, k_app[2].reshape(9, half), s * s)
    col = col.reshape(b * t, w // s, h // s, half).transpose(0, 2, 1, 3)
    appearance = (spatial + r + col).reshape(b, t, h // s, w // s, half)
    return np.concatenate([appearance, motion], axis=-1)


def sts_case_bc(x: np.ndarray, kernel: np.ndarray, temporal_stride: int = 1) -> np.ndarray:
    """sts.md cases B (temporal_stride 1) and C. x: [B, T, H, W, C]; kernel: [3, 1, 1, C, O]."""
    b, t, h, w, c = x.shape
    o = kernel.shape[-1]
    q = o // 4
    motion = conv_nd(x, kernel[..., 2 * q :], (temporal_stride, 1, 1))
    kept = x[:, ::temporal_stride]
    tk = kept.shape[1]
    frames = kept.reshape(b * tk, h, w, c)
    k1 = kernel[:, 0, 0, :, :q]  # [3, C, q]
    k2 = kernel[:, 0, 0, :, q : 2 * q]
    a1 = dense_seq_conv(frames.reshape(b * tk, h * w, c), k1).reshape(b, tk, h, w, q)
    a2 = dense_seq_conv(frames.transpose(0, 2, 1, 3).reshape(b * tk, w * h, c), k2)
    a2 = a2.reshape(b * tk, w, h, q).transpose(0, 2, 1, 3).reshape(b, tk, h, w, q)
    return np.concatenate([a1, a2, motion], axis=-1)


def max_pool3d_and_grad(x: np.ndarray, pool_size, strides, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's 3D max pool (padding (k - 1) / 2 of -inf per side) of x [B, T, H, W, C], and
    its gradient for the output gradient dy: each output's dy goes to the first input of its
    window, in (t, h, w) order, that holds the window's maximum (PyTorch's choice)."""
    pads = [(k - 1) // 2 for k in pool_size]
    padded = np.pad(x, [(0, 0), *[(p, p) for p in pads], (0, 0)], constant_values=-np.inf)
    out_shape = [(n + 2 * p - k) // s + 1 for n, p, k, s in zip(x.shape[1:4], pads, pool_size, strides)]
    y = np.empty((x.shape[0], *out_shape, x.shape[4]), x.dtype)
    grad = np.zeros_like(padded)
    for b, t, h, w in np.ndindex(x.shape[0], *out_shape):
        t0, h0, w0 = t * strides[0], h * strides[1], w * strides[2]
        window = padded[b, t0:t0 + pool_size[0], h0:h0 + pool_size[1], w0:w0 + pool_size[2]]
        flat = window.reshape(-1, x.shape[4])
        first = flat.argmax(axis=0)  # per channel
        y[b, t, h, w] = flat.max(axis=0)
        dt, dh, dw = np.unravel_index(first, pool_size)
        np.add.at(grad, (b, t0 + dt, h0 + dh, w0 + dw, np.arange(x.shape[4])), dy[b, t, h, w])
    inner = tuple(slice(p, p + n) for p, n in zip(pads, x.shape[1:4]))
    return y, grad[(slice(None), *inner)]


def conv_nd_gradients(x: np.ndarray, kernel: np.ndarray, strides, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The input and kernel gradients of sum(conv_nd(x, kernel, strides) * dy) (groups 1): each
    tap's window of the padded input gets dy @ tap^T back, and the tap gets window^T @ dy."""
    ks = kernel.shape[: kernel.ndim - 2]
    pads = [(0, 0)] + [((k - 1) // 2, (k - 1) // 2) for k in ks] + [(0, 0)]
    xp = np.pad(x.astype(np.float64), pads)
    dxp = np.zeros_like(xp)
    dk = np.zeros(kernel.shape, dtype=np.float64)
    out_sizes = dy.shape[1:-1]
    for offset in np.ndindex(*ks):
        index = tap_window(offset, out_sizes, strides)
        dk[offset] = xp[index].reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])
        dxp[index] += dy @ kernel[offset].T
    crop = tuple([slice(None)] + [slice(p, p + n) for (p, _), n in zip(pads[1:-1], x.shape[1:-1])] + [slice(None)])
    return dxp[crop], dk
