"""Page filling: page order, no duplicates, conditional candidate sets, pins, caps, exclusions."""

from __future__ import annotations

import pytest

from bandit.config import StoreConfig, parse_config
from bandit.page import PageFiller, PageResult

CATALOG = """\
catalog:
  items:
    - {id: a, publisher: p1}
    - {id: b, publisher: p1}
    - {id: c, publisher: p2}
    - {id: d, publisher: p2}
    - {id: e, publisher: p3}
    - {id: f, publisher: p4}
    - {id: x, publisher: p5}
context:
  country: {type: category, values: [US, FR, JP]}
slots:
  - name: hero
    exploration: 0.1
    rules:
      - {name: japan, when: {country: JP}, items: [c, a]}
    default: [a, b]
  - name: row-1
    exploration: 0.1
    default: [a, c, d]
  - name: row-2
    exploration: 0.1
    default: [b, e]
reward: {window: 30m}
"""
ALL = ["a", "b", "c", "d", "e", "f", "x"]
EVENTS = [f"evt-{i}" for i in range(300)]


def make_filler(constraints: str = "") -> PageFiller:
    text = CATALOG + ("constraints:\n" + constraints if constraints else "")
    return PageFiller(parse_config(text, "page.yaml"))


def items_of(result: PageResult) -> dict[str, str]:
    return {d.slot: d.item for d in result.decisions}


def check_consistent(filler: PageFiller, result: PageResult, pool, blocked) -> None:
    """Every decision's candidates are exactly what earlier slots left, and its propensity is its pmf entry."""
    config: StoreConfig = filler.config
    publisher = {item.id: item.publisher for item in config.catalog.items}
    cap = config.constraints.publisher_cap
    pinned = [d.item for d in result.decisions if d.tier == "pin"]
    taken = list(pinned)
    for d in result.decisions:
        assert d.propensity > 0
        assert d.propensity == d.pmf[d.candidates.index(d.item)]
        if d.tier == "pin":
            assert (d.candidates, d.pmf, d.propensity, d.explanation) == ((d.item,), (1.0,), 1.0, "pin")
            continue
        expected = [i for i in pool if i not in blocked and i not in taken]
        if cap is not None:
            expected = [i for i in expected if sum(publisher[t] == publisher[i] for t in taken) < cap]
        assert list(d.candidates) == expected, d.slot
        taken.append(d.item)


def test_all_slots_filled_in_page_order_by_default():
    filler = make_filler()
    result = filler.fill({"country": "US"}, "evt-1")
    assert [d.slot for d in result.decisions] == ["hero", "row-1", "row-2"]
    assert [d.position for d in result.decisions] == [0, 1, 2]
    assert result.unfilled == []
    assert {d.policy_version for d in result.decisions} == {filler.config.version}


def test_requested_slots_are_filled_in_page_order_not_request_order():
    result = make_filler().fill({}, "evt-1", slots=["row-2", "hero"])
    assert [(d.slot, d.position) for d in result.decisions] == [("hero", 0), ("row-2", 2)]


def test_no_duplicates_and_conditional_candidate_sets():
    filler = make_filler()
    for event_id in EVENTS:
        result = filler.fill({"country": "JP"}, event_id)
        shown = [d.item for d in result.decisions]
        assert len(shown) == len(set(shown)) == 3
        check_consistent(filler, result, ALL, set())


def test_later_slot_favours_next_item_when_its_first_choice_is_taken():
    filler = make_filler()
    seen = 0
    for event_id in EVENTS:
        hero, row1, _ = filler.fill({"country": "US"}, event_id).decisions
        if hero.item == "a":  # row-1's default list starts with a: it falls through to c
            seen += 1
            assert "a" not in row1.candidates
            assert row1.pmf[row1.candidates.index("c")] == pytest.approx(0.9)
    assert seen > 200  # hero shows its favourite about 90% of the time


