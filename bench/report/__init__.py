"""Reports rendered from a profile and its measurements (never from live state)."""
