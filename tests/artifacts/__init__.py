"""Tests of the HA-free artifacts package: tarball reading and config bundles."""
