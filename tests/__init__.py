"""Tests for the ESPHome Remote Build integration."""
