"""tfsts: image pre-training for spatiotemporal recognition on TensorFlow 2 / Keras 3."""
__version__ = "0.1.0"
