"""Append-only, Merkle-tree audit log with HSM-signed checkpoints.

A leaf package: it never imports a domain package and signs its checkpoints through
a signing callable handed to it by the composition root.
"""
