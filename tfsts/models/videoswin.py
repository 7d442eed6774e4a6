"""Video Swin Transformer (Liu et al. 2022) from keras-cv, with tfsts heads.

The transformer family co-training (CoVeR) was shown on. keras-cv's presets download
their config from a hub even without weights, so the backbone class is constructed
directly with the published sizes. No STS: it is a convolution method.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import keras

from tfsts.models.blocks import clip_input

# keras-cv's Swin block calls its attention layer as `attn(x, mask=attn_mask)`: the
# shifted-window attention mask, a plain call argument. Keras reads `mask=` as a
# Keras mask and warns, once per shifted block, that the layer "does not support
# masking and will therefore destroy the mask information": harmless (the attention
# still receives and applies the mask; no Keras mask is meant to flow on). Only that
# message, from that layer type, is silenced; every other warning stays.
warnings.filterwarnings(
    "ignore",
    message=r"Layer '[^']*' \(of type VideoSwinWindowAttention\) was passed an input with a mask attached",
    category=UserWarning,
)

# Published configurations (Video Swin, Table 1 / keras-cv presets).
SIZES = {
    "tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "small": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
    "base": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
}


def videoswin_backbone(
    input_shape: Sequence[int],
    *,
    name: str = "videoswin_tiny",
    size: str = "tiny",
    patch_size: Sequence[int] = (2, 4, 4),
    window_size: Sequence[int] = (8, 7, 7),
    drop_path_rate: float = 0.1,
    normalization: str | None = None,
) -> keras.Model:
    """Features [B, T/2, H/32, W/32, C] of keras-cv's VideoSwinBackbone."""
    try:
        from keras_cv.models import VideoSwinBackbone
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "videoswin models need keras-cv: pip install -e '.[cv]'"
        ) from err
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}; got {size!r}.")
    inputs, clip = clip_input(input_shape, normalization)
    swin = VideoSwinBackbone(
        input_shape=tuple(input_shape),
        patch_size=list(patch_size),
        window_size=list(window_size),
        include_rescaling=False,
        drop_path_rate=drop_path_rate,
        name=f"{name}_swin",
        **SIZES[size],
    )
    return keras.Model(inputs, swin(clip), name=name)
