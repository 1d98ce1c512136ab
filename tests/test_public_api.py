import keel


def test_all_matches_public_names() -> None:
    public = {name for name in dir(keel) if not name.startswith("_")}
    modules = {"agent", "config", "exceptions", "memory", "messages", "models", "policies", "tools", "durable"}
    assert set(keel.__all__) == public - modules
    assert keel.__all__ == sorted(keel.__all__)


def test_every_public_name_is_documented() -> None:
    for name in keel.__all__:
        obj = getattr(keel, name)
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
