"""Publisher exposure caps: the sliding window's arithmetic, the config section, and PageFiller's enforcement."""

from __future__ import annotations

import random
import re
import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from bandit.config import ConfigError, ExposureSettings, StoreConfig, parse_config
from bandit.exposure import ExposureTracker, SlotWindow
from bandit.page import PageFiller
from bandit.policies.base import Policy

# Line numbers matter: the error table below names them.
STORE = """\
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
    exposure: {max_share: 0.3, window: 200}
    default: [a, b]
  - name: row-1
    exploration: 0.1
    default: [a, c, d]
reward: {window: 30m}
"""
PUBLISHER = {"a": "p1", "b": "p1", "c": "p2", "d": "p2", "e": "p3", "f": "p4", "x": "p5"}


def store(text: str = STORE) -> StoreConfig:
    return parse_config(text, "store.yaml")


def max_in_any_window(sequence: Sequence[str], window: int) -> Counter[str]:
    """Brute force: each publisher's largest count over every ``window`` consecutive entries."""
    best: Counter[str] = Counter()
    for start in range(max(1, len(sequence) - window + 1)):
        for publisher, n in Counter(sequence[start : start + window]).items():
            best[publisher] = max(best[publisher], n)
    return best


# ------------------------------------------------------------------ the window's arithmetic


def test_limit_is_the_floor_of_share_times_window() -> None:
    assert ExposureSettings(0.4, 2000).limit == 800
    assert ExposureSettings(0.25, 10).limit == 2
    assert ExposureSettings(0.29, 100).limit == 29  # 0.29 × 100 is 28.999999999999996 in floats
    assert ExposureSettings(1.0, 10).limit == 10


def test_a_publisher_is_capped_when_one_more_impression_would_exceed_the_limit() -> None:
    w = SlotWindow("hero", max_share=0.3, window=10)  # limit 3 of any 10
    assert w.limit == 3
    for _ in range(2):
        w.record("p1")
    assert w.capped == set()  # 2 + 1 ≤ 3
    w.record("p1")
    assert w.capped == {"p1"}  # 3 + 1 > 3
    for _ in range(6):
        w.record("p2")
    assert w.capped == {"p1", "p2"} and len(w) == 9  # the last window − 1 = 9 impressions
    w.record("p3")  # the first p1 leaves the 9: p1 has 2, p2 6
    assert w.capped == {"p2"} and w.count("p1") == 2 and w.count("p2") == 6


def test_the_window_holds_the_last_window_minus_one_impressions() -> None:
    w = SlotWindow("hero", max_share=0.5, window=4)
    for p in ["a", "b", "c", "d", "e"]:
        w.record(p)
    assert len(w) == 3 and [w.count(p) for p in "abcde"] == [0, 0, 1, 1, 1]


@pytest.mark.parametrize(("share", "window"), [(0.3, 10), (0.4, 50), (0.25, 37), (1 / 3, 30), (0.9, 11), (1.0, 10)])
def test_no_window_ever_exceeds_the_limit_brute_force(share: float, window: int) -> None:
    """A random sequence that always wants the big publisher when it may: every window holds at most the limit."""
    rng = random.Random(f"{share}-{window}")
    w = SlotWindow("hero", share, window)
    publishers = ["big", "mid", "p3", "p4", "p5"]
    sequence: list[str] = []
    for _ in range(3000):
        recent = Counter(sequence[-(window - 1) :])
        expected_capped = {p for p in publishers if recent[p] + 1 > w.limit}
        assert w.capped == expected_capped
        allowed = [p for p in publishers if p not in w.capped]
        weights = [50 if p == "big" else 20 if p == "mid" else 1 for p in allowed]
        choice = rng.choices(allowed, weights)[0]
        sequence.append(choice)
        w.record(choice)
    worst = max_in_any_window(sequence, window)
    assert max(worst.values()) <= w.limit
    assert worst["big"] == w.limit  # and the cap is not more conservative than it says


def test_settings_outside_the_range_are_refused() -> None:
    with pytest.raises(ValueError, match="max_share"):
        SlotWindow("hero", 0.05, 10)  # floor(0.5) = 0 impressions allowed
    with pytest.raises(ValueError):
        SlotWindow("hero", 1.5, 10)


