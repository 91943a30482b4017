"""Every use of faust-streaming's and aiokafka's internals, and nothing else (see README.md here).

Patches install through `patch()`: idempotent (a second install is a no-op), and logged once. `check_versions()`
warns when the installed libraries are not the versions the patches were verified against.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from typing import Any

logger = logging.getLogger(__name__)

# The versions every patch and accessor in this package was verified against (tests named in README.md here).
VERIFIED = {"faust-streaming": ("0.15.3",), "aiokafka": ("0.14.0",)}
_MARK = "__pp_compat_original__"
INSTALLED: list[str] = []  # "owner.name: why", in install order (logged by check_versions once logging is set up)


def patch(owner: Any, name: str, make: Callable[[Any], Any], why: str) -> bool:
    """Replace `owner.name` by `make(original)`, once; False if it is already patched."""
    original = getattr(owner, name)
    if hasattr(original, _MARK):
        return False
    replacement = make(original)
    setattr(replacement, _MARK, original)
    setattr(owner, name, replacement)
    INSTALLED.append(f"{getattr(owner, '__qualname__', type(owner).__qualname__)}.{name}: {why}")
    logger.info("compat: patched %s", INSTALLED[-1])  # at import this precedes logging config: see check_versions
    return True


def unverified() -> list[str]:
    """The libraries installed at a version the patches were not verified against."""
    out = []
    for dist, versions in VERIFIED.items():
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed not in versions:
            out.append(f"{dist} {installed} (verified: {', '.join(versions)})")
    return out


def check_versions() -> list[str]:
    """Log the patches installed (once, after logging is configured); warn, loudly, if a patched library is not at
    a verified version; returns what differs."""
    logger.info("compat: %d patches installed on faust-streaming/aiokafka:\n  %s", len(INSTALLED),
                "\n  ".join(INSTALLED))
    bad = unverified()
    if bad:
        logger.warning("compat: the Faust/aiokafka patches in app/compat were verified against other versions "
                       "than these: %s. Run the whole test suite (the tests named in app/compat/README.md "
                       "prove each patch still applies and is still needed) before running this in production.",
                       "; ".join(bad))
    return bad
