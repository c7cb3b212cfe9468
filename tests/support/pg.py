"""Test fixtures (filled in by its module's owner)."""
