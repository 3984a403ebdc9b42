"""Reusable widgets of the console: keyed tables, the status bar, banners, formatters."""
