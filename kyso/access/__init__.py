"""Access control: who calls Kyso, and what they may do.

- :mod:`kyso.access.model`: roles, OAuth2 scopes, the principal a request acts as, errors.
- :mod:`kyso.access.factors`: passwords (argon2id), TOTP second factors, client secrets.
- :mod:`kyso.access.store`: people who sign in, their sessions, service clients.
- :mod:`kyso.access.tokens`: short-lived JWT access tokens signed by a key on the HSM.
- :mod:`kyso.access.matrix`: the authorisation matrix (role × route × unit scope, scopes).
- :mod:`kyso.access.activation`: sole control: activation policies and SADs.
- :mod:`kyso.access.limits`: rate limits on sign-in, activation and signing.
"""
