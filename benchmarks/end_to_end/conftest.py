"""The suite's fixtures (tests/conftest.py), for the slow end-to-end checks kept out of it."""
from tests.conftest import *  # noqa: F401,F403
