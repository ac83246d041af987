"""pudimd's built-in plugins.

Each module is a pluggy plugin registered through the ``pudimd`` entry-point group in
``pyproject.toml``, exactly like a third-party plugin; the core never imports them.
"""
