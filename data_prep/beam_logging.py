"""Beam's known-harmless start-up messages, dropped where they are logged; every other
warning is kept.

- "apitools not found ...": Beam's optional BigQuery client, which data_prep never uses;
- "Discarding unparseable args": DirectRunner options a worker has no class for
  (data_prep itself rejects a user's unknown flags before the run starts);
- "Logging handler created." / "No semi_persistent_directory found": worker start-up
  notes (a local run stages no session, and data_prep needs none).

The driver calls install() before it imports Beam; local worker processes run it from
beam_worker_site/sitecustomize.py, before Beam is imported there.
"""
from __future__ import annotations

import logging

HARMLESS: dict[str, tuple[str, ...]] = {
    "root": ("apitools not found",),
    "apache_beam.options.pipeline_options": ("Discarding unparseable args",),
    "__main__": ("Logging handler created", "No semi_persistent_directory found"),
    "apache_beam.runners.worker.sdk_worker_main": ("Logging handler created", "No semi_persistent_directory found"),
}


class DropHarmless(logging.Filter):
    """Drops the records of one logger whose message starts with a known-harmless text."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def install() -> None:
    """Idempotent: one filter per logger."""
    for name, prefixes in HARMLESS.items():
        logger = logging.getLogger(None if name == "root" else name)
        if not any(isinstance(f, DropHarmless) for f in logger.filters):
            logger.addFilter(DropHarmless(prefixes))
