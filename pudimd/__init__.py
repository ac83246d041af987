"""pudimd: a plugin-based monitoring and alerting daemon."""

import os as _os

__version__ = "0.1.0"

# yaml-rs, the config parser, allocates through mimalloc, which commits each new arena up
# front by default: about 4 MB of resident memory for the daemon's lifetime, most of it
# never used.  Committing on demand costs nothing measurable here.  Set before anything
# imports yaml_rs (mimalloc reads its options once, when it loads); an operator's own
# MIMALLOC_ARENA_EAGER_COMMIT wins.
_os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
