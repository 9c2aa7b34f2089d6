"""The walk measurements (hostrt/runtimes/pysandbox/walks.py) on their own.

The sizes are what C code visits walking a structure fully: every item of
every container, each shared part counted once per place it appears. The
attacks that use them run as plugins in tests/adversarial/test_adv_walks.py.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque

import pytest

from hostrt.runtimes.pysandbox.limits import MAX_WALK_DEPTH, MAX_WALK_ITEMS
from hostrt.runtimes.pysandbox.refusals import SandboxLimitError
from hostrt.runtimes.pysandbox.walks import Walks


@pytest.fixture
def walks() -> Walks:
    return Walks()


def doubling(depth: int, make=lambda a: [a, a], seed=None):
    a = [0] if seed is None else seed
    for _ in range(depth):
        a = make(a)
    return a


def test_scalars_and_flat_containers(walks):
    assert walks.size(5) == 1
    assert walks.size("text") == 1
    assert walks.size([1, 2, 3]) == 4
    assert walks.size({1: 1, 2: 2}) == 5  # keys and values
    # Past the flat fast path, string keys (which hold nothing and compare
    # cheaply) are not walked: only the values count.
    assert walks.size({"a": [1], "b": [2]}) == 1 + 2 + 2
    assert walks.size(list(range(100_000))) == 100_001


def test_trees_count_every_item(walks):
    doc = {"rows": [{"id": i, "tags": ["x", "y"]} for i in range(1000)]}
    # root: one value; the list: 1000 dicts; each dict two values (string
    # keys are not walked) and its list two items
    assert walks.size(doc) == 1 + 1 + 1000 + 1000 * 2 + 1000 * 2


def test_shared_parts_count_once_per_place(walks):
    row = [0] * 10
    grid = [row] * 10
    assert walks.size(grid) == 1 + 10 + 10 * 10
    assert walks.size(doubling(10)) == walks.size(doubling(10, seed=[0])) == 2 ** 11 - 1 + 2 ** 10


@pytest.mark.parametrize("make", [
    lambda a: [a, a],
    lambda a: (a, a),
    lambda a: {"l": a, "r": a},
    lambda a: deque([a, a]),
    lambda a: OrderedDict(l=a, r=a),
    lambda a: Counter({1: a, 2: a}),
    lambda a: slice(a, a),
    lambda a: {1: a, 2: a}.values(),
])
def test_deep_sharing_is_past_the_limit_at_once(walks, make):
    dag = doubling(64, make)
    assert walks.size(dag) == MAX_WALK_ITEMS + 1
    with pytest.raises(SandboxLimitError, match=f"plugin limit of {MAX_WALK_ITEMS}"):
        walks.check(dag, "comparison")


def test_frozensets_of_tuples_sharing_parts(walks):
    f = frozenset({0})
    for _ in range(64):
        f = frozenset({(f, 1), (f, 2)})
    with pytest.raises(SandboxLimitError, match="hashing of a structure that unfolds"):
        walks.check(f, "hashing")


def test_a_structure_containing_itself_is_too_large(walks):
    a: list = [1]
    a.append(a)
    assert walks.size(a) == MAX_WALK_ITEMS + 1
    d: dict = {}
    d["self"] = [d]
    assert walks.size(d) == MAX_WALK_ITEMS + 1


def test_subclasses_are_measured_by_their_real_items(walks):
    class Liar(list):
        def __len__(self):
            return 0

        def __iter__(self):
            return iter(())

    a = Liar([0])
    for _ in range(64):
        a = Liar([a, a])
    assert walks.size(a) == MAX_WALK_ITEMS + 1


def test_variables_holding_inner_parts_do_not_change_the_count(walks):
    # A part also held by a variable takes the exact path; same answer.
    inner = [1, 2, 3]
    outer = [inner, [4, 5]]
    assert walks.size(outer) == 1 + 2 + 3 + 2
    del inner
    assert walks.size(outer) == 1 + 2 + 3 + 2


def test_text_size_grows_with_shared_text(walks):
    a = ["x" * 1100]
    for _ in range(16):
        a = [a, a]
    assert walks.text_size(a) == walks.text_limit + 1
    with pytest.raises(SandboxLimitError, match="characters exceeds the plugin limit of 67108864"):
        walks.check_text(a, "text")
    b = ["x" * 1100]
    for _ in range(8):
        b = [b, b]
    assert walks.check_text(b, "text") is b
    assert len(repr(b)) <= walks.text_size(b)


@pytest.mark.parametrize("value", [
    {"a": [1, 2.5, None, True, "text", b"bytes", 10 ** 300]},
    [(i, str(i) * 3) for i in range(500)],
    {"nested": {"deeper": [[["s" * 50]] * 3] * 4}},
])
def test_text_size_is_an_upper_estimate(walks, value):
    assert len(repr(value)) <= walks.text_size(value) <= 8 * len(repr(value)) + 64


def test_membership_checks_the_item_and_the_scan(walks):
    big = doubling(40)
    with pytest.raises(SandboxLimitError):
        walks.check_member(big, [1, 2])
    small = [1, 2]
    walks.check_member(small, {1: 2})
    walks.check_member(small, [small] * 1000)
    # each comparison is bounded by the item, but a sizeable item scanned
    # against many entries is measured against the whole sequence
    item = [[i] for i in range(1000)]
    with pytest.raises(SandboxLimitError):
        walks.check_member(item, [[[i] for i in range(1000)]] * 20000)
    walks.check_member(item, [[[i] for i in range(1000)]] * 100)


def test_string_keys_count_in_text(walks):
    key = "k" * 100_000
    shared = {key: 1}
    with pytest.raises(SandboxLimitError):
        walks.check_text([shared] * 1000, "text")


def test_long_strings_held_in_many_places_cost_by_length(walks):
    text = "s" * 1_000_000
    assert walks.size([text] * 100) > 100 * 1_000_000 // 64
    with pytest.raises(SandboxLimitError):
        walks.check([text] * 10_000, "comparison")
    assert walks.size(["short"] * 10_000) == 10_001
    big = 10 ** 30_000
    assert walks.size([big] * 1000) > 1000 * big.bit_length() // 64 - 1000
    assert walks.size(list(range(1000))) == 1001


def test_nesting_past_the_depth_limit_is_refused_quickly(walks):
    t: tuple = ()
    for _ in range(MAX_WALK_DEPTH + 1):
        t = (t,)
    with pytest.raises(SandboxLimitError, match=f"nests more than {MAX_WALK_DEPTH} levels deep"):
        walks.check(t, "hashing")
    shallow: tuple = ()
    for _ in range(MAX_WALK_DEPTH - 1):
        shallow = (shallow,)
    assert walks.check(shallow, "hashing") is shallow


def test_other_values_are_leaves(walks):
    import datetime

    class Plain:
        pass

    for value in (datetime.date(2024, 1, 1), Plain(), len, range(10)):
        assert walks.size(value) == 1
        assert walks.check(value, "comparison") is value


def test_plugin_text_methods_spend_the_conversion_allowance(walks):
    from hostrt.runtimes.pysandbox.walks import counted_text

    big = "x" * 10_000_000

    class Loud:
        __repr__ = counted_text(lambda self: big)

    items = [Loud()] * 100
    walks.check_text(items, "text")
    with pytest.raises(SandboxLimitError, match="from Loud.<lambda>"):
        repr(items)
    # a conversion of one object still works, and a new conversion has a
    # new allowance
    walks.check_text([Loud()] * 3, "text")
    assert len(repr([Loud()] * 3)) > 3 * len(big)


def test_structured_keys_sharing_a_hash_are_counted(walks):
    m = 2 ** 61 - 1  # integers hash modulo m, so i * m all hash alike
    shared = tuple(range(2000))
    colliding = {(shared, i * m) for i in range(100)}
    assert walks.collision_factor(colliding) == 100
    with pytest.raises(SandboxLimitError, match="100 structured keys sharing one hash"):
        walks.check_collisions(colliding, walks.limit // 50, "comparison")
    ordinary = {(i, str(i)) for i in range(1000)}
    assert walks.collision_factor(ordinary) <= 2
    walks.check_collisions(ordinary, walks.size(ordinary), "comparison")
    # equal scalars and duplicates of one key are not collisions of structure
    assert walks.collision_factor(["a"] * 1000) == 1
    assert walks.collision_factor({i * m for i in range(100)}) == 1


def test_long_measurements_check_the_clock():
    # The exact count is Python work (microseconds a container) that no
    # budget tick reaches: it calls the budget's clock check as it goes.
    calls = []
    walks = Walks(check_time=lambda: calls.append(1))
    shared = [0]
    rows = [[i] for i in range(100_000)] + [shared, shared]
    assert walks.size(rows) == 1 + 100_002 + 100_002
    assert len(calls) >= 100_000 // 1024
