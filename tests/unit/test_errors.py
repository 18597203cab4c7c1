"""Every error journeyman raises to a caller sits under one root, drawn in errors.py."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import journeyman
from journeyman import errors
from journeyman.errors import JourneymanError

# Raised and caught inside one module, never seen by a caller.
# Problem and Disconnected (journeyman.wire) are the HTTP API's own: every endpoint turns
# them into its answer.
INTERNAL = {"HeldBack", "StaleOutcome", "Problem", "Disconnected"}


def public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(journeyman.__path__, "journeyman."):
        if module_info.name.endswith("__main__"):
            continue  # running it starts the command line
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, Exception)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                found[name] = value
    return found


def test_every_public_error_is_a_journeyman_error() -> None:
    outside = sorted(
        name
        for name, error in public_exceptions().items()
        if name not in INTERNAL and not issubclass(error, JourneymanError)
    )
    assert outside == []


def test_the_tree_in_the_docstring_names_every_error() -> None:
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    public = {
        name
        for name, error in public_exceptions().items()
        if issubclass(error, JourneymanError) and error is not JourneymanError
    }
    assert drawn == public