def test_same_event_same_page():
    filler = make_filler()
    assert filler.fill({"country": "US"}, "evt-7") == filler.fill({"country": "US"}, "evt-7")
    pages = {tuple(items_of(filler.fill({"country": "US"}, e)).values()) for e in EVENTS[:50]}
    assert len(pages) > 1  # and different events do explore


def test_config_exclude_is_never_shown():
    filler = make_filler("  exclude: [x, a]\n")
    for event_id in EVENTS[:100]:
        result = filler.fill({}, event_id)
        assert all({"x", "a"}.isdisjoint(d.candidates) for d in result.decisions)
        check_consistent(filler, result, ALL, {"x", "a"})


def test_request_exclude_adds_to_config_exclude():
    filler = make_filler("  exclude: [x]\n")
    for event_id in EVENTS[:100]:
        result = filler.fill({}, event_id, exclude=["a", "c"])
        check_consistent(filler, result, ALL, {"x", "a", "c"})
        assert result.decisions[0].explanation.endswith("default")
        assert result.decisions[0].pmf[result.decisions[0].candidates.index("b")] == pytest.approx(0.9)


def test_candidates_subset_from_request():
    filler = make_filler()
    for event_id in EVENTS[:100]:
        result = filler.fill({}, event_id, candidates=["f", "e", "c", "b"])
        assert all(set(d.candidates) <= {"f", "e", "c", "b"} for d in result.decisions)
        check_consistent(filler, result, ["f", "e", "c", "b"], set())


def test_unfilled_slot_when_no_candidates_remain():
    filler = make_filler()
    result = filler.fill({}, "evt-1", candidates=["a", "e"])
    assert [d.slot for d in result.decisions] == ["hero", "row-1"]
    assert result.unfilled == ["row-2"]
    assert {d.item for d in result.decisions} == {"a", "e"}
    assert result.decisions[1].candidates == ("e",) and result.decisions[1].propensity == 1.0


def test_everything_excluded_leaves_every_slot_unfilled():
    result = make_filler().fill({}, "evt-1", exclude=ALL)
    assert result.decisions == [] and result.unfilled == ["hero", "row-1", "row-2"]


# ------------------------------------------------------------------ pins

PIN_FR = "  pins:\n    - {slot: row-2, item: a, when: {country: FR}}\n"


def test_conditional_pin_applies_only_when_its_condition_holds():
    filler = make_filler(PIN_FR)
    pinned = filler.fill({"country": "FR"}, "evt-1")
    row2 = pinned.decisions[2]
    assert (row2.slot, row2.position, row2.item, row2.tier, row2.propensity) == ("row-2", 2, "a", "pin", 1.0)
    unpinned = filler.fill({"country": "US"}, "evt-1")
    assert unpinned.decisions[2].tier == "rules"
    assert filler.fill({}, "evt-1").decisions[2].tier == "rules"  # missing field: the condition is false


def test_pinned_item_is_not_shown_in_earlier_slots():
    filler = make_filler(PIN_FR)
    for event_id in EVENTS:
        result = filler.fill({"country": "FR"}, event_id)
        hero = result.decisions[0]
        assert items_of(result)["row-2"] == "a"
        assert all("a" not in d.candidates for d in result.decisions[:2])
        assert hero.pmf[hero.candidates.index("b")] == pytest.approx(0.9)  # hero's default falls through to b
        check_consistent(filler, result, ALL, set())


def test_pin_skipped_when_request_excludes_its_item():
    filler = make_filler(PIN_FR)
    for event_id in EVENTS[:50]:
        result = filler.fill({"country": "FR"}, event_id, exclude=["a"])
        assert [d.tier for d in result.decisions] == ["rules"] * 3
        assert "a" not in items_of(result).values()


def test_pin_skipped_when_its_item_is_not_a_candidate():
    result = make_filler(PIN_FR).fill({"country": "FR"}, "evt-1", candidates=["b", "c", "d", "e"])
    assert result.decisions[2].tier == "rules"


