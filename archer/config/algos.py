"""One config section per registered algorithm, named as its registry key (`algo=NAME`).

All sections are always present (`archer config show` prints them); only the one named by
`algo` is read. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archer.config.sections import _choice


@dataclass
class TDCriticConfig:
    """How ArCHer's utterance-level double critic is trained (the model is `critic`)."""

    lr: float = 1e-3
    """Critic AdamW learning rate (the paper: 2e-5 for a pretrained RoBERTa encoder)."""
    weight_decay: float = 0.0
    """Critic AdamW weight decay (the paper and the actor use none)."""
    gamma: float = 0.95
    """Discount per utterance."""
    tau: float = 0.1
    """Polyak rate of the target critic after every critic step."""
    batch_size: int = 64
    """Transitions per critic step (the paper: 256)."""
    micro_batch_size: int = 64
    """Transitions per critic forward/backward; the micro-batches of a step are accumulated as
    one mean, so memory is bounded without changing the step."""
    updates_per_iter: int = 20
    """Critic steps per iteration (the paper: 50). At 10 the main job's policy got worse in two
    seeds of three (docs/training.md)."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""
    min_q_for_v: bool = False
    """Regress both V heads on min(Q1_target, Q2_target) instead of each head its own."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.weight_decay < 0:
            errors.append(("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        if not 0.0 <= self.gamma <= 1.0:
            errors.append(("gamma", f"must be in [0, 1], got {self.gamma}"))
        if not 0.0 < self.tau <= 1.0:
            errors.append(("tau", f"must be in (0, 1], got {self.tau}"))
        for key in ("batch_size", "micro_batch_size"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.updates_per_iter < 0:
            errors.append(("updates_per_iter", f"must be >= 0, got {self.updates_per_iter}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors


@dataclass
class PGActorConfig:
    """ArCHer's token-level actor: REINFORCE or PPO-clip on the critic's advantages."""

    loss: str = "reinforce"
    """reinforce (advantage x utterance log-prob, one step per sampled batch) or ppo (clipped
    token ratio against the behaviour log-probs, `epochs` x `minibatches` steps per batch)."""
    lr: float = 1e-4
    """Actor learning rate (the paper: 1e-5; 1e-6 on Twenty Questions with GPT-2)."""
    batch_size: int = 16
    """Buffer states per actor update (each sampled `samples_per_state` times)."""
    updates_per_iter: int = 3
    """Actor updates per iteration, each on freshly sampled utterances (the paper: 3)."""
    epochs: int = 4
    """PPO only: passes over each update's samples. With one pass of one minibatch the ratio
    is 1 and the clip never acts. REINFORCE always makes one pass (its gradient is only
    unbiased on the samples of the weights that drew them)."""
    minibatches: int = 1
    """PPO only: optimizer steps per pass; each takes an equal share of the samples."""
    clip_eps: float = 0.2
    """PPO clip range epsilon."""
    kl_coef: float = 1.0
    """Weight of the KL penalty to the frozen reference (starting) policy; 0 disables it.
    With target_kl > 0 this is the starting weight of an adaptive controller."""
    target_kl: float = 0.0
    """Adaptive KL (Ziegler et al. 2019): after each actor phase the weight doubles when the
    measured token KL exceeds 1.5 x target_kl and halves below target_kl / 1.5; 0 keeps
    kl_coef fixed."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""
    normalize_advantages: bool = False
    """Standardise advantages over the batch before the loss."""
    samples_per_state: int = 4
    """Utterances sampled per buffer state in an actor update (batch_size states x this many)."""
    baseline: str = "group"
    """v: A = min Q - min V (the paper); group: A = min Q(s, a_k) minus the mean min Q of the
    other utterances sampled for the same state (needs samples_per_state >= 2), so critic
    errors shared by all actions of a state cancel."""

    @property
    def utterances_per_update(self) -> int:
        """Sampled utterances in one actor update: batch_size states x samples_per_state."""
        return self.batch_size * self.samples_per_state

    @property
    def passes(self) -> int:
        """Passes over each update's samples: `epochs` for PPO, 1 for REINFORCE."""
        return self.epochs if self.loss == "ppo" else 1

    @property
    def steps_per_pass(self) -> int:
        """Optimizer steps per pass: `minibatches` for PPO, 1 for REINFORCE."""
        return self.minibatches if self.loss == "ppo" else 1

    @property
    def rows_per_step(self) -> int:
        """Sampled utterances in one optimizer step."""
        return self.utterances_per_update // self.steps_per_pass

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("loss", self.loss, ("reinforce", "ppo"))
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        for key in ("batch_size", "epochs", "minibatches", "samples_per_state"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.updates_per_iter < 0:
            errors.append(("updates_per_iter", f"must be >= 0, got {self.updates_per_iter}"))
        if not 0 < self.clip_eps < 1:
            errors.append(("clip_eps", f"must be in (0, 1), got {self.clip_eps}"))
        if self.kl_coef < 0:
            errors.append(("kl_coef", f"must be >= 0, got {self.kl_coef}"))
        if self.target_kl < 0:
            errors.append(("target_kl", f"must be >= 0 (0 = fixed kl_coef), got {self.target_kl}"))
        if self.target_kl > 0 and self.kl_coef <= 0:
            errors.append(("target_kl", "needs kl_coef > 0 (the controller's starting weight)"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        errors += _choice("baseline", self.baseline, ("v", "group"))
        if self.baseline == "group" and self.samples_per_state < 2:
            errors.append(("baseline", "group needs samples_per_state >= 2 (it compares the "
                                       "utterances sampled for one state)"))
        if self.minibatches >= 1 and self.utterances_per_update % self.steps_per_pass:
            errors.append(("minibatches", f"must divide batch_size x samples_per_state "
                                          f"({self.utterances_per_update}), got {self.minibatches}"))
        return errors


@dataclass
class ArcherConfig:
    """ArCHer (Zhou et al. 2024): utterance-level off-policy critic, token-level actor."""

    warmup_iters: int = 3
    """Iterations of critic-only training before the actor starts (the paper: 10-20)."""
    critic: TDCriticConfig = field(default_factory=TDCriticConfig)
    actor: PGActorConfig = field(default_factory=PGActorConfig)
    fresh_samples: str = "learner"
    """Who samples the critic phase's fresh utterances (its V targets; most of ArCHer's
    generated text): learner, or rollout (one batched request split over the Ray rollout
    workers, which hold the same weights; needs rollout.num_workers > 0). Each row has its own
    seed, so both give the same utterances."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.warmup_iters < 0:
            errors.append(("warmup_iters", f"must be >= 0, got {self.warmup_iters}"))
        if self.fresh_samples not in ("learner", "rollout"):
            errors.append(("fresh_samples", f"must be one of ['learner', 'rollout'], got "
                                            f"{self.fresh_samples!r}"))
        errors += [(f"critic.{k}", m) for k, m in self.critic.check()]
        errors += [(f"actor.{k}", m) for k, m in self.actor.check()]
        return errors


@dataclass
class ChaiConfig:
    """CHAI: ArCHer's critic over the frozen starting policy; acting keeps the best of
    `candidates` sampled utterances by min Q of the target critic."""

    candidates: int = 5
    """Utterances sampled per turn (and per V-target state); the one with the highest
    min(Q1, Q2) of the target critic is played."""
    critic: TDCriticConfig = field(default_factory=TDCriticConfig)

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if self.candidates < 1:
            errors.append(("candidates", f"must be >= 1, got {self.candidates}"))
        errors += [(f"critic.{k}", m) for k, m in self.critic.check()]
        return errors


@dataclass
class AgroConfig:
    """AGRO: trajectory-level policy gradient on the regularised reward R - beta log(pi/pi_ref)
    with a per-task-id baseline, on this iteration's episodes and replayed ones."""

    lr: float = 1e-4
    """AdamW learning rate (as reinforce.lr)."""
    beta: float = 0.1
    """KL weight of the objective E[R] - beta KL(pi || pi_ref); pi_ref is the starting policy."""
    baseline: str = "mean"
    """mean: b is the mean regularised reward of the task id's episodes; loo: the mean of the
    other episodes of its task id."""
    replay_ratio: float = 0.5
    """Earlier episodes of the same task ids mixed in per episode of this iteration (0: on-
    policy only). They come from a store of buffer.capacity turns."""
    minibatches: int = 1
    """Optimizer steps per iteration, each on a share of the task-id groups."""
    micro_batches: int = 4
    """Forward/backward passes per step (the engine's accumulation)."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""
    offline: bool = False
    """Learn from the logged episodes of data.path instead of collecting (no rollouts; the
    reference is train.init_policy)."""
    groups_per_step: int = 8
    """agro.offline: task ids per optimizer step (a pass over the dataset per iteration)."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("baseline", self.baseline, ("mean", "loo"))
        if self.groups_per_step < 1:
            errors.append(("groups_per_step", f"must be >= 1, got {self.groups_per_step}"))
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        for key in ("beta", "replay_ratio"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        for key in ("minibatches", "micro_batches"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors


@dataclass
class BCConfig:
    """Behaviour cloning (SFT): token NLL on the agent's utterances of a dataset. It is also
    the warm start of an online run (on `collect`'s scripted episodes)."""

    lr: float = 2e-3
    """AdamW learning rate."""
    epochs: int = 6
    """Passes over the dataset of a warm start or `archer sft`; `algo=bc` makes one pass per
    loop iteration (train.iterations of them)."""
    batch_size: int = 32
    """Turns (prompt, utterance pairs) per optimizer step."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables clipping."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up steps, then cosine decay to 10% over all epochs."""
    min_return: float | None = None
    """Keep only episodes with return >= this; null keeps all."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.epochs < 1:
            errors.append(("epochs", f"must be >= 1, got {self.epochs}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.weight_decay < 0:
            errors.append(("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        if self.warmup_steps < 0:
            errors.append(("warmup_steps", f"must be >= 0, got {self.warmup_steps}"))
        return errors


@dataclass
class SwiftConfig:
    """Swift: reward-weighted fine-tuning with weights standardised per task id
    (archer/algorithms/swift.py)."""

    lr: float = 2e-3
    """AdamW learning rate (BC's: both start from the same place, a tiny model or
    train.init_policy)."""
    batch_size: int = 8
    """Episodes per optimizer step (all their agent turns)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables clipping."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up steps, then cosine decay to 10% over the run (as BC)."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        for key in ("weight_decay", "grad_clip", "warmup_steps"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        return errors


@dataclass
class RefitConfig(SwiftConfig):
    """Refit: reward-weighted fine-tuning, weight (R + reward_shift) x reward_scale in [0, 1]
    (archer/algorithms/refit.py)."""

    reward_shift: float = 0.0
    """Added to every episode return before scaling."""
    reward_scale: float = 1.0
    """Multiplies the shifted return; the weight must land in [0, 1] (else a DatasetError
    naming the episode). Twenty Questions (subset) returns run from -20 to -1:
    reward_shift=20 reward_scale=0.05."""
    allow_negative: bool = False
    """Let weights below 0 through (they push an utterance's likelihood down, without a floor)."""

    def check(self) -> list[tuple[str, str]]:
        errors = super().check()
        if not self.reward_scale > 0:
            errors.append(("reward_scale", f"must be > 0, got {self.reward_scale}"))
        return errors


@dataclass
class DPOConfig:
    """DPO on logged episodes: (higher, lower)-return pairs of the same task id against the
    frozen starting policy (archer/algorithms/dpo.py)."""

    beta: float = 0.1
    """Inverse temperature of the implicit reward beta log(pi / pi_ref)."""
    lr: float = 1e-4
    """AdamW learning rate (a fine-tuning rate: DPO starts from a trained policy)."""
    batch_size: int = 8
    """Pairs per optimizer step: one forward in the driver; in a learner group, micro-batches
    of `deepspeed.micro_batch_size` pairs shared over the ranks."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables clipping."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        for key in ("beta", "lr"):
            if not getattr(self, key) > 0:
                errors.append((key, f"must be > 0, got {getattr(self, key)}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors


@dataclass
class ILQLConfig:
    """ILQL: implicit language Q-learning on a dataset, two Q heads over the vocabulary, their
    Polyak targets and a V head on the policy's hidden states (archer/algorithms/ilql.py)."""

    lr: float = 2e-3
    """AdamW learning rate of the policy and its heads (BC's: the policy starts where BC's
    does, a tiny model or train.init_policy; the reference's 1e-4 is for a pretrained LM)."""
    batch_size: int = 8
    """Episodes per optimizer step (all their agent turns, scored in one forward)."""
    gamma: float = 0.99
    """Discount per agent token (environment text is skipped, as in token PPO's GAE)."""
    expectile: float = 0.7
    """tau of V's expectile regression toward min of the target Qs (0.5: the mean)."""
    cql_weight: float = 0.1
    """Weight of the conservatism term logsumexp_a' Q(s, a') - Q(s, a), per Q head."""
    awac_weight: float = 1.0
    """Weight of the token NLL on the dataset's utterances (keeps the LM head pi_bc, which
    value-guided decoding adds the advantage to)."""
    awac_beta: float = 0.0
    """0: that NLL is plain BC; > 0: AWAC, each token weighted by exp(awac_beta (min Q - V)),
    capped at awac_max_weight."""
    awac_max_weight: float = 100.0
    """Cap of the AWAC weight."""
    polyak: float = 0.005
    """Target Q heads move this fraction toward the Q heads after every step (the reference
    code calls it alpha)."""
    decoding: str = "guided"
    """How the trained policy acts in the run's evaluations: guided (value-guided decoding,
    log pi + beta (min Q - V), then top-k) or policy (the LM head alone)."""
    beta: float = 4.0
    """Decoding: weight of the advantage (reference range 1-16)."""
    top_k: int = 20
    """Decoding: tokens kept after the guidance."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables clipping."""
    warmup_steps: int = 20
    """Linear learning-rate warm-up steps, then cosine decay to 10% over the run (as BC)."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if not 0 <= self.gamma <= 1:
            errors.append(("gamma", f"must be in [0, 1], got {self.gamma}"))
        if not 0 < self.expectile < 1:
            errors.append(("expectile", f"must be in (0, 1), got {self.expectile}"))
        if not 0 < self.polyak <= 1:
            errors.append(("polyak", f"must be in (0, 1], got {self.polyak}"))
        if self.decoding not in ("guided", "policy"):
            errors.append(("decoding", f"must be guided or policy, got {self.decoding!r}"))
        if self.top_k < 1:
            errors.append(("top_k", f"must be >= 1, got {self.top_k}"))
        if not self.awac_max_weight > 0:
            errors.append(("awac_max_weight", f"must be > 0, got {self.awac_max_weight}"))
        for key in ("cql_weight", "awac_weight", "awac_beta", "beta", "weight_decay",
                    "grad_clip", "warmup_steps"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        return errors


@dataclass
class AWRActorConfig:
    """Offline ArCHer's actor: advantage-weighted regression on the dataset's utterances."""

    lr: float = 2e-3
    """AdamW learning rate (BC's: the policy starts where BC's does; the reference's 1e-4 is
    for a pretrained LM)."""
    batch_size: int = 32
    """Dataset turns per step."""
    updates_per_iter: int | None = None
    """Actor steps per iteration; null: one pass over the dataset's turns (as a BC epoch)."""
    beta: float = 1.0
    """Inverse temperature of the weights exp(beta A)."""
    max_weight: float = 20.0
    """Cap of exp(beta A)."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        for key in ("lr", "max_weight"):
            if not getattr(self, key) > 0:
                errors.append((key, f"must be > 0, got {getattr(self, key)}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.updates_per_iter is not None and self.updates_per_iter < 0:
            errors.append(("updates_per_iter", f"must be >= 0 or null, got "
                                               f"{self.updates_per_iter}"))
        for key in ("beta", "grad_clip"):
            if getattr(self, key) < 0:
                errors.append((key, f"must be >= 0, got {getattr(self, key)}"))
        return errors


@dataclass
class OfflineArcherConfig:
    """Offline ArCHer: ArCHer's critic with an expectile V on the dataset's actions (IQL) and an
    AWR actor (archer/algorithms/offline_archer.py)."""

    critic: TDCriticConfig = field(default_factory=lambda: TDCriticConfig(updates_per_iter=50))
    """The critic's training: ArCHer's settings, 50 steps of 64 dataset transitions per
    iteration."""
    expectile: float = 0.9
    """tau of V's expectile regression toward min Qbar(s, a) on the dataset's action."""
    warmup_iters: int = 1
    """Iterations of critic training before the actor's first step."""
    actor: AWRActorConfig = field(default_factory=AWRActorConfig)
    """The AWR actor."""

    def check(self) -> list[tuple[str, str]]:
        errors = [(f"critic.{k}", m) for k, m in self.critic.check()]
        errors += [(f"actor.{k}", m) for k, m in self.actor.check()]
        if not 0 < self.expectile < 1:
            errors.append(("expectile", f"must be in (0, 1), got {self.expectile}"))
        if self.warmup_iters < 0:
            errors.append(("warmup_iters", f"must be >= 0, got {self.warmup_iters}"))
        return errors


@dataclass
class ReinforceConfig:
    """Trajectory-level REINFORCE / GRPO: the whole episode's utterances are one response with
    the episode's return (single-turn RL, no critic)."""

    lr: float = 1e-4
    """AdamW learning rate (the same default as archer.actor.lr)."""
    baseline: str = "group"
    """group: (R - mean) / std over this iteration's episodes of the same task id (GRPO;
    needs rollout.group_size >= 2); loo: R minus the mean of the other episodes of its task id
    (RLOO; group_size >= 2); running: R minus an exponential moving average of the returns of
    earlier iterations (any env, group_size 1 is fine)."""
    scale_by_std: bool = True
    """group only: divide by the group's standard deviation (GRPO); false keeps R - mean
    (Dr. GRPO's choice)."""
    running_decay: float = 0.9
    """running only: b <- decay * b + (1 - decay) * mean(R of the iteration), after the update."""
    normalize: str = "episodes"
    """The loss normaliser of a step: episodes (each episode's summed log-prob weighs the same,
    the REINFORCE estimator) or tokens (a mean over all agent tokens of the step, as GRPO
    implementations do; long episodes weigh more)."""
    minibatches: int = 1
    """Optimizer steps per iteration, each on an equal share of the iteration's episodes (the
    later ones are slightly off-policy: no ratio corrects them)."""
    micro_batches: int = 4
    """Forward/backward passes per step (the engine's accumulation): a step's turns, however
    many, are split into this many near-equal parts. Raise it to bound memory."""
    kl_coef: float = 1.0
    """Weight of the k3 KL penalty to the frozen starting policy (as archer.actor.kl_coef);
    0 disables it."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("baseline", self.baseline, ("group", "loo", "running"))
        errors += _choice("normalize", self.normalize, ("episodes", "tokens"))
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if not 0.0 <= self.running_decay < 1.0:
            errors.append(("running_decay", f"must be in [0, 1), got {self.running_decay}"))
        for key in ("minibatches", "micro_batches"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.kl_coef < 0:
            errors.append(("kl_coef", f"must be >= 0, got {self.kl_coef}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors


@dataclass
class FilteredBCConfig:
    """Filtered BC: NLL on the agent utterances of the best episodes collected so far."""

    percentile: float = 90.0
    """Keep the episodes whose return is at or above this percentile of all episodes so far."""
    lr: float = 1e-4
    """AdamW learning rate."""
    batch_size: int = 32
    """Agent turns per optimizer step, drawn uniformly from the kept episodes' turns."""
    updates_per_iter: int = 4
    """Optimizer steps per iteration."""
    grad_clip: float = 1.0
    """Max global grad norm; 0 disables."""

    def check(self) -> list[tuple[str, str]]:
        errors = []
        if not 0.0 <= self.percentile <= 100.0:
            errors.append(("percentile", f"must be in [0, 100], got {self.percentile}"))
        if not self.lr > 0:
            errors.append(("lr", f"must be > 0, got {self.lr}"))
        if self.batch_size < 1:
            errors.append(("batch_size", f"must be >= 1, got {self.batch_size}"))
        if self.updates_per_iter < 0:
            errors.append(("updates_per_iter", f"must be >= 0, got {self.updates_per_iter}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors


@dataclass
class TokenPPOConfig:
    """Token-level PPO: every agent token is an action, GAE over agent tokens only."""

    lr: float = 1e-4
    """Policy AdamW learning rate (as archer.actor.lr)."""
    value_lr: float = 1e-4
    """Value model AdamW learning rate (value_model=separate; a shared head trains at lr)."""
    value_model: str = "separate"
    """separate: the value model is a copy of the starting policy's transformer with a scalar
    head, trained by its own optimizer (the usual RLHF choice). shared: a scalar head on the
    policy's last hidden state, trained in the policy's step on policy loss + value_coef x
    value loss (half the memory and compute of a second transformer; the two losses share
    the trunk's gradient)."""
    value_coef: float = 0.1
    """Weight of the value loss in the policy's step (value_model=shared only). The value
    loss's gradient reaches the logits through the shared trunk, unclipped by the ratio clip;
    0.1 is TRL's choice for its value head on the policy (at 0.5 a SayYes test run learned,
    then collapsed)."""
    gamma: float = 1.0
    """Discount per agent token."""
    lam: float = 0.95
    """GAE lambda."""
    epochs: int = 4
    """Passes over the iteration's turns (then they are dropped: strictly on-policy)."""
    minibatches: int = 2
    """Optimizer steps per pass (policy and value each), over a fresh permutation of turns."""
    micro_batches: int = 4
    """Forward/backward passes per step: a minibatch's turns split into this many parts."""
    clip_eps: float = 0.2
    """Policy ratio clip range."""
    value_clip: float = 0.2
    """Value clip range around the values at collection time; 0 disables value clipping."""
    normalize_advantages: bool = True
    """Whiten the token advantages over the iteration's agent tokens."""
    kl_coef: float = 1.0
    """k3 KL penalty to the frozen starting policy (as archer.actor.kl_coef); 0 disables."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus: the loss subtracts entropy_coef x the mean entropy of
    pi_T(.|prefix) over the step's agent tokens (full vocabulary); 0 disables."""
    grad_clip: float = 1.0
    """Max global grad norm for the policy and for the value model; 0 disables."""

    def check(self) -> list[tuple[str, str]]:
        errors = _choice("value_model", self.value_model, ("separate", "shared"))
        for key in ("lr", "value_lr", "value_coef"):
            if not getattr(self, key) > 0:
                errors.append((key, f"must be > 0, got {getattr(self, key)}"))
        for key in ("gamma", "lam"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                errors.append((key, f"must be in [0, 1], got {getattr(self, key)}"))
        for key in ("epochs", "minibatches", "micro_batches"):
            if getattr(self, key) < 1:
                errors.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if not 0 < self.clip_eps < 1:
            errors.append(("clip_eps", f"must be in (0, 1), got {self.clip_eps}"))
        if self.value_clip < 0:
            errors.append(("value_clip", f"must be >= 0 (0 disables), got {self.value_clip}"))
        if self.kl_coef < 0:
            errors.append(("kl_coef", f"must be >= 0, got {self.kl_coef}"))
        if self.entropy_coef < 0:
            errors.append(("entropy_coef", f"must be >= 0, got {self.entropy_coef}"))
        if self.grad_clip < 0:
            errors.append(("grad_clip", f"must be >= 0 (0 disables), got {self.grad_clip}"))
        return errors
