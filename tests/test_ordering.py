import pytest

from hostrt.manifest import validate_manifest
from hostrt.ordering import activation_order, conflicts_between

from conftest import manifest_dict


def m(pid, version="1.0.0", requires=(), optional=(), before=(), after=(), conflicts=(), priority="default"):
    rel = {
        "requires": [{"id": i, "versionRange": r} for i, r in requires],
        "optional": [{"id": i, "versionRange": r} for i, r in optional],
        "conflicts": [dict(id=i, **({"versionRange": r} if r else {})) for i, r in conflicts],
        "before": list(before),
        "after": list(after),
    }
    data = manifest_dict(pid, version=version, relationships=rel, load={"priority": priority})
    return validate_manifest(data, f"{pid}/plugin.json")


def order_of(*manifests):
    return activation_order({x.id: x for x in manifests})


def test_requires_come_first_whatever_the_priority():
    result = order_of(m("app", requires=[("lib", "^1.0")], priority="bootstrap"), m("lib", priority="low"))
    assert result.order == ["lib", "app"] and result.blocked == {}


def test_priority_then_id_among_independent_plugins():
    result = order_of(m("d-low", priority="low"), m("ccc"), m("b-high", priority="high"), m("aaa"),
                      m("z-boot", priority="bootstrap"))
    assert result.order == ["z-boot", "b-high", "aaa", "ccc", "d-low"]


def test_before_and_after():
    result = order_of(m("aaa", after=["zzz"]), m("zzz"), m("mmm", before=["aaa"], priority="low"))
    assert result.order.index("zzz") < result.order.index("aaa")
    assert result.order.index("mmm") < result.order.index("aaa")


def test_hints_naming_absent_plugins_are_ignored():
    assert order_of(m("aaa", after=["ghost"], before=["phantom"])).order == ["aaa"]


def test_optional_dependency_orders_only_when_present():
    assert order_of(m("app", optional=[("lib", "^1.0")]), m("lib", priority="low")).order == ["lib", "app"]
    assert order_of(m("app", optional=[("lib", "^1.0")])).order == ["app"]


def test_missing_requirement_blocks_by_name():
    result = order_of(m("app", requires=[("base-lib", "^1.0")]), m("other"))
    assert result.order == ["other"]
    assert "requires 'base-lib' (^1.0), which is not installed" in str(result.blocked["app"])
    assert result.blocked["app"].code == "E_DEPENDENCY"


def test_wrong_version_blocks_and_names_both_versions():
    result = order_of(m("app", requires=[("lib", "^2.0")]), m("lib", version="1.4.0"))
    assert "requires 'lib' ^2.0 but version 1.4.0 is installed" in str(result.blocked["app"])
    assert result.order == ["lib"]


def test_blocked_requirement_blocks_dependents_transitively():
    result = order_of(m("top", requires=[("mid", "*")]), m("mid", requires=[("gone", "*")]))
    assert set(result.blocked) == {"top", "mid"}
    assert "requires 'mid', which is blocked" in str(result.blocked["top"])


def test_cycle_is_named_and_bystanders_run():
    result = order_of(
        m("aaa", requires=[("bbb", "*")]),
        m("bbb", requires=[("ccc", "*")]),
        m("ccc", after=["aaa"]),
        m("free"),
        m("tail", requires=[("aaa", "*")]),
    )
    assert result.order == ["free"]
    message = str(result.blocked["aaa"])
    assert "dependency cycle" in message
    for pid in ("aaa", "bbb", "ccc"):
        assert pid in message
    assert "cycle" in str(result.blocked["tail"]) and "must follow" in str(result.blocked["tail"])


def test_two_plugin_before_after_cycle():
    result = order_of(m("aaa", before=["bbb"]), m("bbb", before=["aaa"]))
    assert result.order == []
    assert "aaa -> bbb -> aaa" in str(result.blocked["aaa"]) or "bbb -> aaa -> bbb" in str(result.blocked["aaa"])


@pytest.mark.parametrize("range_, expected", [(None, True), ("^1.0", True), ("^2.0", False)])
def test_conflicts(range_, expected):
    a = m("aaa", conflicts=[("bbb", range_)])
    b = m("bbb", version="1.5.0")
    assert conflicts_between(a, b) is expected
    assert conflicts_between(b, a) is expected
