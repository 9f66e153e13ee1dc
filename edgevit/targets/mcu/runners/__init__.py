"""Runners of MCU artifacts."""
