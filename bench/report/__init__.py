"""Measuring and reporting: timing series and rows (stats), memory, the table and its JSON."""
