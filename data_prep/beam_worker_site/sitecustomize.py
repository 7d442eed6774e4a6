"""Runs first in data_prep's local Beam worker processes (only their PYTHONPATH names this
folder; see data_prep.pipeline): installs data_prep.beam_logging's filters before Beam is
imported, then runs the sitecustomize this one shadows, if the environment has one."""
import importlib.machinery
import importlib.util
import os
import sys

try:
    from data_prep import beam_logging

    beam_logging.install()
except ImportError:  # PYTHONPATH without the repository: keep Beam's messages
    pass


def _chain_other_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain_other_sitecustomize()
