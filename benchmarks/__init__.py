"""Benchmarks; `import tfsts` first, so that TensorFlow loads with the CPU kernels users get
(tfsts/__init__.py: oneDNN on x86)."""
import tfsts  # noqa: F401
