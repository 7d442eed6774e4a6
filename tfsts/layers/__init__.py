"""Keras layers of tfsts (backend-agnostic, written with keras.ops)."""
from tfsts.layers.sts_conv import STSConv3D, depthwise_conv3d, pad_symmetric

__all__ = ["STSConv3D", "depthwise_conv3d", "pad_symmetric"]