def test_pin_of_an_unrequested_slot_does_not_block_its_item():
    result = make_filler(PIN_FR).fill({"country": "FR"}, "evt-1", slots=["hero"])
    (hero,) = result.decisions
    assert "a" in hero.candidates


def test_first_matching_pin_of_a_slot_wins():
    filler = make_filler("  pins:\n    - {slot: hero, item: f, when: {country: JP}}\n    - {slot: hero, item: e}\n")
    assert filler.fill({"country": "JP"}, "evt-1").decisions[0].item == "f"
    assert filler.fill({"country": "US"}, "evt-1").decisions[0].item == "e"
    jp = filler.fill({"country": "JP"}, "evt-1")
    assert "e" in jp.decisions[1].candidates  # the pin that did not apply blocks nothing


# ------------------------------------------------------------------ publisher cap


def test_publisher_cap():
    filler = make_filler("  publisher_cap: 1\n")
    for event_id in EVENTS:
        result = filler.fill({}, event_id, candidates=["a", "b", "c", "d", "e"])
        publishers = [filler.config.catalog.item(d.item).publisher for d in result.decisions]
        assert len(publishers) == len(set(publishers)) == 3  # p1, p2, p3: one each
        check_consistent(filler, result, ["a", "b", "c", "d", "e"], set())


def test_publisher_cap_leaves_a_slot_unfilled_when_only_capped_publishers_remain():
    result = make_filler("  publisher_cap: 1\n").fill({}, "evt-1", candidates=["a", "b", "c", "d"])
    assert len(result.decisions) == 2 and result.unfilled == ["row-2"]


def test_pinned_item_counts_towards_the_publisher_cap():
    filler = make_filler("  publisher_cap: 1\n" + PIN_FR)
    for event_id in EVENTS[:100]:
        result = filler.fill({"country": "FR"}, event_id)
        assert items_of(result)["row-2"] == "a"
        # a (p1) is pinned below, so b (p1) cannot appear above it either.
        assert all({"a", "b"}.isdisjoint(d.candidates) for d in result.decisions[:2])
        check_consistent(filler, result, ALL, set())


def test_cap_of_two_allows_two_per_publisher():
    filler = make_filler("  publisher_cap: 2\n")
    result = filler.fill({}, "evt-1", candidates=["a", "b", "c"])
    assert sorted(items_of(result).values()) == ["a", "b", "c"]


# ------------------------------------------------------------------ a request's own items and baselines


def test_request_items_are_served_and_capped_by_their_own_publisher():
    from bandit.config import Item

    filler = make_filler("  publisher_cap: 1\n")
    own = {"n1": Item("n1", "p9"), "n2": Item("n2", "p9"), "n3": Item("n3", "n3")}
    pool = ["a", "n1", "n2", "n3"]
    seen = set()
    for event_id in EVENTS:
        result = filler.fill({}, event_id, candidates=pool, items=own)
        served = [d.item for d in result.decisions]
        seen.update(served)
        assert not {"n1", "n2"} <= set(served)  # one publisher, one slot
        assert all(d.propensity == d.pmf[d.candidates.index(d.item)] > 0 for d in result.decisions)
    assert {"n1", "n2", "n3"} <= seen


def test_a_baseline_per_slot_is_its_rules_favourite_when_no_rule_matches():
    filler = make_filler()
    result = filler.fill({"country": "US"}, "evt-1", baselines={"hero": "f", "row-2": "x"})
    explained = {d.slot: (d.candidates[d.pmf.index(max(d.pmf))], d.explanation.removeprefix("explore; "))
                 for d in result.decisions}  # fmt: skip
    assert explained == {"hero": ("f", "baseline"), "row-1": ("a", "default"), "row-2": ("x", "baseline")}
    japan = filler.fill({"country": "JP"}, "evt-1", baselines={"hero": "f"}).decisions[0]
    assert japan.explanation.endswith("rule:japan")