def test_a_reconfigured_tracker_keeps_an_unchanged_window_and_trims_a_resized_one() -> None:
    tracker = ExposureTracker(store())
    hero = tracker.window("hero")
    assert hero is not None and tracker.slots == ("hero",) and tracker.window("row-1") is None
    for p in ["p1"] * 60 + ["p2"] * 10:
        tracker.record("hero", p)
    assert tracker.capped("hero") == {"p1"}  # 60 = floor(0.3 × 200)
    tracker.configure(store(STORE.replace("[x]", "[x]")))  # same settings: the very same window
    assert tracker.window("hero") is hero and hero.count("p1") == 60
    tracker.configure(store(STORE.replace("window: 200}", "window: 20}")))  # limit 6 of 20; keeps the last 19
    assert tracker.window("hero") is hero and (hero.count("p1"), hero.count("p2"), hero.limit) == (9, 10, 6)
    assert tracker.capped("hero") == {"p1", "p2"}
    tracker.configure(store(STORE.replace("    exposure: {max_share: 0.3, window: 200}\n", "")))
    assert tracker.slots == () and tracker.capped("hero") == frozenset()
    tracker.record("hero", "p1")  # a slot without a cap: ignored


# ------------------------------------------------------------------ the config section


def test_the_section_parses_into_settings() -> None:
    hero, row = store().slots
    assert hero.exposure == ExposureSettings(0.3, 200) and hero.exposure.limit == 60
    assert row.exposure is None


