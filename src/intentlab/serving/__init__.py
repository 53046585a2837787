"""Serving: the FastAPI app, the registry of many adapters on one shared base, request batching."""
