"""End-to-end tests in chromium. A package, so its conftest does not shadow tests/conftest.py as the module `conftest`."""
