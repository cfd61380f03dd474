"""Meter edits (VEE): validation rules, estimation, and the exceptions queue."""
