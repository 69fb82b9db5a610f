"""Per-provider wire contracts of the litellm adapter, over real HTTP on loopback."""

import pytest

# The checks live outside the test modules: let pytest explain their failures too.
pytest.register_assert_rewrite("tests.contract.checks")
