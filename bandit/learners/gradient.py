"""Learning the third rung: an actor-critic policy gradient over hashed crosses, online, in a trust region.

One :class:`GradientLearner` per slot learns from every joined record of
that slot, whoever served it (the rules, a tree, or the gradient policy
itself), and publishes snapshots that :class:`bandit.policies.gradient.GradientPolicy`
serves.

The update rule, per batch of joined records ``(x_i, candidates C_i, chosen
a_i, logged propensity μ_i, reward r_i)``:

**Critic** (the learned baseline).  A hurdle reward model
``q̂(x, a) = P̂(r > 0 | x, a) · v̂(a)``: a logistic regression over the same
hashed crosses as the policy, trained by AdaGrad on the logged item
(steps divided by the number of active crosses, as Vowpal Wabbit normalises
them), times each item's mean positive reward shrunk toward the overall one.
An item's own crosses (each context token × its ``id`` token) step
``own_crosses × tokens`` times as far as the rest, so that alone they follow
the whole residual: with every cross alike they take ``1/tokens`` of each
correction, and what is particular to the item (a segment where it is good
and the items it shares features with are not) leaks to its peers and is
learned too slowly to be found.
With ``own_pairs`` an item also has a weight for each pair of the context's
steady fields (not the hour or the day), crossed with its ``id`` only; its
own crosses, ``k`` singles and ``m`` pairs per record, then share what the
``k`` singles took alone, each stepping ``k / (k + m)`` as far.
Rewards are divided by the overall mean positive reward, so the knobs below
mean the same in any store's units.  The critic also keeps a diagonal
Laplace approximation of its weights' precision (the Fisher information
``Σ p(1 − p)`` per cross, plus a prior), which gives each candidate's logit
a standard deviation ``σ̂(x, a)``: its variance is the *mean* of its active
crosses' variances, not their sum.  The crosses of a context and an item
are seen together, so the sum would count the same evidence (and the same
prior) once per cross: with 7 context and 6 item tokens an unseen candidate
had a standard deviation of √42 ≈ 6.5 logits, which swamped any estimate.
With the mean it is ``1/√prior`` for an unseen candidate, and an item whose
shared crosses are well known but whose own crosses are not keeps the
share of the uncertainty its own crosses carry.

**Actor** (the policy).  ``π_θ(a | x) ∝ exp s_θ(x, a)`` over the eligible
candidates.  Its objective on a record is the doubly-robust value of the
policy with an entropy bonus,

    J_i(θ) = Σ_a π_θ(a|x_i) q̃_i(a) + ρ_i (r_i − q̂_i(a_i)) + β H(π_θ(·|x_i)),

whose weight ``β = entropy · v̄`` is relative to the slot's value: ``v̄`` is
the batch's mean of ``Σ_a π(a) q̃(a)``, the critic's value of the policy per
decision.  A slot where any item is seldom rewarded (a lower row, a store
with few clicks) has small value differences between items; with a fixed
``β`` its policy would stay near uniform, with a relative one it is as sharp
as the hero's where its items differ as much relative to their value.

where ``q̃_i(a) = σ(logit_i(a) + κ σ̂_i(a)) · v̂(a)`` is the critic, raised by
``κ = optimism`` standard deviations (0.5 by default; 0 turns it off),
and ``ρ_i = min(π_θ(a_i|x_i) / μ_i, weight_clip)`` the clipped importance
weight of the logged item.  The actor moves its logits along the *natural*
gradient of that objective, for every candidate ``a`` (the all-action form,
which uses the critic's estimate of every candidate, not only the logged
one, to cut variance):

    Δs(a) ∝ (q̃(a) − Σ_b π(b) q̃(b)) − β (log π(a) + H) + ρ_i δ_i (1[a = a_i] − π(a)),

with ``δ_i = r_i − q̂_i(a_i)``.  The first two terms are the natural
gradient of a softmax policy (Kakade, "A natural policy gradient", NIPS
2001): the advantage itself rather than ``π(a)`` times it, so an item the
policy nearly dropped still rises as fast as the critic says it should,
and the entropy-regularised update converges to ``π ∝ exp(q̃ / β)`` (Cen et
al., "Fast global convergence of natural policy gradient methods with
entropy regularization", 2021): a softmax that spreads over items whose
values are close and ignores the clearly worse.  The critic's value is the
baseline, so only the advantage moves the policy (Sutton et al., NIPS
2000); the last term is the doubly-robust correction for the critic's error
on the logged item (Dudík, Langford & Li, ICML 2011).  A record whose
logged item's ratio to the deployed snapshot already left ``[1 − c, 1 + c]``
(``ratio_clip``) in the direction its advantage pushes contributes no correction term
(the clipped surrogate of PPO: Schulman et al., 2017).  AdaGrad steps the
weights, each by its own accumulated squared per-record gradients (Duchi,
Hazan & Singer, JMLR 2011).

**Trust region.**  Workers serve a published snapshot.  After each batch's
step the mean KL divergence ``KL(π_snapshot ‖ π_θ)`` over the batch's
contexts (the recent logged contexts) is measured; when it reaches
``kl_limit`` the learner stops, publishes ``θ`` as the new snapshot, and goes
on from it.  A step that would go past the limit is cut back by a
backtracking line search on the segment from the snapshot to the stepped
weights, to within 1% above the limit (TRPO's constraint: Schulman et al.,
ICML 2015), so no published step is larger than ``kl_limit``: neither the
first steps from the warm start, when AdaGrad's steps are largest, nor the
first after a promotion (the learner went on learning while its fixed
snapshot was gated; the deployed snapshot is then the gated one).

**Warm start.**  Before any record, the actor imitates the incumbent (the
rules or a tree) by minimising the cross-entropy to its probabilities on
contexts drawn from the config's schema, so the first snapshot serves what
the incumbent served.

**Drift.**  With ``halflife`` set, the AdaGrad accumulators and the
precision decay by half every ``halflife`` records: old evidence weighs less,
steps stay large enough to follow a change, and the critic grows unsure
(and the policy explores) where it has not looked lately.

**Faults.**  A batch whose update produces a non-finite number is dropped
whole (``nan_halts`` counts it; the last good weights and snapshot stay).
"""

