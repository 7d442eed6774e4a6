"""setup.cfg lists only packages that exist in the repository (issue 7)."""

from __future__ import annotations

import configparser
import os

import setuptools

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_cfg_lists_only_existing_packages():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    include = config["options.packages.find"]["include"].split()
    for pattern in include:
        if not pattern.endswith(".*"):
            assert os.path.isfile(os.path.join(REPO, *pattern.split("."), "__init__.py")), pattern
    found = setuptools.find_packages(where=REPO, include=include)
    assert {"tfsts", "tfsts.models", "tfsts.layers", "data_prep"} <= set(found)
