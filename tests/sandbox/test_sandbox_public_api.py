import types

import keel.sandbox


def test_sandbox_all_is_sorted_and_matches_public_names() -> None:
    public = {
        name
        for name in dir(keel.sandbox)
        if not name.startswith("_") and not isinstance(getattr(keel.sandbox, name), types.ModuleType)
    }
    assert set(keel.sandbox.__all__) == public
    assert keel.sandbox.__all__ == sorted(keel.sandbox.__all__)


def test_every_public_sandbox_name_is_documented() -> None:
    for name in keel.sandbox.__all__:
        obj = getattr(keel.sandbox, name)
        if isinstance(obj, (tuple, int, str)) or name in ("Language", "MemoryLimit", "StopReason"):
            continue  # constants and type aliases: documented where defined
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
