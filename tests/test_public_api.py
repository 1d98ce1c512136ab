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


def test_guardrail_and_recovery_modules_export_documented_names() -> None:
    import importlib

    for module_name in (
        "keel.recovery",
        "keel.testing",
        "keel.policies.budget",
        "keel.policies.filters",
        "keel.policies.progress",
        "keel.policies.ratelimit",
        "keel.policies.taint",
    ):
        module = importlib.import_module(module_name)
        assert module.__all__ == sorted(module.__all__), module_name
        for name in module.__all__:
            obj = getattr(module, name)
            assert (getattr(obj, "__doc__", None) or "").strip(), f"{module_name}.{name} has no docstring"


def test_server_and_observe_subpackages_list_their_public_names() -> None:
    import keel.observe
    import keel.server

    for package in (keel.server, keel.observe):
        public = {
            name
            for name in dir(package)
            if not name.startswith("_") and not isinstance(getattr(package, name), types.ModuleType)
        }
        assert set(package.__all__) == public, package.__name__
        assert package.__all__ == sorted(package.__all__)
        for name in package.__all__:
            assert (getattr(package, name).__doc__ or "").strip(), f"{package.__name__}.{name} has no docstring"


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
