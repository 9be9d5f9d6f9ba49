"""Config loading: the example, a table of broken configs, context validation, durations."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bandit.config import ConfigError, load_config, parse_config, parse_duration
from bandit.config.yamlpos import Problem

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "storefront.yaml"

# Line numbers matter: the broken-config table below names them.
BASE = """\
store:
  name: test-store
catalog:
  features:
    genre: {type: category, values: [rhythm, shooter, horror]}
    price: {type: number, min: 0, max: 100}
  items:
    - {id: a, publisher: p1, features: {genre: rhythm, price: 10}}
    - {id: b, publisher: p1, features: {genre: shooter, price: 20}}
    - {id: c, publisher: p2, features: {genre: horror}}
    - {id: d, publisher: p3}
context:
  country: {type: category, values: [US, JP, FR], default: US}
  device: {type: category, values: [quest, pcvr], required: true}
  hour: {type: hour, default: now}
  day: {type: day_of_week}
  age: {type: integer, min: 13, max: 120}
  spend: {type: number, min: 0}
  returning: {type: bool, default: false}
slots:
  - name: hero
    exploration: 0.1
    rules:
      - name: japan
        when: {country: JP}
        items: [b, a]
      - name: late
        when: {hour: {from: 22, to: 3}}
        items: c
    default: a
  - name: row
    default: [b, c]
reward:
  window: 30m
  events: {click: 1, purchase: 10}
  revenue_weight: 0.1
