"""Interop tests against the real ESPHome Device Builder."""
