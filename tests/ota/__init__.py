"""Tests of the HA-free OTA client against an emulated ESPHome device."""
