"""The reference attribution libraries (``applications.attribution.peers``, the optional extra ``peers``):
which are asked for and installed, read from their metadata without importing them (the rules' params and the
config checks run at parse time, where no application module and no torch may be imported).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

PEER_LIBRARIES = ("dattri",)
"""The reference attribution libraries (``applications.attribution.peers``, the optional extra ``peers``)."""


def peer_version(library: str) -> str | None:
    """The installed version of a reference library from its metadata (nothing is imported), or None."""
    if importlib.util.find_spec(library) is None:
        return None
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def peer_libraries(settings: dict) -> list[str]:
    """The reference libraries ``applications.attribution.peers.libraries`` asks for (``auto``: every one)."""
    libraries = settings["peers"]["libraries"]
    return list(PEER_LIBRARIES) if libraries == "auto" else list(libraries)


def peer_versions(settings: dict) -> dict[str, str | None]:
    """Each asked-for reference library's installed version: the attribution rule's param, so installing the extra
    (or upgrading a library) reruns the rule."""
    return {library: peer_version(library) for library in peer_libraries(settings)}
