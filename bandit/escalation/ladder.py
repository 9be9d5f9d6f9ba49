"""Escalation: a slot moves up the ladder only when the logs say it pays, and falls back when it stops paying.

Stages of a slot (one :class:`SlotLadder` per slot, driven by the learner on
its clock — wall time in production, simulated time in the simulator):

``incumbent``  the incumbent serves everything; no challenger yet (or it was rejected)
``canary``     a gradient challenger serves ``canary`` of the traffic live (the rest as before, with the
               probe), and follows the learner's snapshots: it learns from its own picks, which the
               incumbent's logs cannot teach it, for ``canary_events`` joined events; then its snapshot is
               fixed and the slot goes to ``shadow``, where the canary share goes on serving it
``shadow``     a challenger was trained; its probability vector is computed and logged
               beside every decision; with ``probe`` the incumbent's exploration
               follows it (:func:`bandit.policies.mixture.probe_pmf`), otherwise nothing of it is served
``approval``   the gate passed in ``manual`` mode; waiting for an operator
``ramp``       the challenger serves a growing share of traffic (e.g. 5% → 25% → 100%),
               each step held for ``ramp_events`` joined events
``promoted``   the challenger is the new incumbent; the previous tier keeps a small
               ``holdout`` share as a live control

The **gate** (shadow → ramp): at least ``min_events`` joined events logged since
the challenger was trained (never the data it was trained on), and the lower
confidence bound of its off-policy lift over the incumbent, relative to the
incumbent's value, at least ``min_lift``.  With ``max_events`` an undecided
gate looks again at twice as many shadow events, up to ``max_events``, each
look at a Bonferroni share of the error rate.  A challenger that fails the
gate is rejected and a new one is trained ``retrain_every`` events later.

Why the canary: a policy learned off-policy from what the rules or a tree
chose extrapolates to items they seldom show, and the gate rightly refuses
it.  Learning on its own traffic corrects that (an item it overrates is
shown, and its reward says so), as it does for a slot on the gradient tier
from day one.  The guardrail watches the canary arm against the incumbent's
live reward throughout; the holdout of an earlier promotion keeps its share
meanwhile (a third arm), and the incumbent stays judged against it.
On the first climb the canary does not wait for the tree: when a tree
challenger above the rules goes to shadow, the gradient policy starts its
canary beside it (``state.canary``), so it learns from its own picks while
the tree is gated.  It pauses while the tree ramps; once the tree is
promoted, rejected or dropped, it goes on as the slot's gradient challenger
(stage ``canary``), its ``canary_events`` counted from its start.

The **guardrail** (ramp or promoted → back): the new tier's live mean reward on
its own traffic is below ``(1 − guardrail_margin)`` × the old tier's, by a
one-sided z-test at ``guardrail_confidence`` over the last ``guardrail_window``
rewards of each arm (at least ``guardrail_min_events`` each).  After a
promotion both tiers are estimated from every decision, importance-weighted
by the arms' logged probabilities (:func:`~bandit.escalation.guardrail.control_breached`),
so a thin holdout keeps the test's power.  It looks again
only when both arms have replaced a quarter of their window (at least
``guardrail_min_events`` fresh rewards each), not after every batch: repeated
looks at mostly the same rewards would roll back a tier that merely holds its
own.  A challenger that fails to serve (errors, a missing or corrupt
model) sends the slot back to rules at once.

Serving uses a :class:`~bandit.policies.mixture.LadderPolicy`: the arm that serves is drawn with its own
random number, and the logged probability vector is the *mixture* of both arms,
which is the true probability each item had — so off-policy estimates stay
valid during a ramp.  Every transition is returned as a history entry.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bandit import tiers
from bandit.config import EscalationSettings, StoreConfig
from bandit.escalation.guardrail import ArmStats, ControlPool, control_breached, guardrail_breached
from bandit.escalation.records import RecordSlimmer
from bandit.escalation.state import TRANSITIONS, SlotState, arm_name, record_arm, snapshot_version, spec_arm
from bandit.eventlog.events import is_learnable
from bandit.learners.gradient import GradientLearner, Published
from bandit.policies.base import Policy
from bandit.policies.mixture import LadderPolicy

Trainer = Callable[[StoreConfig, str, Sequence[Mapping[str, Any]]], dict[str, Any]]
Gate = Callable[[StoreConfig, str, Sequence[Mapping[str, Any]], Policy, Policy, EscalationSettings], dict[str, Any]]


class SlotLadder:
    """Drives one slot's escalation from the joined records it observes.

    Parameters
    ----------
    config
        The store config.
    slot
        Slot name.
    settings
        The slot's escalation settings.
    trainer
        ``(config, slot, records) -> tree snapshot``.
    gate
        ``(config, slot, records, challenger, incumbent, settings) -> {"passed", "lift", ...}``.
    state
        Restored state, or None for a fresh slot on rules.
    gradient
        The slot's gradient learner, when ``gradient`` is one of its rungs: it
        learns from every record whoever serves, and its snapshots become the
        challenger (or, once it serves, the incumbent) as described below.
    """

    def __init__(
        self,
        config: StoreConfig,
        slot: str,
        settings: EscalationSettings,
        trainer: Trainer,
        gate: Gate,
        state: SlotState | None = None,
        gradient: GradientLearner | None = None,
    ):
        self.config = config
        self.slot = slot
        self.settings = settings
        self.trainer = trainer
        self.gate = gate
        self.gradient = gradient
        self.state = state or SlotState(slot, next_train_at=settings.retrain_every)
        self.buffer: deque[Mapping[str, Any]] = deque(maxlen=settings.train_window)
        self.since_challenger: list[Mapping[str, Any]] = []
        self.arms: dict[str, ArmStats] = {}
        self.control: ControlPool | None = None  # a promoted slot's every decision, weighted for the guardrail
        self.slim = RecordSlimmer()
        self.health_errors = 0
        self._policy: LadderPolicy | None = None
        self._policy_version = -1

    # ---- what workers serve ------------------------------------------------------------

    def policy(self, policy_for: Callable[[dict[str, Any]], Policy] | None = None) -> LadderPolicy:
        """The serving policy for the current state (``policy_for`` builds a policy from an arm spec)."""
        if policy_for is None and self._policy is not None and self._policy_version == self.state.version:
            return self._policy
        build = policy_for or (lambda spec: build_policy(self.config, self.slot, spec))
        policy = serving_policy(self.slot, self.state, build, self.settings)
        if policy_for is None:
            self._policy, self._policy_version = policy, self.state.version
        return policy

    # ---- learning ----------------------------------------------------------------------

    def observe(self, records: Sequence[Mapping[str, Any]], now: float, learn: bool = True) -> list[dict[str, Any]]:
        """Take newly joined records of this slot at time ``now`` (the caller's clock); returns the transitions made.

        ``learn=False`` leaves the gradient learner out (it already learned these records).
        """
        s = self.state
        transitions: list[dict[str, Any]] = []
        for record in records:
            if not is_learnable(record):
                continue
            s.seen += 1
            record = self.slim(record)
            self.buffer.append(record)
            if s.stage in ("shadow", "approval"):
                self.since_challenger.append(record)
            self._add_to_arms(record)
            if s.stage == "ramp":
                s.step_since += 1
        if self.gradient is not None and learn:
            for published in self.gradient.observe(records):
                transitions += self._published(published, now)
        if s.frozen:
            return transitions
        serving_model = s.stage != "incumbent" or s.incumbent.get("tier") != "rules"
        if self.health_errors and serving_model:
            transitions.append(
                self._fallback_to_rules(now, f"a learned tier failed to serve ({self.health_errors} errors)")
            )
            self.health_errors = 0
            return transitions
        self.health_errors = 0
        # A promoted incumbent is judged against its holdout (during a canary too), a canary against the incumbent
        if self._holdout_serving():
            guard = self._guard(now, promoted=True)
            if guard:
                return transitions + guard
        if canary_serving(s, self.settings):
            guard = self._guard(now, promoted=False)
            if guard:
                return transitions + guard
        if s.canary is not None and s.stage in ("incumbent", "promoted"):
            return transitions + self._canary_goes_on(now)  # the tree beside it was promoted, rejected or dropped
        training = self.settings.mode != "off"  # off: no new challenger (an operator's ramp still completes)
        if training and s.stage in ("incumbent", "promoted") and s.seen >= s.next_train_at and self._settled():
            transitions += self._train(now)
        elif (
            s.stage == "shadow" and len(self.since_challenger) >= self.settings.min_events and s.seen >= s.next_gate_at
        ):
            transitions += self._run_gate(now)
        elif s.stage == "ramp":
            transitions += self._ramp(now)
        elif s.stage == "canary" and s.seen - s.challenger_since >= self.settings.canary_events:
            transitions += self._fix_canary(now)
        return transitions

    def start(self, now: float) -> list[dict[str, Any]]:
        """A fresh slot configured to start on the gradient tier: the learner's imitation of the rules serves."""
        s = self.state
        if self.gradient is None or s.version or s.incumbent.get("tier") != "rules":
            return []
        published = self.gradient.imitate(build_policy(self.config, self.slot, s.incumbent))
        s.incumbent = {"tier": "gradient", "snapshot": published.snapshot}
        return [self._record(now, "started", "the slot starts on the gradient tier, imitating its rules",
                             version=published.snapshot.get("version"))]  # fmt: skip

    def _published(self, published: Published, now: float) -> list[dict[str, Any]]:
        """A new trust-region snapshot: it replaces a serving gradient incumbent (a challenger stays as gated)."""
        s = self.state
        snapshot = published.snapshot
        moved = {"tier": "gradient", "snapshot": snapshot}
        if not s.frozen and s.canary is not None:
            s.canary, who = moved, "the canary beside the tree"
        elif not s.frozen and s.stage == "canary" and s.challenger and s.challenger.get("tier") == "gradient":
            s.challenger, who = moved, "the canary"
        elif not s.frozen and s.incumbent.get("tier") == "gradient":
            s.incumbent, who = moved, "the gradient incumbent"
        else:
            return []
        return [self._record(now, "published", f"{published.reason}; {who} moves to it",
                             version=snapshot.get("version"), n=snapshot.get("n"), step=snapshot.get("step"),
                             kl=round(published.kl, 6))]  # fmt: skip

    def resume(self, records: Sequence[Mapping[str, Any]]) -> None:
        """After a restart: take the slot's newest joined records (oldest first, all learned already).

        They refill the training window, the shadow evidence (the records since
        the challenger was trained) and, during a ramp or after a promotion, the
        guardrail's windows (records decided since the ramp began or the
        promotion), so a restarted learner judges the same evidence.  Pass at
        least ``seen - challenger_since`` records in shadow, even beyond
        ``train_window``.
        """
        kept = [self.slim(record) for record in records if is_learnable(record)]
        self.buffer.extend(kept)
        self._rebuild(kept)

    def adopt(self, state: SlotState) -> None:
        """Take a state another writer saved (the admin API); the evidence follows if the arms changed."""
        old, self.state = self.state, state
        if (old.stage, old.incumbent, old.challenger, old.previous, old.canary) != (
            state.stage, state.incumbent, state.challenger, state.previous, state.canary
        ):  # fmt: skip
            self._rebuild(list(self.buffer))

    def _rebuild(self, records: Sequence[Mapping[str, Any]]) -> None:
        s = self.state
        pending = s.seen - s.challenger_since
        in_shadow = s.stage in ("shadow", "approval") and pending > 0
        self.since_challenger = list(records[-pending:]) if in_shadow else []
        self._reset_arms()
        since = self._arms_since()
        if since is None:
            return
        for record in records:
            if float(record.get("ts", 0.0)) >= since:
                self._add_to_arms(record)

    def _holdout_serving(self) -> bool:
        """A promoted incumbent with its previous tier as holdout (during a later canary, shadow or approval too)."""
        return self.state.previous is not None and self.state.stage in ("promoted", "canary", "shadow", "approval")

    def _reset_arms(self) -> None:
        self.arms = {}
        self.control = None

    def _add_to_arms(self, record: Mapping[str, Any]) -> None:
        """One joined record into the guardrail's windows: its arm's, and a promoted slot's weighted control."""
        reward = float(record["reward"])
        self.arms.setdefault(record_arm(record), ArmStats()).add(reward, self.settings.guardrail_window)
        s = self.state
        if s.previous is None or not self._holdout_serving() or not self.settings.holdout > 0:  # (None: for mypy)
            return
        if self.control is None:
            capacity = math.ceil(self.settings.guardrail_window / max(self.settings.holdout, 0.005))
            self.control = ControlPool(spec_arm(self.config, s.incumbent), spec_arm(self.config, s.previous), capacity)
        self.control.add(reward, float(record["propensity"]), record.get("arms"))

    def _arms_since(self) -> float | None:
        """When the guardrail's arms were last reset: the canary's or the ramp's start, or the promotion (the
        holdout's start)."""
        s = self.state
        if canary_serving(s, self.settings):  # (beside a tree challenger too)
            return next((h["at"] for h in reversed(s.history) if h["transition"] == "canary"), -math.inf)
        if s.previous is not None and s.stage in ("promoted", "shadow", "approval"):
            # The promotion may have left the history's last 200 entries (a gradient incumbent records every
            # trust-region step): then it is older than anything kept, and every buffered record is after it.
            return next((h["at"] for h in reversed(s.history) if h["transition"] == "promoted"), -math.inf)
        if s.stage == "ramp":
            start = None
            for h in reversed(s.history):
                if h["transition"] in ("freeze", "unfreeze"):
                    continue
                if h["transition"] != "ramp":
                    break
                start = h["at"]  # the ramp's steps do not reset the arms; its first entry did
            return start
        return None

    def report_error(self) -> None:
        """A worker reported that the challenger or the promoted model failed to serve."""
        self.health_errors += 1

    # ---- transitions -------------------------------------------------------------------

    def _record(self, now: float, kind: str, reason: str, **details: Any) -> dict[str, Any]:
        assert kind in TRANSITIONS, kind
        s = self.state
        s.version += 1
        entry = {"at": now, "slot": self.slot, "transition": kind, "stage": s.stage, "reason": reason,
                 "incumbent": arm_name(s.incumbent), "challenger": arm_name(s.challenger), **details}  # fmt: skip
        s.history.append(entry)
        del s.history[:-200]
        return entry

    def _settled(self) -> bool:
        """A promoted tier faces its next challenger only after the guardrail could judge it against its holdout."""
        s = self.state
        if s.stage != "promoted" or s.previous is None or self.settings.holdout <= 0:
            return True
        if self.control is not None and self.control.total:
            return self.control.looked > 0
        need = self.settings.guardrail_min_events
        new = self.arms.get(spec_arm(self.config, s.incumbent))
        old = self.arms.get(spec_arm(self.config, s.previous))
        return new is not None and old is not None and new.n >= need and old.n >= need

    def _gradient_ready(self) -> bool:
        return self.gradient is not None and self.gradient.ready

    def _next_rung(self) -> str | None:
        """The challenger's tier: the first of the slot's rungs above the incumbent's (None on the top rung)."""
        current = tiers.get(str(self.state.incumbent.get("tier"))).rung
        return next((t for t in self.settings.tiers if tiers.get(t).rung > current), None)

    def _next_challenger_at(self, decided: Mapping[str, Any] | None) -> int:
        """When the next challenger is due, once ``decided`` (a challenger) was promoted, rejected or dropped.

        A tree learns from a window of records, so the next one waits ``retrain_every`` fresh records.  After a
        tree, though, the next turn is the gradient policy's (see :meth:`_train`), and it has learned from every
        record since day one: its turn starts at once (a promoted tree is still first judged by its holdout).
        After a gradient policy that was rejected or dropped the next turn is a tree's, and the records it needs
        are counted from the last tree's training, not from the decision: the gradient's canary and gate took
        that long, and the slot should not serve a tree that old for another ``retrain_every`` (a launch or a
        drift since is what the newer tree would learn).
        """
        s = self.state
        tier = (decided or {}).get("tier")
        gradient_next = (
            tier == "tree"
            and s.incumbent.get("tier") != "gradient"
            and "gradient" in self.settings.tiers
            and self._gradient_ready()
        )
        if gradient_next:
            return s.seen
        if tier == "gradient" and s.incumbent.get("tier") != "gradient" and s.tree_trained_at:
            return max(s.seen, s.tree_trained_at + self.settings.retrain_every)
        return s.seen + self.settings.retrain_every

    def _train(self, now: float) -> list[dict[str, Any]]:
        s = self.state
        s.next_train_at = s.seen + self.settings.retrain_every
        rung = self._next_rung()
        incumbent_tier = s.incumbent.get("tier")
        # Challengers alternate: above a tree, the gradient policy, then a newer tree (it may find what changed,
        # e.g. a launch), then the gradient policy again...; above the rules, a tree first.
        last = next((str(h.get("version") or "") for h in reversed(s.history)
                     if h["transition"] in ("trained", "no_change")), "")  # fmt: skip
        tree_turn = incumbent_tier == "tree" and last.startswith("gradient-")
        if rung == "gradient" and self._gradient_ready() and not tree_turn:
            return self._propose_gradient(now)
        # Above the rules too: once a tree has had its turn and not been promoted (rejected, found nothing, or
        # rolled back), the gradient policy has the next one; a slot whose rules no tree beats may still climb.
        gradient_turn = rung == "tree" and "gradient" in self.settings.tiers and last.startswith("tree-")
        if gradient_turn and self._gradient_ready():
            return self._propose_gradient(now)
        if rung in (None, "gradient") and incumbent_tier == "tree":
            rung = "tree"  # learning does not stop: a newer tree, while the gradient policy (if any) learns
        elif rung == "gradient":
            learned = self.gradient.learned if self.gradient is not None else 0
            need = self.config.slot(self.slot).gradient.min_events
            return [self._record(now, "train_skipped", f"the gradient policy has learned from {learned:,} of the "
                                 f"{need:,} records it needs before it is proposed")]  # fmt: skip
        # On the top rung the gradient incumbent learns by itself; a tree is trained only for its holdout
        holdout_only = rung != "tree" and incumbent_tier == "gradient" and (s.previous or {}).get("tier") == "tree"
        if rung != "tree" and not holdout_only:
            return []
        try:
            snapshot = self.trainer(self.config, self.slot, list(self.buffer))
        except ValueError as exc:  # not enough data yet, and the like: try again later
            return [self._record(now, "train_skipped", str(exc))]
        s.tree_trained_at = s.seen
        if holdout_only:
            return self._refresh_holdout(now, snapshot)
        exceptions = sum(1 for r in snapshot.get("rules", []) if r.get("origin") != "config")
        if snapshot.get("version") == snapshot_version(s.incumbent):
            return [self._record(now, "no_change", "the new tree is the one serving; retrying later",
                                 version=snapshot.get("version"), n=snapshot.get("n"))]  # fmt: skip
        if not exceptions:
            s.next_train_at = self._next_challenger_at({"tier": "tree"})  # the gradient policy's turn, if it has one
            return [self._record(now, "no_change", "the tree found nothing that beats the rules; retrying later",
                                 version=snapshot.get("version"), n=snapshot.get("n"))]  # fmt: skip
        self._to_shadow({"tier": "tree", "snapshot": snapshot})
        trained = self._record(now, "trained", "challenger trained; evaluating in shadow",
                               version=snapshot.get("version"), n=snapshot.get("n"), exceptions=exceptions)  # fmt: skip
        return [trained, *self._start_canary_beside_tree(now)]

    def _refresh_holdout(self, now: float, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
        """On the top rung, ``snapshot`` (a tree retrained on the newest records) replaces the gradient incumbent's
        tree holdout.

        The holdout is the guardrail's control and the tier a rollback returns to.  A tree trained before a
        launch or a drift, served to the holdout's share for the rest of the promotion, costs that share the
        difference (on the launch scenario a pre-launch tree earns ~69% of the oracle) and makes a weak
        control: the question the guardrail should answer is whether the gradient policy still beats what the
        tree rung would serve now.  The new tree takes the holdout's place without a gate: it serves only the
        holdout's share, and more only if the guardrail finds it better than the gradient policy on live
        rewards (a rollback returns to it).  The guardrail's windows restart with it.
        """
        s = self.state
        if snapshot.get("version") == snapshot_version(s.previous):
            return []  # the same tree: the holdout and the guardrail's windows go on
        old, s.previous = arm_name(s.previous), {"tier": "tree", "snapshot": snapshot}
        self._reset_arms()
        reason = (f"the holdout's tree ({old}) is retrained on the newest {len(self.buffer):,} records; the "
                  f"gradient incumbent is judged against it from now on")  # fmt: skip
        return [self._record(now, "holdout", reason, version=snapshot.get("version"), n=snapshot.get("n"))]

    def _start_canary_beside_tree(self, now: float) -> list[dict[str, Any]]:
        """On the first climb (a tree challenger above the rules) the gradient policy's canary starts beside it.

        Its turn would otherwise come only after the tree's gate, ramp and holdout (on the VR store ~100
        simulated hours later), and what it learns from its own picks is what the gate needs to see.
        """
        s = self.state
        if (
            self.settings.canary <= 0
            or "gradient" not in self.settings.tiers
            or s.incumbent.get("tier") != "rules"
            or not self._gradient_ready()
        ):
            return []
        assert self.gradient is not None and self.gradient.snapshot_ is not None
        snapshot = self.gradient.snapshot_
        s.canary = {"tier": "gradient", "snapshot": snapshot}
        s.canary_since = s.seen
        self._reset_arms()
        reason = (f"the gradient policy serves {self.settings.canary:.0%} of the traffic live beside the tree "
                  f"challenger and learns from its own picks; the next challenger after the tree's verdict, "
                  f"fixed and gated {self.settings.canary_events:,} events after this start")  # fmt: skip
        return [self._canary_record(now, reason, snapshot)]

    def _canary_record(self, now: float, reason: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        """The history entry of a gradient canary starting or going on: its snapshot and its traffic share."""
        return self._record(now, "canary", reason, version=snapshot.get("version"), n=snapshot.get("n"),
                            share=self.settings.canary)  # fmt: skip

    def _canary_goes_on(self, now: float) -> list[dict[str, Any]]:
        """The tree beside the canary has its verdict: the canary is now the slot's gradient challenger."""
        s = self.state
        assert s.canary is not None
        canary, s.canary = s.canary, None
        if self.settings.mode == "off" or self.settings.canary <= 0 or not self._gradient_ready():
            self._reset_arms()
            return [self._record(now, "rollback", "the canary beside the tree stops: escalation is off, or the "
                                 "canary share is 0")]  # fmt: skip
        self._to_shadow(canary)
        s.stage = "canary"
        s.challenger_since = s.canary_since  # its canary_events count from its start beside the tree
        self._reset_arms()
        learned = s.seen - s.canary_since
        reason = (
            f"the canary that learned beside the tree goes on as the gradient challenger against "
            f"{arm_name(s.incumbent)} ({learned:,} of its {self.settings.canary_events:,} events done)"
        )
        return [self._canary_record(now, reason, canary["snapshot"])]

    def _propose_gradient(self, now: float) -> list[dict[str, Any]]:
        assert self.gradient is not None and self.gradient.snapshot_ is not None
        snapshot = self.gradient.snapshot_
        self._to_shadow({"tier": "gradient", "snapshot": snapshot})
        if self.settings.canary > 0:
            self.state.stage = "canary"  # shadow's bookkeeping, with the challenger served at its share
            self._reset_arms()
            reason = (f"the gradient policy serves {self.settings.canary:.0%} of the traffic live and learns from "
                      f"its own picks for {self.settings.canary_events:,} events; then its snapshot is fixed and "
                      f"gated")  # fmt: skip
            return [self._canary_record(now, reason, snapshot)]
        reason = "the gradient policy's snapshot is the challenger; evaluating in shadow"
        return [self._fixed_record(now, reason, snapshot)]

    def _fixed_record(self, now: float, reason: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        """The history entry of a gradient snapshot fixed as the challenger the gate judges."""
        return self._record(now, "trained", reason, version=snapshot.get("version"), n=snapshot.get("n"),
                            step=snapshot.get("step"))  # fmt: skip

    def _fix_canary(self, now: float) -> list[dict[str, Any]]:
        """The canary has learned on its own traffic: its latest snapshot is the challenger the gate judges on
        events it was not trained on (the canary share keeps serving it meanwhile)."""
        assert self.state.challenger is not None
        snapshot = self.state.challenger["snapshot"]
        self._to_shadow({"tier": "gradient", "snapshot": snapshot})
        reason = "the canary's snapshot is fixed as the challenger; evaluating in shadow (still serving the canary)"
        return [self._fixed_record(now, reason, snapshot)]

    def _to_shadow(self, challenger: dict[str, Any], first_look: int | None = None, looks_done: int = 0) -> None:
        """``challenger`` goes to shadow, its evidence from now on; the gate looks ``first_look`` events later
        (``min_events`` unless given), with ``looks_done`` of the looks' error budget already spent."""
        s = self.state
        s.challenger = challenger
        s.challenger_since = s.seen
        s.next_gate_at = s.seen + (self.settings.min_events if first_look is None else first_look)
        s.gate_looks = looks_done
        self.since_challenger = []
        s.stage = "shadow"

    def _run_gate(self, now: float) -> list[dict[str, Any]]:
        s = self.state
        assert s.challenger is not None
        challenger = build_policy(self.config, self.slot, s.challenger)
        incumbent = build_policy(self.config, self.slot, s.incumbent)
        looks = self.settings.looks()
        settings = replace(self.settings, confidence=self.settings.look_confidence())
        result = self.gate(self.config, self.slot, self.since_challenger, challenger, incumbent, settings)
        s.gate_looks += 1
        result = {**result, "look": s.gate_looks, "looks": len(looks)}
        s.last_gate = {"at": now, **result}
        if not result["passed"]:
            high = result.get("relative_lift_high")
            last = s.gate_looks >= len(looks) or len(self.since_challenger) >= looks[-1]
            if not last and (high is None or high >= self.settings.min_lift):
                next_look = looks[min(s.gate_looks, len(looks) - 1)]
                newer = self._newer_gradient_snapshot()
                if newer is not None:
                    return self._refix_gradient(now, result, newer, next_look - looks[s.gate_looks - 1])
                s.next_gate_at = s.challenger_since + next_look
                return [self._record(now, "gate_wait", f"{result.get('reason', 'undecided')}; looking again at "
                                     f"{next_look} shadow events", gate=result)]  # fmt: skip
            s.stage = "promoted" if s.previous is not None else "incumbent"
            s.next_train_at = self._next_challenger_at(s.challenger)
            s.challenger = None
            self.since_challenger = []
            return [self._record(now, "rejected", result.get("reason", "gate failed"), gate=result)]
        if self.settings.mode == "manual":
            s.stage = "approval"
            return [self._record(now, "awaiting_approval", "gate passed; waiting for an operator", gate=result)]
        return [self._start_ramp(now, "gate passed", gate=result)]

    def _newer_gradient_snapshot(self) -> dict[str, Any] | None:
        """The learner's newest snapshot when the gated challenger is an older one of the same gradient learner."""
        s = self.state
        if s.challenger is None or s.challenger.get("tier") != "gradient" or self.gradient is None:
            return None
        newest = self.gradient.snapshot_
        if newest is None or newest.get("version") == snapshot_version(s.challenger):
            return None
        return newest

    def _refix_gradient(self, now: float, result: Mapping[str, Any], snapshot: dict[str, Any],
                        fresh: int) -> list[dict[str, Any]]:  # fmt: skip
        """An undecided look at a gradient challenger: the learner's newest snapshot is judged at the next look.

        The learner went on learning while its fixed snapshot was gated (the canary share still serves it), so
        the next look judges the newest snapshot, on the ``fresh`` events after this point, which it was not
        trained on; each look still spends only its Bonferroni share of the error rate, whichever snapshot it
        judges, so the chance that any look promotes a snapshot no better than the incumbent stays within
        ``1 − confidence``.  The looks keep their schedule: the last one comes as many events after the first
        as it would have for one fixed snapshot.
        """
        s = self.state
        looks = self.settings.looks()
        self._to_shadow({"tier": "gradient", "snapshot": snapshot}, first_look=fresh, looks_done=s.gate_looks)
        waited = self._record(now, "gate_wait", f"{result.get('reason', 'undecided')}; the learner's newest "
                              f"snapshot is judged at look {s.gate_looks + 1} of {len(looks)}, on the next "
                              f"{fresh:,} events", gate=result)  # fmt: skip
        served = " (the canary serves it)" if self.settings.canary > 0 else ""
        reason = f"the learner's newest snapshot is fixed as the challenger; evaluating in shadow{served}"
        return [waited, self._fixed_record(now, reason, snapshot)]

    def _start_ramp(self, now: float, reason: str, **details: Any) -> dict[str, Any]:
        s = self.state
        s.stage = "ramp"
        s.ramp_step = 0
        s.step_since = 0
        self._reset_arms()
        self.since_challenger = []
        return self._record(now, "ramp", reason, share=self.settings.ramp[0], **details)

    def _ramp(self, now: float) -> list[dict[str, Any]]:
        s = self.state
        guard = self._guard(now, promoted=False)
        if guard:
            return guard
        if s.step_since < self.settings.ramp_events:
            return []
        if s.ramp_step + 1 < len(self.settings.ramp):
            s.ramp_step += 1
            s.step_since = 0
            return [self._record(now, "ramp", "step held without breaking the guardrail",
                                 share=self.settings.ramp[s.ramp_step])]  # fmt: skip
        return [self._promote(now, "ramp completed")]

    def _promote(self, now: float, reason: str) -> dict[str, Any]:
        s = self.state
        assert s.challenger is not None
        s.previous = s.incumbent
        s.incumbent = s.challenger
        s.challenger = None
        s.stage = "promoted"
        s.next_train_at = self._next_challenger_at(s.incumbent)  # after a tree, once the holdout judged it
        self._reset_arms()
        if s.incumbent.get("tier") == "gradient" and self.gradient is not None:
            self.gradient.serving(s.incumbent["snapshot"])  # its trust region is measured from what serves
        return self._record(now, "promoted", reason, holdout=self.settings.holdout)

    def _guard(self, now: float, promoted: bool) -> list[dict[str, Any]]:
        s = self.state
        beside_tree = not promoted and s.canary is not None and s.stage != "ramp"
        new_spec = s.incumbent if promoted else (s.canary if beside_tree else s.challenger)
        old_spec = s.previous if promoted else s.incumbent
        if new_spec is None or old_spec is None:
            return []
        new = self.arms.get(spec_arm(self.config, new_spec))
        old = self.arms.get(spec_arm(self.config, old_spec))
        settings = self.settings
        if (s.stage == "canary" or beside_tree) and not promoted:  # still learning: only one far below is dropped
            settings = replace(settings, guardrail_margin=max(settings.guardrail_margin, settings.canary_margin))
        if promoted and self.control is not None and self.control.total:  # every decision, importance-weighted
            details = control_breached(self.control, settings)
        else:  # each arm's own rewards (a ramp, a canary, or records logged without the arms' probabilities)
            details = guardrail_breached(new, old, settings)
        if details is None:
            return []
        if beside_tree:  # dropped; the tree challenger stays in shadow
            s.canary = None
            self._reset_arms()
            margin = settings.guardrail_margin
            return [self._record(now, "rollback", f"the canary's live reward is below {1 - margin:.0%} of the "
                                 "incumbent's; the tree challenger stays in shadow", **details)]  # fmt: skip
        if not promoted and s.stage != "ramp":  # a canary below the incumbent: dropped, the incumbent stays
            margin = settings.guardrail_margin
            return [self._drop_challenger(now, f"the canary's live reward is below {1 - margin:.0%} of the "
                                          "incumbent's", **details)]  # fmt: skip
        return [self._rollback(now, "live reward below the previous tier by more than the guardrail margin",
                               **details)]  # fmt: skip

    def _rollback(self, now: float, reason: str, **details: Any) -> dict[str, Any]:
        """Drop the ramping challenger, or go back to the previous tier (after a promotion)."""
        s = self.state
        if s.stage == "ramp" or s.previous is None:
            return self._drop_challenger(now, reason, **details)
        if canary_serving(s, self.settings):
            # The incumbent goes back; a learning canary goes on, judged against the tier now serving (it has
            # learned from the same shoppers, and may be what follows them best)
            s.incumbent, s.previous = s.previous, None
            self._reset_arms()
            return self._record(now, "rollback", f"{reason}; the canary goes on beside it", **details)
        return self._back_to(s.previous, now, "rollback", reason, **details)

    def _drop_challenger(self, now: float, reason: str, **details: Any) -> dict[str, Any]:
        """A ``rollback`` that drops the challenger; the incumbent stays as it was."""
        s = self.state
        s.next_train_at = self._next_challenger_at(s.challenger)
        s.challenger = None
        s.stage = "promoted" if s.previous is not None else "incumbent"
        self._reset_arms()
        self.since_challenger = []
        return self._record(now, "rollback", reason, **details)

    def _fallback_to_rules(self, now: float, reason: str) -> dict[str, Any]:
        return self._back_to({"tier": "rules", "snapshot": None}, now, "fallback", reason)

    def _back_to(self, incumbent: dict[str, Any], now: float, kind: str, reason: str, **details: Any) -> dict[str, Any]:
        s = self.state
        s.incumbent = incumbent
        s.previous = None
        s.challenger = None
        s.canary = None
        s.stage = "incumbent"
        s.next_train_at = s.seen + self.settings.retrain_every
        self._reset_arms()
        self.since_challenger = []
        return self._record(now, kind, reason, **details)

    # ---- operator actions ----------------------------------------------------------------

    def act(self, action: str, now: float, actor: str = "operator") -> dict[str, Any]:
        """``promote``, ``rollback``, ``freeze`` or ``unfreeze``, by an operator.

        ``promote`` starts the ramp from shadow or approval, or completes a ramp at once.
        """
        s = self.state
        if action == "freeze":
            s.frozen = True
            return self._record(now, "freeze", f"frozen by {actor}")
        if action == "unfreeze":
            s.frozen = False
            return self._record(now, "unfreeze", f"unfrozen by {actor}")
        if action == "rollback":
            if s.stage == "incumbent" and s.incumbent.get("tier") == "rules":
                raise ValueError("nothing to roll back: the slot is on rules with no challenger")
            if s.stage == "incumbent":
                return self._fallback_to_rules(now, f"rolled back to rules by {actor}")
            return self._rollback(now, f"rolled back by {actor}")
        if action == "promote":
            if s.challenger is None:
                raise ValueError(f"nothing to promote: stage is {s.stage!r} with no challenger")
            if s.stage in ("canary", "shadow", "approval"):
                return self._start_ramp(now, f"promoted by {actor}")
            return self._promote(now, f"promoted by {actor}")
        raise ValueError(f"unknown action {action!r}; use promote, rollback, freeze or unfreeze")


# --------------------------------------------------------------------------- helpers


def build_policy(config: StoreConfig, slot: str, spec: Mapping[str, Any]) -> Policy:
    """The policy an arm spec ``{"tier", "snapshot"}`` describes (snapshots validated against the config)."""
    name = spec.get("tier")
    if not isinstance(name, str) or name not in tiers.names():
        raise ValueError(f"unknown tier {name!r} in ladder state")
    return tiers.get(name).build(config, slot, spec.get("snapshot"))


def canary_serving(state: SlotState, settings: EscalationSettings) -> bool:
    """True while a gradient canary serves its share: a gradient challenger (stage ``canary``, and shadow or
    approval after), or the canary beside a tree challenger in shadow or approval."""
    return canary_spec(state, settings) is not None


def canary_spec(state: SlotState, settings: EscalationSettings) -> dict[str, Any] | None:
    """The arm spec the canary share serves, or None when no canary serves."""
    if settings.canary <= 0 or state.stage not in ("canary", "shadow", "approval"):
        return None
    if state.canary is not None:
        return state.canary
    return state.challenger if (state.challenger or {}).get("tier") == "gradient" else None


def serving_policy(slot: str, state: SlotState, build: Callable[[dict[str, Any]], Policy],
                   settings: EscalationSettings | None = None) -> LadderPolicy:  # fmt: skip
    """The :class:`LadderPolicy` for a state; shares come from ``settings`` (defaults when None)."""
    settings = settings or EscalationSettings()
    primary = build(state.incumbent)
    spec = canary_spec(state, settings)
    if spec is not None:
        assert state.challenger is not None
        canary = build(spec)
        shadow = canary if spec is state.challenger else build(state.challenger)  # beside a tree: the tree
        if state.previous and settings.holdout > 0:  # the promoted incumbent stays judged against its holdout
            return LadderPolicy(slot, primary, canary, settings.canary, shadow=shadow, probe=settings.probe,
                                holdout=build(state.previous), holdout_share=settings.holdout)  # fmt: skip
        return LadderPolicy(slot, primary, canary, settings.canary, shadow=shadow, probe=settings.probe)
    if state.stage in ("shadow", "approval") and state.challenger:
        if state.previous and settings.holdout > 0:  # the last promotion's holdout goes on during shadow
            return LadderPolicy(slot, primary, build(state.previous), settings.holdout, shadow=build(state.challenger),
                                probe=settings.probe)  # fmt: skip
        return LadderPolicy(slot, primary, shadow=build(state.challenger), probe=settings.probe)
    if state.stage == "ramp" and state.challenger:
        return LadderPolicy(slot, primary, build(state.challenger), settings.ramp[state.ramp_step])
    if state.stage == "promoted" and state.previous and settings.holdout > 0:
        return LadderPolicy(slot, primary, build(state.previous), settings.holdout)
    return LadderPolicy(slot, primary)
