"""Rill: peer-to-peer, zero-fee, provable micro-donations."""

__version__ = "0.1.0"
