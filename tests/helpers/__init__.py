"""Helpers shared by the tests, imported as ``tests.helpers.<module>`` (fixtures live in the
``conftest.py`` of the folder that uses them; the shared ones in ``tests/conftest.py``)."""
