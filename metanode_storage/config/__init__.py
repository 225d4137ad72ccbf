"""Typed settings, node-home paths and secret sources."""
