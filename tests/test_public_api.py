import types

import keel


def test_all_matches_public_names() -> None:
    public = {
        name
        for name in dir(keel)
        if not name.startswith("_") and not isinstance(getattr(keel, name), types.ModuleType)
    }
    assert set(keel.__all__) == public
    assert keel.__all__ == sorted(keel.__all__)


def test_every_public_name_is_documented() -> None:
    for name in keel.__all__:
        obj = getattr(keel, name)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_evals_public_names_are_listed_sorted_and_documented() -> None:
    import keel.evals as evals

    public = {
        name
        for name in dir(evals)
        if not name.startswith("_") and not isinstance(getattr(evals, name), types.ModuleType)
    }
    assert set(evals.__all__) == public
    assert evals.__all__ == sorted(evals.__all__)
    for name in evals.__all__:
        obj = getattr(evals, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"keel.evals.{name} has no docstring"
