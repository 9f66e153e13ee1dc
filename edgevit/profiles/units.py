"""Units for device profiles: parse sizes, clocks and addresses from YAML; format them for people.

Sizes may be integers (bytes) or strings with a binary unit: "320KiB", "1MiB", "512KB",
"64K", "4GiB". K, KB and KiB all mean 1024 bytes (M = 1024**2, G = 1024**3), because
microcontroller datasheets say "KB" for binary kilobytes and a profile copies their figures.
Clocks may be integers (Hz) or strings such as "216MHz" or "1.5 GHz" (decimal units).
Addresses may be ints (YAML reads 0x20000000 as one) or strings such as "0x2000_0000".
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

_SIZE_RE = re.compile(r"^(\d[\d_]*(?:\.\d+)?)\s*(?:([kmg])(?:i?b)?|b)?$", re.I)
_HZ_RE = re.compile(r"^(\d[\d_]*(?:\.\d+)?)\s*([kmg]?)hz$", re.I)


def show_value(value: Any) -> str:
    """Render a YAML value the way the user wrote it, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_size(value: Any) -> Any:
    """Parse a size in bytes: an int, or a string like "320KiB", "1MiB", "512KB" (K = 1024)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a size in bytes such as 327680 or '320KiB' (got {show_value(value)})")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value  # ints pass; anything else fails the int check with a clear message
    m = _SIZE_RE.match(value.strip())
    if not m:
        raise ValueError(f"must be a size in bytes such as 327680, '320KiB', '1MiB' or '512KB' "
                         f"(got {show_value(value)})")
    number = float(m.group(1).replace("_", ""))
    scaled = number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[(m.group(2) or "").lower()]
    if not scaled.is_integer():
        raise ValueError(f"must be a whole number of bytes (got {show_value(value)})")
    return int(scaled)


def parse_hz(value: Any) -> Any:
    """Parse a clock: an int (Hz) or a string like "216MHz", "1.5 GHz" (decimal units)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _HZ_RE.match(value.strip())
        if not m:
            raise ValueError(f"must be a frequency in Hz such as 216000000 or '216MHz' (got {show_value(value)})")
        hz = float(m.group(1).replace("_", "")) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
        return round(hz)
    return value


def parse_address(value: Any) -> Any:
    """Parse an address: an int (YAML reads 0x20000000 as one) or a string "0x2000_0000"."""
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"must be an address such as 0x20000000 (got {show_value(value)})") from None
    return value


def format_bytes(n: int) -> str:
    """Human size with binary units: 327680 -> "320 KiB", 1572864 -> "1.5 MiB"."""
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n // div} {unit}" if n % div == 0 else f"{n / div:.1f} {unit}"
    return f"{n} B"


def format_hz(hz: int) -> str:
    """Human clock: 216000000 -> "216 MHz", 1500000000 -> "1.5 GHz"."""
    for unit, div in (("GHz", 1e9), ("MHz", 1e6), ("kHz", 1e3)):
        if hz >= div:
            return f"{hz / div:g} {unit}"
    return f"{hz} Hz"


def format_size(n: int) -> str:
    """Human size and exact bytes: "320 KiB (327,680 B)"."""
    return f"{format_bytes(n)} ({n:,} B)"


Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0, strict=True)]
Hz = Annotated[int, BeforeValidator(parse_hz), Field(gt=0, strict=True)]
Address = Annotated[int, BeforeValidator(parse_address), Field(ge=0, lt=1 << 64, strict=True)]
Count = Annotated[int, Field(gt=0, strict=True)]
Text = Annotated[str, Field(min_length=1)]