EXPOSURE_LINE = "    exposure: {max_share: 0.3, window: 200}\n"
BROKEN = [
    ("share-zero", "{max_share: 0, window: 200}", "slots[0].exposure.max_share", r"^must be > 0 \(got 0\)$"),
    ("share-above-one", "{max_share: 1.5, window: 200}", "slots[0].exposure.max_share", r"^must be ≤ 1 \(got 1.5\)$"),
    ("share-text", "{max_share: '40%', window: 200}", "slots[0].exposure.max_share", r"^must be a finite number$"),
    ("window-short", "{max_share: 0.3, window: 5}", "slots[0].exposure.window", r"^must be ≥ 10 \(got 5\)$"),
    ("window-fraction", "{max_share: 0.3, window: 20.5}", "slots[0].exposure.window", r"^must be a whole number$"),
    ("window-missing", "{max_share: 0.3}", "slots[0].exposure", r"^missing required key 'window'$"),
    ("typo", "{max_share: 0.3, window: 200, windw: 3}", "slots[0].exposure.windw",
     r"^unknown key \(did you mean 'window'\?\); allowed here: max_share, window$"),
    ("not-a-mapping", "0.4", "slots[0].exposure", r"^must be a mapping with keys: max_share, window$"),
    ("no-impression-allowed", "{max_share: 0.05, window: 10}", "slots[0].exposure.max_share",
     r"^max_share × window must be at least 1 impression \(got 0.05 × 10\); raise one of them$"),
    ("too-few-publishers", "{max_share: 0.1, window: 200}", "slots[0].exposure.max_share",
     r"^a window of 200 at most 20 per publisher needs 10 publishers; the catalog has 5$"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "value", "path", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_config_errors_name_file_line_and_field(case: str, value: str, path: str, message: str) -> None:
    text = STORE.replace(EXPOSURE_LINE, f"    exposure: {value}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "store.yaml")
    (problem,) = info.value.problems
    assert (problem.source, problem.line, problem.path) == ("store.yaml", 15, path)
    assert re.search(message, problem.message), problem.message
    assert str(problem).startswith(f"store.yaml:15: {path}: ")


def test_exposure_on_a_block_line_of_its_own_points_at_the_key() -> None:
    text = STORE.replace(EXPOSURE_LINE, "    exposure:\n      max_share: 0.3\n      window: 3\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "store.yaml")
    (problem,) = info.value.problems
    assert (problem.line, problem.path) == (17, "slots[0].exposure.window")


# ------------------------------------------------------------------ PageFiller


class FavourP1(Policy):
    """Puts 0.97 on the first p1 item whenever there is one: a policy that would king-make p1."""

    tier = "rules"

    def __init__(self, slot: str):
        self.slot = slot
        self.version = "favour-p1"

    def _pmf(self, context: Mapping[str, Any], candidates: Sequence[str]) -> tuple[list[float], str]:
        n = len(candidates)
        favourite = next((k for k, c in enumerate(candidates) if PUBLISHER[c] == "p1"), None)
        if favourite is None or n == 1:
            return [1.0 / n] * n, "uniform"
        probs = [0.03 / (n - 1)] * n
        probs[favourite] = 0.97
        return probs, "p1"

    def clone(self) -> FavourP1:
        return FavourP1(self.slot)


def test_capped_publisher_gets_probability_zero_exactly_when_at_budget_over_20000_decisions() -> None:
    config = store()
    filler = PageFiller(config, {"hero": FavourP1("hero")})
    settings = config.slots[0].exposure
    assert settings is not None
    limit, window = settings.limit, settings.window
    served: list[str] = []
    withheld = 0
    for n in range(20_000):
        recent = Counter(served[-(window - 1) :])
        at_budget = {p for p in PUBLISHER.values() if recent[p] + 1 > limit}  # brute force, not the tracker
        (hero,) = filler.fill({}, f"evt-{n}", slots=["hero"]).decisions
        pmf = dict(zip(hero.candidates, hero.pmf, strict=True))
        assert hero.propensity == pmf[hero.item] > 0
        assert {PUBLISHER[c] for c in hero.candidates} == set(PUBLISHER.values()) - at_budget
        if "p1" in at_budget:
            withheld += 1  # probability 0 for a and b: not candidates at all
        else:
            assert pmf["a"] == pytest.approx(0.97)  # a full candidate, at the policy's own probability
        served.append(PUBLISHER[hero.item])
    worst = max_in_any_window(served, window)
    assert worst["p1"] == limit  # the cap binds, and holds exactly
    assert max(worst.values()) <= limit
    assert 0.25 < served.count("p1") / len(served) <= 0.3
    assert withheld > 10_000  # most of the time p1 has spent its budget


def test_slots_without_a_cap_are_untouched() -> None:
    plain = PageFiller(store(STORE.replace(EXPOSURE_LINE, "")))
    assert plain.exposure.slots == () and plain._windows == {}  # nothing to do on the hot path
    filler = PageFiller(store(), {"hero": FavourP1("hero")})
    for n in range(300):
        hero, row = filler.fill({}, f"evt-{n}").decisions
        assert row.candidates == tuple(i for i in PUBLISHER if i != hero.item)  # row-1 has no cap: all but hero's
    window = filler.exposure.window("hero")
    assert window is not None and len(window) == 199  # only the hero's impressions are counted


def test_when_every_candidate_is_capped_they_are_left_in() -> None:
    filler = PageFiller(store())
    for p in ["p1"] * 60:
        filler.exposure.record("hero", p)
    result = filler.fill({}, "evt-1", slots=["hero"], candidates=["a", "b"])
    (hero,) = result.decisions
    assert hero.candidates == ("a", "b") and hero.item in ("a", "b")  # served over the cap, not unfilled
    assert filler.fill({}, "evt-2", slots=["hero"], candidates=["a", "c"]).decisions[0].candidates == ("c",)


def test_a_pin_wins_over_the_cap_and_counts_against_it() -> None:
    config = store(STORE + "constraints:\n  pins:\n    - {slot: hero, item: b, when: {country: FR}}\n")
    filler = PageFiller(config)
    for n in range(60):
        assert filler.fill({"country": "FR"}, f"evt-{n}").decisions[0].tier == "pin"
    window = filler.exposure.window("hero")
    assert window is not None and window.count("p1") == 60 and window.capped == {"p1"}
    assert filler.fill({"country": "FR"}, "evt-x").decisions[0].item == "b"  # still pinned
    hero = filler.fill({"country": "US"}, "evt-y").decisions[0]
    assert {"a", "b"}.isdisjoint(hero.candidates)


def test_a_rebuilt_filler_keeps_the_window_it_is_handed() -> None:
    config = store()
    first = PageFiller(config, {"hero": FavourP1("hero")})
    for n in range(100):
        first.fill({}, f"evt-{n}", slots=["hero"])
    count = first.exposure.window("hero").count("p1")  # type: ignore[union-attr]
    assert count == 60
    second = PageFiller(config, exposure=first.exposure)
    assert second.exposure.window("hero").count("p1") == 60  # type: ignore[union-attr]
    assert {"a", "b"}.isdisjoint(second.fill({}, "evt-next", slots=["hero"]).decisions[0].candidates)
    assert PageFiller(config).exposure.window("hero").count("p1") == 0  # type: ignore[union-attr]


def test_threads_sharing_a_filler_never_exceed_the_cap() -> None:
    config = store(STORE.replace("window: 200}", "window: 50}"))  # limit 15 of 50
    filler = PageFiller(config, {"hero": FavourP1("hero")})
    window = filler.exposure.window("hero")
    assert window is not None
    served: list[str] = []
    record = window.record

    def logged(publisher: str) -> None:  # called under the window's lock: the list is in impression order
        served.append(publisher)
        record(publisher)

    window.record = logged  # type: ignore[method-assign]

    def worker(k: int) -> None:
        for n in range(1500):
            filler.fill({}, f"evt-{k}-{n}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(served) == 6000
    assert max_in_any_window(served, 50)["p1"] == 15
