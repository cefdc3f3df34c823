"""The public API is exactly ``persevere.__all__`` (as httpx checks its own)."""

from __future__ import annotations

import types

import persevere


def test_all_names_exist():
    missing = [name for name in persevere.__all__ if not hasattr(persevere, name)]
    assert missing == []


def test_all_has_no_duplicates_and_is_sorted():
    assert len(set(persevere.__all__)) == len(persevere.__all__)
    assert persevere.__all__ == sorted(persevere.__all__)


def test_every_public_attribute_is_exported():
    public = {
        name
        for name, value in vars(persevere).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - set(persevere.__all__) == set()


def test_exported_exceptions_share_one_base():
    errors = [
        getattr(persevere, name)
        for name in persevere.__all__
        if isinstance(getattr(persevere, name), type)
        and issubclass(getattr(persevere, name), BaseException)
    ]
    assert errors
    assert all(issubclass(error, persevere.PersevereError) for error in errors)
