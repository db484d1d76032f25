"""Installs the write fault named by ``$TORCHSTYLE_TEST_FAULT`` in a test's subprocess."""

import os
import sys

if os.environ.get("TORCHSTYLE_TEST_FAULT"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    from tests.faults import install_from_env

    install_from_env()

if os.environ.get("TORCHSTYLE_TEST_HIDE"):
    sys.path.insert(0, os.path.dirname(__file__))
    import hide

    hide.install()
