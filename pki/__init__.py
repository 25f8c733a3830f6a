"""Units, officers, certificate authority, CRL/OCSP and timestamp services.

Key-free modules (certificate models, trust store, status lookup) never import `hsm`,
so that the verifier can use them without being able to reach a signing key.
"""
