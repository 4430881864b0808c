"""Test support code shared by unit, integration and interop tests (no pytest imports)."""
