"""Bazel entry point: runs one pytest file (the default suite, without slow tests)."""
import sys

import pytest

if __name__ == "__main__":
    sys.exit(pytest.main([*sys.argv[1:], "-q", "-p", "no:cacheprovider", "-m", "not slow"]))
