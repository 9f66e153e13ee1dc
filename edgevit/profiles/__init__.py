"""Device profiles: YAML descriptions of MCUs, CPUs and FPGAs, validated by a schema."""

from edgevit.profiles.profile import Profile, list_profiles, load_profile, profile_dir
from edgevit.profiles.units import format_bytes, format_hz, format_size, parse_size

__all__ = [
    "Profile", "load_profile", "list_profiles", "profile_dir",
    "parse_size", "format_bytes", "format_size", "format_hz",
]
