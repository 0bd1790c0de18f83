import pytest

from secbench import registry
from secbench.errors import SecbenchError, UnknownNameError


@pytest.fixture
def scratch_kind(monkeypatch):
    """A throwaway registry table for the 'attack' kind, so tests do not leak entries."""
    monkeypatch.setitem(registry._entries, "attack", {})
    monkeypatch.setattr(registry, "_loaded", registry._loaded | {"attack"})
    return "attack"


def test_register_create_and_list(scratch_kind):
    @registry.register(scratch_kind, "scale-by")
    def scale_by(*, factor: float = 2.0, offset: float = 0.0):
        """Multiply by a factor."""
        return lambda x: x * factor + offset

    assert registry.list_names(scratch_kind) == ["scale-by"]
    assert registry.describe(scratch_kind) == [("scale-by", "Multiply by a factor.")]
    assert registry.create(scratch_kind, "scale-by", factor=3.0)(2) == 6.0
    # None means "not given": the factory's own default must show through.
    assert registry.create(scratch_kind, "scale-by", factor=None, offset=1.0)(2) == 5.0


def test_duplicate_name_raises(scratch_kind):
    registry.register(scratch_kind, "x")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(scratch_kind, "x")(lambda: 2)


def test_unknown_name_suggests_closest(scratch_kind):
    registry.register(scratch_kind, "badnets")(lambda: 1)
    with pytest.raises(UnknownNameError) as err:
        registry.get(scratch_kind, "badnet")
    assert "did you mean 'badnets'" in str(err.value)
    assert "secbench list attacks" in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_option_is_a_user_error(scratch_kind):
    registry.register(scratch_kind, "pgd")(lambda *, eps=0.03, steps=10: (eps, steps))
    with pytest.raises(UnknownNameError, match="did you mean 'steps'"):
        registry.create(scratch_kind, "pgd", step=5)


def test_unknown_kind():
    with pytest.raises(UnknownNameError, match="unknown kind"):
        registry.list_names("optimizer")


def test_plugin_entry_points_load_lazily_and_builtins_win(scratch_kind, monkeypatch):
    class FakeDist:
        name, version = "secbench-extra", "1.2"

    class FakeEP:
        def __init__(self, name, value):
            self.name, self.value, self.dist = name, value, FakeDist()

    registry.register(scratch_kind, "badnets")(lambda: "builtin")
    eps = [FakeEP("attack.badnets", "nowhere:thing"), FakeEP("attack.ext-sum", "builtins:sum"),
           FakeEP("attack.broken", "no_such_module_xyz:f"), FakeEP("model.ignored", "builtins:len")]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.PLUGIN_GROUP else [])
    monkeypatch.setattr(registry, "_loaded", set(registry._loaded) - {"attack"})
    monkeypatch.setattr(registry.importlib, "import_module",
                        lambda name, _real=registry.importlib.import_module: None if name == "attacks" else _real(name))
    assert registry.list_names(scratch_kind) == ["badnets", "broken", "ext-sum"]
    assert registry.create(scratch_kind, "badnets") == "builtin"
    assert registry.loaded_plugins() == []  # listed, not yet used
    assert registry.get(scratch_kind, "ext-sum").load() is sum
    assert registry.loaded_plugins() == ["attack.ext-sum (secbench-extra 1.2)"]
    assert "secbench-extra 1.2" in registry.get(scratch_kind, "ext-sum").summary
    with pytest.raises(SecbenchError, match="failed to load"):
        registry.create(scratch_kind, "broken")
