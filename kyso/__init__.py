"""Composition root: settings, database, FastAPI app factory, HTTP routers and CLI.

Nothing imports ``kyso``; it imports everything.
"""

__version__ = "0.1.0"
