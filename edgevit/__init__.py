"""edgevit: compile vision transformers for devices with kilobytes of memory."""

__version__ = "0.1.0"
