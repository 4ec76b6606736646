"""edge-appliance: ingest, train, export, serve and monitor models on one box."""

__version__ = "0.1.0"
