"""The till's devices: the Shtrih-M fiscal printer (`printer`) and card readers (`reader`).

Pure codecs (`shtrih_frames`, `shtrih_commands`, `shtrih_errors`, `card_frames`) import
neither asyncio nor serial; `serial_port` owns a port, `supervisor` reconnects, `shtrih_link`
runs the ENQ/ACK/NAK exchange. The protocols they follow are in docs/spec/ (shtrih-m.md,
card-readers.md), the same pages the simulator in hardware_sim is written from. Nothing is
imported here, so a codec can be used alone.
"""
