"""Validation of untrusted signed PDFs. Never imports `hsm` or `signer`."""