constraints:
  exclude: [d]
  publisher_cap: 2
  pins:
    - {slot: row, item: c, when: {country: FR}}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    """``text`` with the one occurrence of ``old`` replaced (fails loudly if ambiguous)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the base config"
    return text.replace(old, new)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    return info.value.problems


# ------------------------------------------------------------------ valid configs


def test_base_config_is_valid():
    config = parse_config(BASE, "test.yaml")
    assert config.name == "test-store"
    assert config.slot_names == ("hero", "row")
    assert [s.position for s in config.slots] == [0, 1]
    hero = config.slot("hero")
    assert hero.exploration == 0.1
    assert [r.name for r in hero.rules] == ["japan", "late"]
    assert hero.rules[0].items == ("b", "a")
    assert hero.rules[1].items == ("c",)  # a bare item id is a one-item list
    assert hero.rules[1].line == 27
    assert hero.default == ("a",)
    assert config.slot("row").exploration == 0.05  # the default share
    assert config.slot("row").tier == "rules"
    assert config.catalog.item("a").features == {"genre": "rhythm", "price": 10.0}
    assert config.reward.window_seconds == 1800.0
    assert config.reward.default == 0.0
    assert dict(config.reward.events) == {"click": 1.0, "purchase": 10.0}
    assert config.constraints.exclude == frozenset({"d"})
    assert config.constraints.publisher_cap == 2
    (pin,) = config.constraints.pins
    assert (pin.slot, pin.item) == ("row", "c")
    assert pin.matches({"country": "FR"}) and not pin.matches({"country": "US"}) and not pin.matches({})


def test_example_config_loads_with_the_right_summary():
    config = load_config(EXAMPLE)
    version = hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()[:12]
    assert config.version == version
    assert config.summary() == (
        f"{EXAMPLE}: ok — store 'vr-store', version {version}, 32 items, 6 context fields, "
        "slots hero, row-1, row-2, reward window 30m"
    )
    assert config.constraints.publisher_cap == 2
    assert config.constraints.exclude == frozenset({"the-exorcist"})
    assert [s.exploration for s in config.slots] == [0.10, 0.15, 0.20]


def test_version_changes_with_the_text():
    assert parse_config(BASE).version != parse_config(BASE + "# a comment\n").version
    assert parse_config(BASE).version == parse_config(BASE).version


def test_reward_defaults():
    config = parse_config(edit("  events: {click: 1, purchase: 10}\n  revenue_weight: 0.1\n", ""))
    assert dict(config.reward.events) == {"click": 1.0}
    assert config.reward.revenue_weight == 0.0


# ------------------------------------------------------------------ broken configs

# (id, old snippet, new snippet, line, field path, message pattern) — the first problem in file order.
BROKEN = [
    ("yaml-syntax", "values: [rhythm, shooter, horror]}", "values: [rhythm, shooter, horror}", 5, "",
     r"not valid YAML: expected ',' or '\]'"),
    ("duplicate-key", "{id: a, publisher: p1,", "{id: a, publisher: p1, publisher: p2,", 8,
     "catalog.items[0].publisher", r"^duplicate key \(it is already set above\)$"),
    ("non-string-key", "  name: test-store\n", "  name: test-store\n  1: x\n", 3, "store", r"key 1 must be a string"),
    ("misspelt-required-section", "reward:\n", "rewards:\n", 1, "", r"^missing required key 'reward'$"),
    ("unknown-key-on-block-value-names-the-key-line", "constraints:\n", "constraint:\n", 37, "constraint",
     r"^unknown key \(did you mean 'constraints'\?\); allowed here: catalog, context, slots, reward, store, "),
    ("unknown-top-level-key", "when: {country: FR}}\n", "when: {country: FR}}\nextras: 1\n", 42, "extras",
     r"^unknown key; allowed here: catalog, context, slots, reward, store, constraints, service$"),
    ("unknown-key-hint", "    exploration: 0.1", "    exploraton: 0.1", 22, "slots[0].exploraton",
     r"^unknown key \(did you mean 'exploration'\?\); allowed here: name, default, tier, exploration, rules, "
     r"escalation, tree, gradient, exposure, cold_start$"),
    ("missing-section", "slots:\n", "slotz:\n", 1, "", r"^missing required key 'slots'$"),
    ("non-mapping-root", BASE, "- just\n- a list\n", 1, "", r"^must be a mapping with keys: catalog, context, "),
    ("unknown-item-in-rule", "items: [b, a]", "items: [b, zz]", 26, "slots[0].rules[0].items[1]",
     r"^unknown item 'zz': not in catalog\.items$"),
    ("unknown-item-in-default", "    default: [b, c]", "    default: [b, c, dd]", 32, "slots[1].default[2]",
     r"^unknown item 'dd': not in catalog\.items$"),
    ("item-listed-twice", "items: [b, a]", "items: [b, b]", 26, "slots[0].rules[0].items", r"the same item twice"),
    ("unknown-context-field", "when: {country: JP}", "when: {contry: JP}", 25, "slots[0].rules[0].when.contry",
     r"^unknown context field \(did you mean 'country'\?\); declared under context: country, device, "),
    ("unknown-category-value", "when: {hour: {from: 22, to: 3}}", "when: {hour: {from: 22, to: 3}, country: XX}", 28,
     "slots[0].rules[1].when.country", r"^'XX': unknown value 'XX'; allowed: US, JP, FR$"),
    ("unknown-category-value-in-list", "when: {country: JP}", "when: {country: {in: [JP, XX]}}", 25,
     "slots[0].rules[0].when.country.in[1]", r"unknown value 'XX'"),
    ("bad-operator", "when: {country: JP}", "when: {country: {gt: JP}}", 25, "slots[0].rules[0].when.country.gt",
     r"^unknown operator for a category field; use one of: eq, ne, in, not_in$"),
    ("hour-operator-on-number", "when: {country: JP}", "when: {age: {from: 20, to: 30}}", 25,
     "slots[0].rules[0].when.age.from", r"^unknown operator for a"),
    ("in-not-a-list", "when: {country: JP}", "when: {country: {in: JP}}", 25, "slots[0].rules[0].when.country.in",
     r"^must be a non-empty list$"),
    ("between-low-above-high", "when: {country: JP}", "when: {age: {between: [30, 20]}}", 25,
     "slots[0].rules[0].when.age.between", r"^low \(30\) is above high \(20\)$"),
    ("between-not-a-pair", "when: {country: JP}", "when: {age: {between: [30]}}", 25,
     "slots[0].rules[0].when.age.between", r"list of two numbers"),
    ("condition-value-out-of-range", "when: {country: JP}", "when: {age: {gte: 5}}", 25,
     "slots[0].rules[0].when.age.gte", r"^5: must be between 13 and 120$"),
    ("hour-window-from-equals-to", "{from: 22, to: 3}", "{from: 5, to: 5}", 28, "slots[0].rules[1].when.hour",
     r"^an hour window with from == to is empty$"),
    ("hour-window-half-open", "{from: 22, to: 3}", "{from: 22}", 28, "slots[0].rules[1].when.hour",
     r"needs both 'from' and 'to'"),
    ("hour-out-of-range", "{from: 22, to: 3}", "{from: 22, to: 24}", 28, "slots[0].rules[1].when.hour.to",
     r"must be between 0 and 23"),
    ("empty-when", "when: {country: JP}", "when: {}", 25, "slots[0].rules[0].when",
     r"^a rule needs at least one condition"),
    ("empty-condition", "when: {country: JP}", "when: {country: {}}", 25, "slots[0].rules[0].when.country",
     r"^empty condition; use one of"),
    ("rule-unknown-key", "        items: c\n", "        items: c\n        priority: 1\n", 30,
     "slots[0].rules[1].priority", r"^unknown key; allowed here: when, items, name$"),
    ("rule-missing-items", "        items: c\n", "", 27, "slots[0].rules[1]", r"^missing required key 'items'$"),
    ("exploration-zero", "exploration: 0.1", "exploration: 0", 22, "slots[0].exploration", r"^must be > 0 \(got 0\)$"),
    ("exploration-above-one", "exploration: 0.1", "exploration: 1.5", 22, "slots[0].exploration",
     r"^must be ≤ 0\.5 \(got 1\.5\)$"),
    ("exploration-above-half", "exploration: 0.1", "exploration: 0.6", 22, "slots[0].exploration",
     r"^must be ≤ 0\.5 \(got 0\.6\)$"),
    ("exploration-not-a-number", "exploration: 0.1", "exploration: lots", 22, "slots[0].exploration",
     r"^must be a finite number$"),
    ("bad-duration", "window: 30m", "window: 30x", 34, "reward.window", r"^'30x' is not a duration; use a number"),
    ("zero-duration", "window: 30m", "window: 0", 34, "reward.window", r"^must be a positive duration$"),
    ("negative-revenue-weight", "revenue_weight: 0.1", "revenue_weight: -1", 36, "reward.revenue_weight",
     r"^must be ≥ 0 \(got -1\)$"),
    ("reserved-event-name", "events: {click: 1, purchase: 10}", "events: {click: 1, reward: 10}", 35,
     "reward.events.reward", r"'reward' is reserved"),
    ("category-without-values", "genre: {type: category, values: [rhythm, shooter, horror]}", "genre: {type: category}",
     5, "catalog.features.genre", r"^a category needs 'values', the list of allowed values$"),
    ("context-category-without-values", "  returning: {type: bool, default: false}",
     "  returning: {type: category}", 19, "context.returning", r"a category needs 'values'"),
    ("duplicate-category-values", "values: [US, JP, FR]", "values: [US, JP, US]", 13, "context.country.values",
     r"^values must be distinct$"),
    ("unknown-context-type", "day: {type: day_of_week}", "day: {type: weekday}", 16, "context.day.type",
     r"^unknown context type 'weekday'; use one of: category, number, integer, bool, hour, day_of_week$"),
    ("min-above-max", "age: {type: integer, min: 13, max: 120}", "age: {type: integer, min: 130, max: 120}", 17,
     "context.age.max", r"^max \(120\) is below min \(130\)$"),
    ("min-on-a-bool", "returning: {type: bool, default: false}", "returning: {type: bool, min: 0}", 19,
     "context.returning.min", r"'min' is only for number fields, not bool"),
    ("context-default-out-of-range", "max: 120}", "max: 120, default: 5}", 17, "context.age.default",
     r"^default 5 must be between 13 and 120$"),
    ("default-now-on-a-category", "default: US}", "default: now}", 13, "context.country.default",
     r"default 'now' unknown value 'now'"),
    ("required-with-default", "required: true}", "required: true, default: quest}", 14, "context.device.default",
     r"^a required field cannot have a default$"),
    ("feature-not-declared", "features: {genre: horror}", "features: {genre: horror, colour: red}", 10,
     "catalog.items[2].features.colour", r"^feature not declared under catalog\.features$"),
    ("feature-not-declared-with-hint", "features: {genre: horror}", "features: {genres: horror}", 10,
     "catalog.items[2].features.genres", r"did you mean 'genre'\?"),
    ("feature-wrong-type", "price: 20}", "price: cheap}", 9, "catalog.items[1].features.price",
     r"^must be a finite number$"),
    ("feature-out-of-range", "price: 10}", "price: 150}", 8, "catalog.items[0].features.price",
     r"^150 is outside the declared range \[0, 100\]$"),
    ("feature-unknown-category-value", "features: {genre: horror}", "features: {genre: jazz}", 10,
     "catalog.items[2].features.genre", r"^'jazz' is not one of the declared values: rhythm, shooter, horror$"),
    ("duplicate-item-id", "{id: b, publisher: p1", "{id: a, publisher: p1", 9, "catalog.items[1].id",
     r"^duplicate item id 'a'$"),
    ("bad-item-id", "{id: d, publisher: p3}", "{id: 'd d', publisher: p3}", 11, "catalog.items[3].id",
     r"^item id must be 1-64 characters"),
    ("no-items", "  items:\n", "  items: []\n  old_items:\n", 7, "catalog.items", r"must have at least 1 entry"),
    ("duplicate-slot-name", "  - name: row\n", "  - name: hero\n", 31, "slots[1].name",
     r"^duplicate slot name 'hero'$"),
    ("unknown-tier", "    default: [b, c]\n", "    default: [b, c]\n    tier: tree\n", 33, "slots[1].tier",
     r"^unknown tier 'tree'; available: rules, gradient$"),
    ("slot-without-default", "    default: [b, c]\n", "", 31, "slots[1]", r"^missing required key 'default'$"),
    ("pin-to-unknown-slot", "{slot: row, item: c,", "{slot: footer, item: c,", 41, "constraints.pins[0].slot",
     r"^unknown slot 'footer'; slots: hero, row$"),
    ("pin-slot-not-a-name", "{slot: row, item: c,", "{slot: [row], item: c,", 41, "constraints.pins[0].slot",
     r"^unknown slot \['row'\]"),
    ("pin-two-items", "{slot: row, item: c,", "{slot: row, item: [c, b],", 41, "constraints.pins[0].item",
     r"^a pin names exactly one item$"),
    ("pinned-item-excluded", "exclude: [d]", "exclude: [d, c]", 41, "constraints.pins[0].item",
     r"^item 'c' is pinned but also excluded$"),
    ("two-unconditional-pins", "    - {slot: row, item: c, when: {country: FR}}\n",
     "    - {slot: row, item: c}\n    - {slot: row, item: b}\n", 42, "constraints.pins[1]",
     r"already has an unconditional pin above"),
    ("exclude-unknown-item", "exclude: [d]", "exclude: [x]", 38, "constraints.exclude[0]", r"^unknown item 'x'"),
    ("publisher-cap-zero", "publisher_cap: 2", "publisher_cap: 0", 39, "constraints.publisher_cap",
     r"^must be ≥ 1 \(got 0\)$"),
    ("publisher-cap-fraction", "publisher_cap: 2", "publisher_cap: 1.5", 39, "constraints.publisher_cap",
     r"^must be a whole number$"),
    ("gate-max-events-below-min", "    exploration: 0.1", "    exploration: 0.1\n    escalation: {mode: auto, "
     "min_events: 500, max_events: 100}", 23, "slots[0].escalation.max_events",
     r"^must be 0 \(one look\) or at least min_events \(500\)$"),
    ("probe-above-one", "    exploration: 0.1", "    exploration: 0.1\n    escalation: {probe: 1.5}", 23,
     "slots[0].escalation.probe", r"^must be ≤ 1 \(got 1.5\)$"),
    ("tree-pessimism-negative", "    exploration: 0.1", "    exploration: 0.1\n    tree: {pessimism: -1}", 23,
     "slots[0].tree.pessimism", r"^must be ≥ 0 \(got -1\)$"),
    ("guardrail-confidence-one", "    exploration: 0.1", "    exploration: 0.1\n    escalation: "
     "{guardrail_confidence: 1}", 23, "slots[0].escalation.guardrail_confidence", r"^must be ≤ 0.9999 \(got 1\)$"),
    ("gradient-own-pairs-not-a-bool", "    exploration: 0.1",
     "    exploration: 0.1\n    gradient: {own_pairs: yes-ish}", 23, "slots[0].gradient.own_pairs",
     r"^must be true or false$"),
    ("gradient-one-number-bin", "    exploration: 0.1", "    exploration: 0.1\n    gradient: {number_bins: 1}", 23,
     "slots[0].gradient.number_bins", r"^must be ≥ 2 \(got 1\)$"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "pattern"), [row[1:] for row in BROKEN], ids=[r[0] for r in BROKEN]
)
def test_broken_config_names_line_field_and_problem(old, new, line, path, pattern):
    text = new if old == BASE else edit(old, new)
    problems = problems_of(text)
    first = problems[0]
    assert (first.source, first.line, first.path) == ("test.yaml", line, path), problems
    assert re.search(pattern, first.message), first.message
    where = f"test.yaml:{line}: {path}: " if path else f"test.yaml:{line}: "
    assert str(first) == where + first.message


def test_broken_table_is_big_enough_and_ids_are_unique():
    assert len(BROKEN) >= 20
    assert len({row[0] for row in BROKEN}) == len(BROKEN)


def test_every_problem_is_reported_at_once_in_file_order():
    text = BASE
    for old, new in [
        ("publisher_cap: 2", "publisher_cap: 0"),  # line 39
        ("exploration: 0.1", "exploration: 2"),  # line 22
        ("price: 10}", "price: -5}"),  # line 8
        ("window: 30m", "window: soon"),  # line 34
        ("when: {country: JP}", "when: {country: XX}"),  # line 25
    ]:
        text = edit(old, new, text)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    problems = info.value.problems
    assert [(p.line, p.path) for p in problems] == [
        (8, "catalog.items[0].features.price"),
        (22, "slots[0].exploration"),
        (25, "slots[0].rules[0].when.country"),
        (34, "reward.window"),
        (39, "constraints.publisher_cap"),
    ]
    assert str(info.value).splitlines() == [str(p) for p in problems]


def test_problem_without_line_or_path():
    assert str(Problem("x.yaml", None, "", "cannot read")) == "x.yaml: cannot read"
    assert str(Problem("x.yaml", 3, "", "bad")) == "x.yaml:3: bad"
    assert str(Problem("x.yaml", 3, "a.b", "bad")) == "x.yaml:3: a.b: bad"


def test_empty_file_is_refused():
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config("", "empty.yaml")


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "store.yaml"
    path.write_text(edit("exploration: 0.1", "exploration: 0"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:22: slots[0].exploration: must be > 0")


def test_load_config_unreadable_and_not_utf8(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"store: {name: caf\xe9}\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


# ------------------------------------------------------------------ request contexts

NOW = datetime(2026, 3, 7, 23, 30, tzinfo=UTC)  # a Saturday


@pytest.fixture(scope="module")
def schema():
    return parse_config(BASE).context


def test_normalise_fills_defaults(schema):
    context, problems = schema.normalise({"device": "quest"}, now=NOW)
    assert problems == []
    # 'day' has no default and 'age', 'spend' are optional: they stay absent.
    assert context == {"country": "US", "device": "quest", "hour": 23, "returning": False}


def test_normalise_now_defaults_for_hour_and_day():
    config = parse_config(edit("day: {type: day_of_week}", "day: {type: day_of_week, default: now}"))
    context, problems = config.context.normalise({"device": "pcvr"}, now=NOW)
    assert problems == []
    assert (context["hour"], context["day"]) == (23, "sat")
    explicit, _ = config.context.normalise({"device": "pcvr", "hour": 4, "day": "Monday"}, now=NOW)
    assert (explicit["hour"], explicit["day"]) == (4, "mon")


def test_normalise_keeps_valid_values(schema):
    raw = {"country": "JP", "device": "pcvr", "hour": 7.0, "day": "SUN", "age": 30, "spend": 12.5, "returning": True}
    context, problems = schema.normalise(raw, now=NOW)
    assert problems == []
    assert context == {**raw, "hour": 7, "day": "sun"}
    assert type(context["hour"]) is int


def test_normalise_treats_null_as_missing(schema):
    context, problems = schema.normalise({"device": "quest", "country": None}, now=NOW)
    assert problems == [] and context["country"] == "US"


@pytest.mark.parametrize(
    ("raw", "field", "pattern"),
    [
        ({"device": "quest", "colour": "red"}, "colour", r"^unknown context field; known fields: country, device, "),
        ({"device": 3}, "device", r"^must be a string, one of: quest, pcvr$"),
        ({"device": "vive"}, "device", r"^unknown value 'vive'; allowed: quest, pcvr$"),
        ({}, "device", r"^required context field is missing$"),
        ({"device": None}, "device", r"^required context field is missing$"),
        ({"device": "quest", "age": "old"}, "age", r"^must be a number$"),
        ({"device": "quest", "age": True}, "age", r"^must be a number$"),
        ({"device": "quest", "age": 30.5}, "age", r"^must be a whole number$"),
        ({"device": "quest", "age": 7}, "age", r"^must be between 13 and 120$"),
        ({"device": "quest", "age": math.nan}, "age", r"^must be a finite number$"),
        ({"device": "quest", "spend": math.inf}, "spend", r"^must be a finite number$"),
        ({"device": "quest", "spend": -1}, "spend", r"^must be ≥ 0$"),
        ({"device": "quest", "hour": 24}, "hour", r"^must be between 0 and 23$"),
        ({"device": "quest", "hour": -1}, "hour", r"^must be between 0 and 23$"),
        ({"device": "quest", "returning": "yes"}, "returning", r"^must be true or false$"),
        ({"device": "quest", "returning": 1}, "returning", r"^must be true or false$"),
        ({"device": "quest", "day": "funday"}, "day", r"^must be a day of the week: mon, tue, "),
        ({"device": "quest", "day": "monxyz"}, "day", r"^must be a day of the week"),
        ({"device": "quest", "day": "mond"}, "day", r"^must be a day of the week"),
        ({"device": "quest", "day": 1}, "day", r"^must be a day of the week"),
    ],
)
def test_normalise_reports_field_and_message(schema, raw, field, pattern):
    context, problems = schema.normalise(raw, now=NOW)
    assert len(problems) == 1, problems
    name, message = problems[0]
    assert name == field
    assert re.search(pattern, message), message
    assert field not in context


def test_normalise_reports_every_problem(schema):
    _, problems = schema.normalise({"country": "XX", "age": 5, "extra": 1}, now=NOW)
    assert sorted(name for name, _ in problems) == ["age", "country", "device", "extra"]


@pytest.mark.parametrize("day", ["mon", "Mon", "MONDAY", "monday"])
def test_day_names(schema, day):
    context, problems = schema.normalise({"device": "quest", "day": day}, now=NOW)
    assert problems == [] and context["day"] == "mon"


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("500ms", 0.5),
        ("45s", 45.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        (" 30 m ", 1800.0),
        (90, 90.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("30x", r"'30x' is not a duration"),
        ("30", r"is not a duration"),
        ("m", r"is not a duration"),
        ("-5m", r"is not a duration"),
        ("", r"is not a duration"),
        (None, r"None is not a duration"),
        (True, r"must be a duration"),
        (0, r"must be a positive duration"),
        ("0s", r"must be a positive duration"),
        (-3, r"must be a positive duration"),
        (math.inf, r"must be a positive duration"),
        (math.nan, r"must be a positive duration"),
    ],
)
def test_parse_duration_refuses(value, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_duration(value)
