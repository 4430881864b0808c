"""HA-free handling of build artifacts and config bundles.

* :func:`read_image_set` checks a downloaded artifacts tarball (docs/protocol.md §6) and writes
  its flashable images to disk;
* :func:`write_config_bundle` packs a device configuration in ESPHome's bundle format
  (docs/protocol.md §5.5a) for ``submit_job``.
* :func:`read_device_config` / :func:`list_device_configs` read a device YAML's node name,
  OTA password, API key and a fingerprint of its files, without ESPHome.

All of them block (they read and write files): call them in an executor, or use
:func:`async_read_image_set`.
"""

from __future__ import annotations

from .bundle import write_config_bundle
from .device_config import (
    DeviceConfig,
    is_device_yaml_name,
    list_device_configs,
    read_device_config,
)
from .errors import (
    ArtifactsError,
    ArtifactsMismatchError,
    BundleError,
    InvalidArtifactsError,
    UnsafeTarballError,
)
from .image_set import async_read_image_set, read_image_set
from .models import NO_FLASH_OFFSET, BuildInfo, BundleInfo, Image, ImageSet
from .safe_tar import TarLimits

__all__ = [
    "NO_FLASH_OFFSET",
    "ArtifactsError",
    "ArtifactsMismatchError",
    "BuildInfo",
    "BundleError",
    "BundleInfo",
    "DeviceConfig",
    "Image",
    "ImageSet",
    "InvalidArtifactsError",
    "TarLimits",
    "UnsafeTarballError",
    "async_read_image_set",
    "is_device_yaml_name",
    "list_device_configs",
    "read_device_config",
    "read_image_set",
    "write_config_bundle",
]
