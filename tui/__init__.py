"""Operator terminal UI for the appliance daemon."""
