"""Keras layers of tfsts (backend-agnostic, written with keras.ops)."""
from tfsts.layers.batch_norm import BatchNorm
from tfsts.layers.sts_conv import STSConv3D, depthwise_conv3d, pad_symmetric
from tfsts.layers.normalization import InputNormalization

__all__ = ["BatchNorm", "InputNormalization", "STSConv3D", "depthwise_conv3d", "pad_symmetric"]
