"""The organization catalog: one TOML spec per organization, named after its id.

The study's eight organizations are ``<Domain>-<Driver>.toml``; the others
``<Domain>-<Driver>-<Situation>.toml``. Each file registers as the Gymnasium id
``tp_gym/<id>-v0``. Listing the catalog reads only file names, so ``import tp_gym`` stays
fast; specs are parsed on first use.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tp_gym.spec import OrgSpec

CATALOG_DIR = Path(__file__).resolve().parent


def spec_names() -> list[str]:
    """Names of the bundled organizations, e.g. ``["Healthcare-Loyalty", ...]``, sorted."""
    return sorted(p.stem for p in CATALOG_DIR.glob("*-*.toml"))


def is_study_organization(name: str) -> bool:
    """Whether `name` is one of the study's eight cells (``<Domain>-<Driver>``, no situation)."""
    return name.count("-") == 1


def spec_path(name: str) -> Path:
    """The file of the bundled organization `name`; `KeyError` lists the known names."""
    path = CATALOG_DIR / f"{name}.toml"
    if not path.is_file():
        raise KeyError(f"no bundled organization {name!r}; known: {', '.join(spec_names())}")
    return path


@cache
def load_bundled(name: str) -> OrgSpec:
    """Parse and validate the bundled organization `name` (cached)."""
    from tp_gym.spec import load_spec

    return load_spec(spec_path(name))