from __future__ import annotations

import base64
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sparse

from bandit.config import GradientSettings, StoreConfig
from bandit.config.model import DAYS
from bandit.eventlog.events import is_learnable
from bandit.features import FeatureHashing
from bandit.policies.base import Policy
from bandit.policies.gradient import GradientPolicy, decode_weights, encode_snapshot, hashing_of, same_hashing

CHECKPOINT_KIND = "storefront.gradient-learner.v1"
VALUE_SHRINKAGE = 20.0  # pseudo-rewards pulling an item's mean positive reward toward the overall mean
KL_TOLERANCE = 0.01  # a step cut back by the line search ends within 1% above kl_limit
IMITATION_ROUNDS = 12  # batches of 512 sampled contexts the warm start imitates the incumbent on
_EPS = 1e-12
_PENDING_KEYS = ("slot", "tier", "context", "candidates", "chosen", "propensity", "reward")


@dataclass
class Published:
    """A snapshot the learner published, and why."""

    snapshot: dict[str, Any]
    reason: str
    kl: float


class _Space:
    """Compact columns: the item buckets the config's items use; rows stay the context buckets."""

    def __init__(self, config: StoreConfig, hashing: FeatureHashing, buckets: Sequence[int] = ()):
        self.hashing = hashing
        self.columns: list[int] = list(buckets)
        self.extend(config)

    def extend(self, config: StoreConfig) -> int:
        """Add the buckets of items new to this space; returns how many columns were added."""
        self.items = [i for i in config.catalog.ids if i not in config.constraints.exclude]
        self.position = {item: k for k, item in enumerate(self.items)}
        self.publisher = {item.id: item.publisher for item in config.catalog.items}
        publishers = {p: k for k, p in enumerate(sorted({self.publisher[item] for item in self.items}))}
        self.by_publisher = np.zeros((len(self.items), len(publishers)))  # items × publishers, one 1 per item
        self.by_publisher[np.arange(len(self.items)), [publishers[self.publisher[i]] for i in self.items]] = 1.0
        known = set(self.columns)
        added = 0
        for item in self.items:
            for b in self.hashing.item_index(item).tolist():
                if b < self.hashing.n_item and b not in known:
                    known.add(b)
                    self.columns.append(b)
                    added += 1
        column_of = {b: k for k, b in enumerate(self.columns)}
        incidence = np.zeros((len(self.items), len(self.columns)))
        for n, item in enumerate(self.items):
            for b in self.hashing.item_index(item).tolist():
                if b < self.hashing.n_item:
                    incidence[n, column_of[b]] += 1.0
        self.incidence = incidence
        self.tokens = incidence.sum(axis=1)
        # each item's own column: its first token is `id=…` (FeatureHashing.item_tokens)
        self.own = np.array([column_of[int(self.hashing.item_index(item)[0])] for item in self.items], dtype=np.int64)
        self.own_mask = np.zeros(len(self.columns))
        self.own_mask[self.own] = 1.0
        self.own_tokens = incidence @ self.own_mask  # per item, its own columns: 1 unless two ids' buckets collide
        return added

    def paired(self, rows: np.ndarray) -> np.ndarray | None:
        """Which of these context rows are an own pair's (crossed with the items' own columns only), or None."""
        start = self.hashing.pair_rows
        return None if start is None else rows >= start

    def restrict(self, step: np.ndarray, paired: np.ndarray | None) -> np.ndarray:
        """``step`` (rows × columns) with an own pair's rows kept to the items' own columns (in place)."""
        if paired is not None and paired.any():
            step[paired] *= self.own_mask
        return step

    def counts(self, design: sparse.csr_matrix, paired: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per record, its single tokens and its own pairs (``design``'s columns are the rows ``paired`` marks)."""
        total = np.asarray(design.sum(axis=1)).ravel()
        if paired is None or not paired.any():
            return total, np.zeros_like(total)
        pairs = np.asarray(design[:, np.flatnonzero(paired)].sum(axis=1)).ravel()
        return total - pairs, pairs

    def design(self, contexts: Sequence[Mapping[str, Any]]) -> sparse.csr_matrix:
        """Records × context buckets, one 1 per token (hash collisions add up, as hashing does)."""
        indptr = [0]
        indices: list[int] = []
        for context in contexts:
            indices.extend(self.hashing.context_index(context).tolist())
            indptr.append(len(indices))
        data = np.ones(len(indices))
        return sparse.csr_matrix((data, indices, indptr), shape=(len(contexts), self.hashing.n_context))


def _masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    s = np.where(mask, scores, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(array).tobytes(), 6)).decode("ascii")


def _unpack(text: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).reshape(shape).copy()


def sample_contexts(config: StoreConfig, count: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Contexts drawn evenly from the config's schema (each field present, each value equally likely)."""
    out = []
    for _ in range(count):
        context: dict[str, Any] = {}
        for spec in config.context.fields:
            if spec.kind == "category":
                context[spec.name] = spec.values[int(rng.integers(len(spec.values)))]
            elif spec.kind == "bool":
                context[spec.name] = bool(rng.integers(2))
            elif spec.kind == "hour":
                context[spec.name] = int(rng.integers(24))
            elif spec.kind == "day_of_week":
                context[spec.name] = DAYS[int(rng.integers(7))]
            else:
                lo = spec.min if spec.min is not None else 0.0
                hi = spec.max if spec.max is not None else lo + 100.0
                value = float(rng.uniform(lo, hi))
                context[spec.name] = round(value) if spec.kind == "integer" else value
        out.append(context)
    return out


class GradientLearner:
    """Learns one slot's gradient policy online from joined records.

    Parameters
    ----------
    config
        The store config (catalog, context schema, the slot's ``gradient`` settings).
    slot
        The slot's name.
    seed
        Seeds the warm start's sampled contexts.
    """

    def __init__(self, config: StoreConfig, slot: str, seed: int = 0):
        self.config = config
        self.slot = slot
        self.settings: GradientSettings = config.slot(slot).gradient
        self.seed = seed
        self.hashing = FeatureHashing(config, hashing_of(config.slot(slot)))
        self.space = _Space(config, self.hashing)
        shape = (self.hashing.n_context, len(self.space.columns))
        self.actor = np.zeros(shape)
        self.actor_squares = np.zeros(shape)
        self.critic = np.zeros(shape)
        self.critic_squares = np.zeros(shape)
        self.precision = np.zeros(shape)
        self.deployed = np.zeros(shape)
        self.critic_bias: float | None = None
        self.positive_sum: dict[str, float] = {}
        self.positive_count: dict[str, float] = {}
        self.learned = 0
        self.steps = 0
        self.nan_halts = 0
        self.last_kl = 0.0
        self.lineage = ""
        self.snapshot_: dict[str, Any] | None = None
        self._pending: list[Mapping[str, Any]] = []

    # ---- warm start ------------------------------------------------------------------

    def imitate(self, incumbent: Policy, lineage: str = "") -> Published:
        """Fit the actor to ``incumbent``'s probabilities on sampled contexts; publish it as the first snapshot."""
        rng = np.random.default_rng(self.seed)
        items = self.space.items
        squares = np.zeros_like(self.actor)
        paired = self.space.paired(np.arange(self.hashing.n_context))
        for _ in range(IMITATION_ROUNDS):
            contexts = sample_contexts(self.config, 512, rng)
            design = self.space.design(contexts)
            target = np.array([incumbent.pmf(c, items)[0] for c in contexts])
            scores = np.asarray(design @ self.actor) @ self.space.incidence.T
            probs = _masked_softmax(scores, np.ones_like(scores, dtype=bool))
            gradient = self.space.restrict(np.asarray(design.T @ ((target - probs) @ self.space.incidence)), paired)
            squares += gradient * gradient
            self.actor += 0.5 * gradient / np.sqrt(squares + _EPS)
        self.lineage = lineage or f"{self.slot}-{self.seed}"
        return self._publish("warm start: imitates the incumbent", 0.0)

    # ---- learning ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Learned enough (``min_events``) to be proposed as a challenger."""
        return self.snapshot_ is not None and self.learned >= self.settings.min_events

    def observe(self, records: Sequence[Mapping[str, Any]]) -> list[Published]:
        """Learn from this slot's joined records (pins are skipped); returns the snapshots published meanwhile."""
        published: list[Published] = []
        for record in records:
            if record.get("slot") != self.slot or not is_learnable(record):
                continue
            self._pending.append(record)
            if len(self._pending) >= self.settings.batch:
                batch, self._pending = self._pending, []
                made = self._update(batch)
                if made is not None:
                    published.append(made)
        return published

    def _values(self) -> tuple[np.ndarray, float]:
        """Each item's mean positive reward (shrunk), in units of the overall mean positive reward."""
        total = sum(self.positive_sum.values())
        count = sum(self.positive_count.values())
        overall = total / count if count else 1.0
        scale = overall if overall > 0 else 1.0
        values = np.array([
            (self.positive_sum.get(item, 0.0) + VALUE_SHRINKAGE * overall)
            / (self.positive_count.get(item, 0.0) + VALUE_SHRINKAGE)
            for item in self.space.items
        ])  # fmt: skip
        return values / scale, scale

    def _own_step(self) -> np.ndarray:
        """Per column: the critic's step multiplier, ``own_crosses × tokens`` on an item's ``id`` column, else 1."""
        boost = np.ones(len(self.space.columns))  # own_crosses 0 leaves every column at 1
        np.maximum.at(boost, self.space.own, self.settings.own_crosses * self.space.tokens)
        return boost

    def _decay(self, records: int) -> None:
        if not self.settings.halflife:
            return
        keep = 0.5 ** (records / self.settings.halflife)
        for array in (self.actor_squares, self.critic_squares, self.precision):
            array *= keep
        for table in (self.positive_sum, self.positive_count):
            for item in table:
                table[item] *= keep

    def _update(self, batch: Sequence[Mapping[str, Any]]) -> Published | None:
        space, s = self.space, self.settings
        known = [r for r in batch if r["chosen"] in space.position]
        if not known:
            return None
        n = len(known)
        design = space.design([r["context"] for r in known])
        mask = np.zeros((n, len(space.items)), dtype=bool)
        for i, record in enumerate(known):
            mask[i, [space.position[c] for c in record["candidates"] if c in space.position]] = True
        chosen = np.array([space.position[r["chosen"]] for r in known])
        mu = np.array([float(r["propensity"]) for r in known])
        reward = np.array([float(r["reward"]) for r in known])
        hit = (reward > 0).astype(float)
        rows = np.arange(n)
        if self.critic_bias is None:
            rate = min(max(hit.mean(), 1e-3), 1 - 1e-3)
            self.critic_bias = math.log(rate / (1 - rate))
        # Only the context buckets this batch touches move: work on their rows, write them back if all is finite.
        used = np.unique(design.indices)
        design = design[:, used]
        paired = space.paired(used)
        actor, actor_squares = self.actor[used], self.actor_squares[used]
        critic, critic_squares, precision = self.critic[used], self.critic_squares[used], self.precision[used]
        deployed_rows = self.deployed[used]
        backup = (self.critic_bias, dict(self.positive_sum), dict(self.positive_count))
        with np.errstate(all="ignore"):
            for i in np.flatnonzero(hit).tolist():
                item = known[i]["chosen"]
                self.positive_sum[item] = self.positive_sum.get(item, 0.0) + reward[i]
                self.positive_count[item] = self.positive_count.get(item, 0.0) + 1.0
            values, scale = self._values()
            scaled_reward = reward / scale
            # critic: logits, their uncertainty, the optimistic estimate
            logits = np.asarray(design @ critic) @ space.incidence.T + self.critic_bias
            p_hit = 1.0 / (1.0 + np.exp(-logits))
            q = p_hit * values
            if s.optimism:
                spread = s.optimism * self.logit_std(design, precision, used)
                q_optimistic = values / (1.0 + np.exp(-(logits + spread)))
            else:
                q_optimistic = q
            # critic update on the logged item
            residual = hit - p_hit[rows, chosen]
            per_record = residual[:, None] * space.incidence[chosen]
            step = space.restrict(np.asarray(design.T @ per_record), paired)
            critic_squares += space.restrict(np.asarray(design.T @ (per_record * per_record)), paired)  # AdaGrad
            singles, pairs = space.counts(design, paired)
            active = float(singles.mean() * space.tokens[chosen].mean() + pairs.mean())
            rate = s.critic_learning_rate / max(active, 1.0) * self._own_step()  # per column
            if pairs.any():  # an item's own crosses, k singles and m pairs, share what the k singles took alone
                k, m = float(singles.mean()), float(pairs.mean())
                rate *= np.where(space.own_mask > 0, active / max(active - m, 1.0) * k / (k + m), 1.0)
            critic += rate * step / np.sqrt(critic_squares + _EPS)

            weight = p_hit[rows, chosen] * (1 - p_hit[rows, chosen])
            precision += space.restrict(np.asarray(design.T @ (weight[:, None] * space.incidence[chosen])), paired)
            # actor
            probs = _masked_softmax(np.asarray(design @ actor) @ space.incidence.T, mask)
            deployed = _masked_softmax(np.asarray(design @ deployed_rows) @ space.incidence.T, mask)
            log_probs = np.where(mask, np.log(np.where(mask, probs, 1.0) + _EPS), 0.0)
            if s.fairness:  # −λ r̄ HHI: showing a publisher's item costs 2 λ r̄ share_p (the HHI's derivative)
                # share_p: the policy's own expected share on these contexts, not the logged one, which lags the
                # policy (by ``halflife``) and made it swing from one publisher to the other and back
                shares = space.by_publisher @ (probs.mean(axis=0) @ space.by_publisher)
                q_optimistic = q_optimistic - 2.0 * s.fairness * q[rows, chosen].mean() * shares[None, :]
            q_masked = np.where(mask, q_optimistic, 0.0)
            baseline = (probs * q_masked).sum(axis=1, keepdims=True)
            gradient = q_masked - baseline  # natural gradient: the advantage itself, not π(a) times it
            delta = scaled_reward - q[rows, chosen]
            rho = np.minimum(probs[rows, chosen] / np.maximum(mu, _EPS), s.weight_clip)
            ratio = probs[rows, chosen] / np.maximum(deployed[rows, chosen], _EPS)
            clipped = ((delta > 0) & (ratio > 1 + s.ratio_clip)) | ((delta < 0) & (ratio < 1 - s.ratio_clip))
            correction = np.where(clipped, 0.0, rho * delta)
            onehot = np.zeros_like(probs)
            onehot[rows, chosen] = 1.0
            gradient += correction[:, None] * (onehot - probs)
            entropy = -(probs * log_probs).sum(axis=1, keepdims=True)
            # β relative to the policy's value: the softmax's temperature scales with the slot's reward level
            beta = s.entropy * float(baseline.mean())
            gradient -= beta * (log_probs + entropy)
            gradient = np.where(mask, gradient, 0.0)
            per_record = gradient @ space.incidence
            step = space.restrict(np.asarray(design.T @ per_record), paired)
            actor_squares += space.restrict(np.asarray(design.T @ (per_record * per_record)), paired)
            actor += s.learning_rate * step / np.sqrt(actor_squares + _EPS)
            actor, kl = self._trust_region(design, mask, deployed_rows, deployed, actor)
            finite = all(np.isfinite(a).all() for a in (actor, critic, precision)) and math.isfinite(kl)
        if not finite or not math.isfinite(self.critic_bias):
            self.critic_bias, self.positive_sum, self.positive_count = backup
            self.nan_halts += 1
            return None
        self.actor[used], self.actor_squares[used] = actor, actor_squares
        self.critic[used], self.critic_squares[used], self.precision[used] = critic, critic_squares, precision
        self._decay(n)
        self.learned += n
        self.last_kl = kl
        if self.last_kl >= s.kl_limit:
            return self._publish("trust region reached", self.last_kl)
        return None

    def logit_std(self, design: sparse.csr_matrix, precision: np.ndarray | None = None,
                  rows: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """The critic's standard deviation of each candidate's logit, records × items (``design``'s columns are
        the rows of ``precision``: ``rows``, by default all context rows): the root of its active crosses' mean
        variance."""
        precision = self.precision if precision is None else precision
        paired = self.space.paired(np.arange(self.hashing.n_context) if rows is None else rows)
        singles, pairs = self.space.counts(design, paired)
        crosses = np.outer(singles, self.space.tokens) + np.outer(pairs, self.space.own_tokens)
        variance = self.space.restrict(1.0 / (precision + self.settings.prior), paired)
        total = np.asarray(design @ variance) @ self.space.incidence.T
        return np.sqrt(total / np.maximum(crosses, 1.0))

    def _kl(self, design: sparse.csr_matrix, mask: np.ndarray, deployed: np.ndarray, actor: np.ndarray) -> float:
        """Mean ``KL(π_deployed ‖ π_actor)`` over the batch's contexts (``deployed``: the snapshot's probabilities)."""
        probs = _masked_softmax(np.asarray(design @ actor) @ self.space.incidence.T, mask)
        log_ratio = np.log(deployed + _EPS) - np.log(np.where(mask, probs, 1.0) + _EPS)
        return float(np.where(mask, deployed * log_ratio, 0.0).sum(axis=1).mean())

    def _trust_region(self, design: sparse.csr_matrix, mask: np.ndarray, deployed_rows: np.ndarray,
                      deployed: np.ndarray, actor: np.ndarray) -> tuple[np.ndarray, float]:  # fmt: skip
        """The actor after this batch, no further than ``kl_limit`` from the deployed snapshot, and its KL.

        When the batch's step would take the policy past the limit (on the batch's contexts), a backtracking
        line search as in TRPO (bisection on the segment from the deployed snapshot to the stepped actor)
        stops where the KL is between the limit and 1% above it, so the published snapshot is one trust-region
        step from the last.  Without it one batch of 512 records moved the VR hero's fresh policy by a KL of 2.9
        against a limit of 0.05, and a promoted challenger, whose learner went on learning while its fixed
        snapshot was gated, jumped at its first batch.
        """
        limit = self.settings.kl_limit
        kl = self._kl(design, mask, deployed, actor)
        if not kl > limit:  # within the region, or NaN (the caller drops the batch)
            return actor, kl
        direction = actor - deployed_rows
        low, high = 0.0, 1.0
        for _ in range(40):  # to within 1% of the limit (the KL grows with the fraction)
            if kl <= limit * (1 + KL_TOLERANCE):
                break
            middle = (low + high) / 2
            kl_middle = self._kl(design, mask, deployed, deployed_rows + middle * direction)
            if kl_middle > limit:
                high, kl = middle, kl_middle
            else:
                low = middle
        return deployed_rows + high * direction, kl  # at or just past the limit: it publishes

    def progress(self) -> tuple[int, int]:
        """Records learned and records waiting for the next batch: what a checkpoint must keep up with."""
        return self.learned, len(self._pending)

    # ---- snapshots ---------------------------------------------------------------------

    def _publish(self, reason: str, kl: float) -> Published:
        self.deployed = self.actor.copy()
        self.steps += 1
        self.snapshot_ = self.snapshot()
        return Published(self.snapshot_, reason, kl)

    def snapshot(self) -> dict[str, Any]:
        """The current actor as a servable snapshot (JSON)."""
        rows, cols = np.nonzero(self.actor)
        buckets = np.array(self.space.columns, dtype=np.int64)
        return encode_snapshot(
            self.config, self.slot, rows.astype(np.int64), buckets[cols], self.actor[rows, cols],
            n=self.learned, step=self.steps, lineage=self.lineage,
        )  # fmt: skip

    def policy(self) -> GradientPolicy | None:
        """The policy of the last published snapshot."""
        if self.snapshot_ is None:
            return None
        return GradientPolicy(self.config, self.config.slot(self.slot), self.snapshot_)

    def adopt(self, snapshot: Mapping[str, Any]) -> None:
        """Continue from a served snapshot (e.g. after a restart without a checkpoint, or a rollback)."""
        self.actor = self._compact(snapshot)
        self.deployed = self.actor.copy()
        self.snapshot_ = dict(snapshot)
        self.lineage = str(snapshot.get("lineage", self.lineage))
        self.steps = int(snapshot.get("step", self.steps))

    def serving(self, snapshot: Mapping[str, Any]) -> None:
        """Workers now serve ``snapshot``: the trust region is measured from it (the actor keeps its weights)."""
        self.deployed = self._compact(snapshot)

    def _compact(self, snapshot: Mapping[str, Any]) -> np.ndarray:
        rows, cols, values = decode_weights(self.config, self.config.slot(self.slot), snapshot)
        column_of = {b: k for k, b in enumerate(self.space.columns)}
        out = np.zeros_like(self.actor)
        for r, c, v in zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True):
            if c in column_of:
                out[r, column_of[c]] += v
        return out

    def reconfigure(self, config: StoreConfig) -> None:
        """A new config version: new items get columns; removed ones keep their weights unused."""
        if hashing_of(config.slot(self.slot)) != hashing_of(self.config.slot(self.slot)):
            raise ValueError(f"slot {self.slot}: the gradient hashing changed; the learner must start afresh")
        self.config = config
        self.settings = config.slot(self.slot).gradient
        self.hashing = FeatureHashing(config, hashing_of(config.slot(self.slot)))
        self.space.hashing = self.hashing
        added = self.space.extend(config)
        if added:
            pad = np.zeros((self.hashing.n_context, added))
            for name in ("actor", "actor_squares", "critic", "critic_squares", "precision", "deployed"):
                setattr(self, name, np.hstack([getattr(self, name), pad]))

    # ---- checkpoints ---------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this learner is (JSON): rows that hold any state."""
        arrays = ("actor", "actor_squares", "critic", "critic_squares", "precision", "deployed")
        used = np.flatnonzero(np.any([np.any(getattr(self, a) != 0, axis=1) for a in arrays], axis=0))
        return {
            "kind": CHECKPOINT_KIND, "slot": self.slot, "hashing": hashing_of(self.config.slot(self.slot)).to_json(),
            "columns": list(self.space.columns), "rows": used.tolist(),
            "arrays": {a: _pack(getattr(self, a)[used].astype(np.float64)) for a in arrays},
            "critic_bias": self.critic_bias, "positive_sum": self.positive_sum,
            "positive_count": self.positive_count, "learned": self.learned, "steps": self.steps,
            "nan_halts": self.nan_halts, "lineage": self.lineage, "snapshot": self.snapshot_,
            "pending": [{k: r.get(k) for k in _PENDING_KEYS} for r in self._pending],
        }  # fmt: skip

    @classmethod
    def restore(cls, config: StoreConfig, data: Mapping[str, Any], seed: int = 0) -> GradientLearner:
        """A learner continuing from :meth:`checkpoint` (refused when the slot or its hashing changed)."""
        if data.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"not a gradient learner checkpoint (kind must be {CHECKPOINT_KIND!r})")
        slot = str(data.get("slot"))
        if not same_hashing(config, config.slot(slot), data.get("hashing")):
            raise ValueError(f"slot {slot}: the checkpoint's feature hashing differs from the config's")
        learner = cls(config, slot, seed)
        learner.space = _Space(config, learner.hashing, [int(b) for b in data["columns"]])
        shape = (learner.hashing.n_context, len(learner.space.columns))
        rows = np.array(data["rows"], dtype=np.int64)
        width = len(data["columns"])
        for name, text in data["arrays"].items():
            full = np.zeros(shape)
            full[rows, :width] = _unpack(text, np.float64, (len(rows), width))
            setattr(learner, name, full)
        learner.critic_bias = data.get("critic_bias")
        learner.positive_sum = {k: float(v) for k, v in data.get("positive_sum", {}).items()}
        learner.positive_count = {k: float(v) for k, v in data.get("positive_count", {}).items()}
        learner.learned = int(data.get("learned", 0))
        learner.steps = int(data.get("steps", 0))
        learner.nan_halts = int(data.get("nan_halts", 0))
        learner.lineage = str(data.get("lineage", ""))
        learner.snapshot_ = data.get("snapshot")
        learner._pending = list(data.get("pending", []))
        return learner
