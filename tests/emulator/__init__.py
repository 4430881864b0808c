"""Cross-checks of the emulated ESPHome device against aioesphomeapi, espota2 and zeroconf."""
