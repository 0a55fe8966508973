"""Every setting of the package in one place: frozen, typed dataclasses defaulted to the paper.

Defaults follow DIGER (arXiv 2601.19711) section 5 "Implementation Details" and the issue specs.
Each dataclass validates itself in ``__post_init__`` and raises ``ConfigError`` naming the field.
``from_flat(cls, params)`` builds a config from a flat dict (papermill parameters) and rejects
unknown keys with a "did you mean" hint.
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration value is unknown, misspelt or out of range."""


# ----------------------------------------------------------------------------------------------
# Enums: how a code is chosen (section 4.1/4.2 and the ablations of Table 4)
# ----------------------------------------------------------------------------------------------
class Method(str, enum.Enum):
    TWO_STAGE = "two_stage"  # TIGER: frozen semantic IDs (section 6.1)
    STE = "ste"  # naive joint training, argmax + straight-through, hard update (Fig. 3)
    DIGER = "diger"  # DRIL (Eq. 5-8) + optional uncertainty decay (Eq. 9-13)
    MOST_POPULAR = "most_popular"  # popularity floor, not in the paper
    MARKOV1 = "markov1"  # first-order transition floor (the last item's most frequent successors), not in the paper
    UNIGREC = "unigrec"  # UniGRec (arXiv 2601.17438): soft identifiers, annealed tau, L_CU, dual distillation

    @property
    def trains(self) -> bool:
        """False for the floors: they count the training sequences, there is no model, tokenizer or checkpoint."""
        return self.value not in FLOOR_METHODS


FLOOR_METHODS = ("most_popular", "markov1")  # Method values that train nothing (outputs, reproduce and profiles read them)


class Noise(str, enum.Enum):
    GUMBEL = "gumbel"  # Eq. 6
    GAUSSIAN = "gaussian"  # Table 4 "-w Gaussian Noise"
    NONE = "none"  # Table 4 "-w/o Gumbel Noise"


class Update(str, enum.Enum):
    SOFT = "soft"  # Eq. 8: gradient through the Gumbel-softmax mixture to every codebook row
    HARD = "hard"  # gradient only to the selected row (STE, Table 4 "-w/o soft update")


class Decay(str, enum.Enum):
    NONE = "none"  # DIGER w/o UD
    SDUD = "sdud"  # Eq. 9, learned noise scale sigma
    FRQUD = "frqud"  # Eq. 10-13, noise only on hot codes
    SDUD_FRQUD = "sdud+frqud"
    TAU_ANNEAL = "tau_anneal"  # Table 4 "-w Gumbel tau annealing" instead of UD


class Sim(str, enum.Enum):
    """Scale of the Eq. 5 logits (the paper gives sim but not its scale; README note 5)."""
    DISTANCE = "distance"  # -||r - e||^2, the RQ-VAE's own distance
    GAUSSIAN = "gaussian"  # -||r - e||^2 / (2 s^2), s^2 the batch's mean squared quantisation error per dimension
    MINMAX = "minmax"  # distances rescaled to [-1, 1] over the batch (the authors' public code), logits = -d


class VQCodes(str, enum.Enum):
    DETERMINISTIC = "deterministic"  # L_vq / L_recon on the nearest codes (the standard RQ-VAE losses)
    SAMPLED = "sampled"  # on the noisy forward codes


class FrqudMode(str, enum.Enum):
    PER_CODE = "per_code"  # Eq. 13 literally: noise on the hot codes' logits only (epoch EMA, Eq. 10)
    PER_ITEM = "per_item"  # the authors' code: an item whose level-1 code is hot gets noise on every logit of
    #                        every level, other items are assigned deterministically (per-step EMA of batch targets)


class Labels(str, enum.Enum):
    SAMPLED = "sampled"  # the recommender reads and predicts the step's sampled (noisy) IDs
    DETERMINISTIC = "deterministic"  # ... the per-epoch table of deterministic IDs (the authors' trainer)


class EvalIDs(str, enum.Enum):
    REFRESHED = "refreshed"  # validation/test read the tokenizer's IDs after the epoch (new IDs the recommender never saw)
    TRAINED = "trained"  # ... the table the recommender trained on in that epoch (labels="deterministic"); the refreshed
    #                      IDs become the next epoch's table


class Coupling(str, enum.Enum):
    GRADIENT = "gradient"  # L_gen reaches the tokenizer through W_j e_hat (README note 4)
    NONE = "none"  # the authors' public code: the recommender reads tokens only; the tokenizer learns from L_vq + L_recon
    # the authors' later "true end-to-end" code (junchen-fu/DIGER @ 577e65e, cached_hard_straight_through): the
    # recommender reads its own token embeddings of the hard tokens (forward exactly Two-Stage's); the backward goes
    # through the Gumbel-softmax probabilities (Eq. 6, 8) on the history, the decoder inputs and the labels
    EMBEDDINGS = "embeddings"


class TokenizerTrain(str, enum.Enum):
    ALL = "all"  # encoder and codebooks
    CODEBOOKS = "codebooks"  # encoder frozen (the authors' run_FrqUD.sh)
    LAST_LAYER = "last_layer"  # last encoder layer + codebooks (the authors' run_SDUD.sh freezes the others)
    NONE = "none"  # frozen tokenizer (the study's control; same as tokenizer_lr=0)


class ProjInit(str, enum.Enum):
    RANDOM = "random"  # nn.Linear's default
    ZERO = "zero"  # W = 0: joint training starts exactly as Two-Stage


class IDSource(str, enum.Enum):
    """Where Two-Stage's frozen semantic IDs come from (notebook 04's `ids`)."""
    OURS = "ours"  # our RQ-VAE tokenizer (notebook 03); joint methods always train it
    LETTER = "letter"  # LETTER's published NAME.index.json (Two-Stage only: no tokenizer to train)


class LRSchedule(str, enum.Enum):
    CONSTANT = "constant"  # linear warm-up over warmup_steps (0 = none), then constant
    WARMUP_COSINE = "warmup_cosine"  # linear warm-up, then cosine decay to 0 over the configured epochs


class AMP(str, enum.Enum):
    """Mixed precision of the recommender's forward passes (training and beam search); losses, the tokenizer, the
    Gumbel sampling, metrics and checkpoints stay fp32 (``runtime.autocast_dtype`` decides)."""
    AUTO = "auto"  # bf16 autocast on a CUDA device with native bf16, none elsewhere (CPU results unchanged)
    OFF = "off"  # fp32 everywhere
    BF16 = "bf16"  # bf16 autocast; refused where the device has no native bf16 (CPU, MPS, CUDA before Ampere)


class UniGRecPart(str, enum.Enum):
    """UniGRec's components (its section 3); each M-variant of its Table 3 is a set of them."""
    SOFT = "soft"  # soft identifiers (Eq. 14-15) with stage-1 soft pretraining and annealed tau (Eq. 16)
    JOINT = "joint"  # stage 2 also trains the tokenizer through the soft identifiers, + lambda_Recon L_Recon (Eq. 22)
    CU = "cu"  # codeword uniformity L_CU in stage 1 (Eq. 17, 21)
    CDT = "cdt"  # tokenizer-side collaborative distillation L_CD^T (Eq. 18)
    CDR = "cdr"  # recommender-side collaborative distillation L_CD^R (Eq. 19-20)


class UniGRecVariant(str, enum.Enum):
    """The rows of UniGRec's ablation (Table 3, section 4.3); ``custom`` takes the parts from ``components``."""
    M0 = "M0"  # TIGER: hard IDs of the notebook-03 tokenizer, frozen (our Two-Stage)
    M1 = "M1"  # M0 + soft identifier (tokenizer frozen after stage 1)
    M2 = "M2"  # M1 + joint training
    M3 = "M3"  # M2 + L_CU
    M4 = "M4"  # M3 + L_CD^T
    M5 = "M5"  # M3 + L_CD^R
    M6 = "M6"  # UniGRec (full): M3 + L_CD^T + L_CD^R
    CUSTOM = "custom"


_P = UniGRecPart
VARIANT_PARTS: dict[UniGRecVariant, frozenset[UniGRecPart]] = {
    UniGRecVariant.M0: frozenset(),
    UniGRecVariant.M1: frozenset({_P.SOFT}),
    UniGRecVariant.M2: frozenset({_P.SOFT, _P.JOINT}),
    UniGRecVariant.M3: frozenset({_P.SOFT, _P.JOINT, _P.CU}),
    UniGRecVariant.M4: frozenset({_P.SOFT, _P.JOINT, _P.CU, _P.CDT}),
    UniGRecVariant.M5: frozenset({_P.SOFT, _P.JOINT, _P.CU, _P.CDR}),
    UniGRecVariant.M6: frozenset({_P.SOFT, _P.JOINT, _P.CU, _P.CDT, _P.CDR}),
}


def _enum(enum_cls: type[enum.Enum], value: Any, name: str) -> enum.Enum:
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_cls)
        raise ConfigError(f"{name}={value!r} is not one of {allowed}") from None


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


# ----------------------------------------------------------------------------------------------
# Dataclasses
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    dataset: str = "Beauty"  # folder name under data_root holding NAME.inter.json
    data_root: str = "data"  # where setup links the dataset files (git-ignored)
    max_history: int = 20  # section 5: history of at most 20 items
    min_interactions: int = 5  # 5-core filter (checked, not re-applied, for the shipped datasets)

    def __post_init__(self) -> None:
        _check(bool(self.dataset) and "/" not in self.dataset, f"dataset={self.dataset!r} must be a folder name")
        _check(self.max_history >= 1, f"max_history={self.max_history} must be >= 1 (history length 0 leaves nothing to read)")
        _check(self.min_interactions >= 3, f"min_interactions={self.min_interactions} must be >= 3 (leave-one-out needs train/valid/test)")


@dataclass(frozen=True)
class RQVAEConfig:
    codebook_size: int = 256  # K (section 5)
    n_levels: int = 3  # m (section 5); a 4th conflict code is appended afterwards
    code_dim: int = 32  # codebook vector size (LETTER/TIGER use 32)
    hidden_dims: tuple[int, ...] = (512, 256, 128)  # MLP encoder widths; decoder mirrors them
    beta: float = 0.25  # commitment weight in L_vq (section 4.3, following [22, 35])
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 200
    batch_size: int = 1024
    kmeans_iters: int = 50  # k-means initialisation of each level's codebook
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        _check(self.codebook_size >= 2, f"codebook_size (K)={self.codebook_size} must be >= 2")
        _check(self.n_levels >= 1, f"n_levels (m)={self.n_levels} must be >= 1")
        _check(self.code_dim >= 1, f"code_dim={self.code_dim} must be >= 1")
        _check(self.lr > 0, f"rqvae lr={self.lr} must be > 0")
        _check(self.epochs >= 0, f"rqvae epochs={self.epochs} must be >= 0")
        _check(self.batch_size >= 1, f"rqvae batch_size={self.batch_size} must be >= 1")
        _check(0.0 <= self.dropout < 1.0, f"rqvae dropout={self.dropout} must be in [0, 1)")


@dataclass(frozen=True)
class RecommenderConfig:
    """T5-style encoder-decoder (section 5; the authors' config: 4 heads of 64, d_ff 512, dropout 0.1)."""

    d_model: int = 128
    n_heads: int = 4
    d_kv: int = 64
    d_ff: int = 512
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1
    rel_buckets: int = 32  # T5 relative-position buckets
    rel_max_distance: int = 128
    tie_embeddings: bool = True  # T5's default (LETTER's TIGER): output layer = input table, logits * d**-0.5

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_kv", "d_ff", "n_encoder_layers", "n_decoder_layers", "rel_buckets"):
            _check(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be >= 1")
        _check(0.0 <= self.dropout < 1.0, f"dropout={self.dropout} must be in [0, 1)")


@dataclass(frozen=True)
class AssignConfig:
    """How the tokenizer picks a code during joint training (section 4)."""

    noise: Noise = Noise.GUMBEL
    update: Update = Update.SOFT
    decay: Decay = Decay.NONE
    tau: float = 2.0  # Gumbel-softmax temperature (section 5: tuned, set to 2.0)
    sdud_lambda: float = 1.4  # lambda in Eq. 9 (grid {1.0,1.2,1.4,1.8,2.0})
    sdud_sigma_init: float = 1.0  # initial Gumbel scale sigma
    sdud_lr: float = 1e-2  # learning rate of sigma (plain SGD on L_sigma)
    frqud_r: float = 1.5  # hot-code threshold ratio r in Eq. 11
    frqud_beta: float = 0.25  # EMA factor beta in Eq. 10 (section 5: "beta to 0.25")
    tau_anneal_min: float = 0.1  # "-w Gumbel tau annealing": tau decays exponentially to this
    tau_anneal_rate: float = 0.3  # per-epoch exponential rate
    sim: Sim = Sim.DISTANCE  # scale of the Eq. 5 logits (see Sim)
    vq_codes: VQCodes = VQCodes.DETERMINISTIC  # codes L_vq / L_recon use in joint training
    frqud_mode: FrqudMode = FrqudMode.PER_CODE  # how FrqUD applies the noise (see FrqudMode)
    frqud_momentum: float = 0.99  # per_item: per-step EMA momentum of the level-1 code frequencies (authors' code)

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise", _enum(Noise, self.noise, "noise"))
        object.__setattr__(self, "update", _enum(Update, self.update, "update"))
        object.__setattr__(self, "decay", _enum(Decay, self.decay, "decay"))
        _check(self.tau > 0, f"tau={self.tau} must be > 0")
        _check(self.sdud_lambda > 0, f"sdud_lambda={self.sdud_lambda} must be > 0 (Eq. 9)")
        _check(self.sdud_sigma_init >= 0, f"sdud_sigma_init={self.sdud_sigma_init} must be >= 0")
        _check(self.sdud_lr > 0, f"sdud_lr={self.sdud_lr} must be > 0")
        _check(self.frqud_r > 0, f"frqud_r={self.frqud_r} must be > 0 (Eq. 11)")
        _check(0.0 <= self.frqud_beta < 1.0, f"frqud_beta={self.frqud_beta} must be in [0, 1) (Eq. 10)")
        _check(0 < self.tau_anneal_min <= self.tau, f"tau_anneal_min={self.tau_anneal_min} must be in (0, tau]")
        object.__setattr__(self, "sim", _enum(Sim, self.sim, "sim"))
        object.__setattr__(self, "vq_codes", _enum(VQCodes, self.vq_codes, "vq_codes"))
        object.__setattr__(self, "frqud_mode", _enum(FrqudMode, self.frqud_mode, "frqud_mode"))
        _check(0.0 <= self.frqud_momentum < 1.0, f"frqud_momentum={self.frqud_momentum} must be in [0, 1)")


@dataclass(frozen=True)
class JointConfig:
    """How tokenizer and recommender are coupled in joint training (issue "DIGER that reproduces its paper")."""

    labels: Labels = Labels.SAMPLED  # which IDs the recommender reads and predicts
    coupling: Coupling = Coupling.GRADIENT  # whether L_gen reaches the tokenizer
    tokenizer_train: TokenizerTrain = TokenizerTrain.ALL  # which tokenizer parameters the tokenizer optimiser moves
    proj_init: ProjInit = ProjInit.RANDOM  # initialisation of the projections W_j
    eval_ids: EvalIDs = EvalIDs.REFRESHED  # which IDs validation and test read
    # section 4.3 trains the tokenizer on L_gen + L_vq + L_recon; False leaves L_gen alone (a diagnostic: is the drift
    # L_gen's or the tokenizer's own losses'?)
    tokenizer_losses: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _enum(Labels, self.labels, "labels"))
        object.__setattr__(self, "eval_ids", _enum(EvalIDs, self.eval_ids, "eval_ids"))
        _check(self.eval_ids is EvalIDs.REFRESHED or self.labels is Labels.DETERMINISTIC,
               f"eval_ids='{self.eval_ids.value}' needs labels='deterministic' (with sampled labels the recommender "
               f"trains on no single table)")
        object.__setattr__(self, "coupling", _enum(Coupling, self.coupling, "coupling"))
        object.__setattr__(self, "tokenizer_train", _enum(TokenizerTrain, self.tokenizer_train, "tokenizer_train"))
        object.__setattr__(self, "proj_init", _enum(ProjInit, self.proj_init, "proj_init"))
        _check(isinstance(self.tokenizer_losses, bool),
               f"tokenizer_losses={self.tokenizer_losses!r} must be True or False")
        _check(self.tokenizer_losses or self.coupling is not Coupling.NONE,
               "tokenizer_losses=False with coupling='none' leaves the tokenizer no loss to learn from")


@dataclass(frozen=True)
class UniGRecConfig:
    """UniGRec (arXiv 2601.17438) as notebook 04's ``method="unigrec"``; defaults from its section 4.1 (notebook
    parameters ``unigrec_<field>``). Which components run is ``variant`` (Table 3) or, for ``custom``,
    ``components``; ``parts`` is the resolved set."""

    variant: UniGRecVariant = UniGRecVariant.M6  # M0 ... M6 (Table 3) or custom
    components: str = ""  # custom only: comma-separated parts (soft, joint, cu, cdt, cdr)
    tau_max: float = 0.01  # Eq. 16 start (grid {0.01, 0.05}; section 4.4.1 anneals 0.01 -> 0.001 on Beauty)
    tau_min: float = 0.001  # Eq. 16 end, then fixed through stage 2
    pre_epochs: int = 100  # stage 1 (tokenizer pretraining, Eq. 21) epochs over the catalogue; tau anneals over them
    pre_batch_size: int = 1024  # section 4.1
    pre_lr: float = 1e-4  # section 4.1 has 1e-3 from scratch; stage 1 here starts from notebook 03's trained
    #                       tokenizer, where 1e-3 raised Beauty's collision rate from 5.4% to 15-28% (README, UniGRec)
    lambda_cu: float = 1e-4  # Eq. 21 (section 4.1)
    lambda_recon: float = 0.5  # Eq. 22 (section 4.1)
    lambda_cdt: float = 0.01  # Eq. 22, grid {0.01, 0.05, 0.1, 0.5, 1.0}; the authors' run script: 0.01
    lambda_cdr: float = 0.1  # Eq. 22, same grid; the authors' run script: 0.1
    cdt_tau: float = 1.0  # temperature of the Eq. 18 assignment distributions (the authors' code: unit-scale logits)
    infonce_tau: float = 0.07  # tau' of Eq. 19-20 (section 4.1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", _enum(UniGRecVariant, self.variant, "unigrec_variant"))
        _check(self.tau_min > 0, f"unigrec_tau_min={self.tau_min} must be > 0 (Eq. 14 divides by tau)")
        _check(self.tau_max >= self.tau_min, f"unigrec_tau_max={self.tau_max} must be >= unigrec_tau_min={self.tau_min} (Eq. 16 anneals down)")
        _check(self.pre_epochs >= 0, f"unigrec_pre_epochs={self.pre_epochs} must be >= 0 (0 skips stage 1)")
        _check(self.pre_batch_size >= 1, f"unigrec_pre_batch_size={self.pre_batch_size} must be >= 1")
        _check(self.pre_lr > 0, f"unigrec_pre_lr={self.pre_lr} must be > 0")
        for name in ("lambda_cu", "lambda_recon", "lambda_cdt", "lambda_cdr"):
            _check(getattr(self, name) >= 0, f"unigrec_{name}={getattr(self, name)} must be >= 0")
        _check(self.cdt_tau > 0, f"unigrec_cdt_tau={self.cdt_tau} must be > 0")
        _check(self.infonce_tau > 0, f"unigrec_infonce_tau={self.infonce_tau} must be > 0 (tau' of Eq. 19)")
        parts = self._resolve_parts()
        object.__setattr__(self, "_parts", parts)
        for part, weight in ((UniGRecPart.CU, "lambda_cu"), (UniGRecPart.CDT, "lambda_cdt"), (UniGRecPart.CDR, "lambda_cdr")):
            _check(part not in parts or getattr(self, weight) > 0,
                   f"unigrec_{weight}=0 switches {part.value!r} off; choose a variant without it instead")

    @property
    def parts(self) -> frozenset[UniGRecPart]:
        """The components this configuration runs."""
        return self._parts

    def _resolve_parts(self) -> frozenset[UniGRecPart]:
        if self.variant is not UniGRecVariant.CUSTOM:
            _check(not self.components.strip(), f"unigrec_components={self.components!r} only applies to "
                   f"unigrec_variant='custom' (variant {self.variant.value} fixes its components)")
            return VARIANT_PARTS[self.variant]
        names = [c.strip() for c in self.components.split(",") if c.strip()]
        _check(bool(names), "unigrec_variant='custom' needs unigrec_components, e.g. 'soft,joint,cdr'")
        parts = frozenset(_enum(UniGRecPart, n, "unigrec_components entry") for n in names)
        _check(UniGRecPart.SOFT in parts, f"unigrec_components={self.components!r}: every component builds on 'soft' "
               "(without it the run is M0, Two-Stage)")
        return parts

    def has(self, part: UniGRecPart) -> bool:
        return part in self.parts


# TrainConfig fields that do not enter a run's checkpoint fingerprint: changing them continues the same run.
# `epochs` and `time_budget_minutes` only say how long to train; `device`, `eval_batch_size`,
# `micro_batch_size` and `amp` only say how to compute (the same results up to float rounding, and, for
# `micro_batch_size`, other dropout draws; `amp` changes nothing on CPU).
NOT_FINGERPRINTED = ("device", "epochs", "time_budget_minutes", "eval_batch_size", "micro_batch_size", "amp")


@dataclass(frozen=True)
class TrainConfig:
    method: Method = Method.TWO_STAGE
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    patience: int = 10  # epochs without validation NDCG@10 improvement
    batch_size: int = 256
    lr: float = 1e-3  # recommender learning rate (grid {0.01, 0.005, 0.001, 0.0005})
    tokenizer_lr: float = 1e-4  # joint methods only (grid {1e-4, 1e-5, 5e-5, 1e-6}); 0 freezes the tokenizer
    weight_decay: float = 0.05  # AdamW (section 5)
    warmup_steps: int = 0
    lr_schedule: LRSchedule = LRSchedule.CONSTANT  # both optimisers (the authors' config: 500 warm-up steps + cosine)
    grad_clip: float = 1.0
    beam_size: int = 20
    topk: int = 10
    eval_batch_size: int = 64  # users per beam search call (speed only; 64 keeps a step's activations in cache)
    micro_batch_size: int = 128  # samples per forward/backward pass (speed only: gradients sum to the batch's); 0 = all
    max_eval_users: int = 0  # 0 = every user; >0 evaluates validation on a fixed subsample
    samples_per_epoch: int = 0  # 0 = every training sample per epoch; >0 = a fresh seeded subset of this size
    time_budget_minutes: float = 0.0  # 0 = none; >0 = start no epoch that would end past this wall time (per call)
    seed: int = 2026
    device: str = "auto"
    amp: AMP = AMP.AUTO  # bf16 autocast of the recommender's forward passes: auto (CUDA with native bf16) | off | bf16

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", _enum(Method, self.method, "method"))
        object.__setattr__(self, "amp", _enum(AMP, self.amp, "amp"))
        _check(self.epochs >= 0, f"epochs={self.epochs} must be >= 0")
        _check(self.patience >= 1, f"patience={self.patience} must be >= 1")
        _check(self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1")
        _check(self.lr > 0, f"lr={self.lr} must be > 0 (a negative learning rate ascends the loss)")
        object.__setattr__(self, "lr_schedule", _enum(LRSchedule, self.lr_schedule, "lr_schedule"))
        _check(self.tokenizer_lr >= 0, f"tokenizer_lr={self.tokenizer_lr} must be >= 0 (0 freezes the tokenizer)")
        _check(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps} must be >= 0")
        _check(self.weight_decay >= 0, f"weight_decay={self.weight_decay} must be >= 0")
        _check(self.eval_batch_size >= 1, f"eval_batch_size={self.eval_batch_size} must be >= 1")
        _check(self.micro_batch_size >= 0, f"micro_batch_size={self.micro_batch_size} must be >= 0")
        _check(self.topk >= 1, f"topk={self.topk} must be >= 1")
        _check(self.samples_per_epoch >= 0, f"samples_per_epoch={self.samples_per_epoch} must be >= 0")
        _check(self.time_budget_minutes >= 0, f"time_budget_minutes={self.time_budget_minutes} must be >= 0")
        _check(self.max_eval_users >= 0, f"max_eval_users={self.max_eval_users} must be >= 0")
        _check(self.beam_size >= self.topk, f"beam_size={self.beam_size} must be >= topk={self.topk} (a beam cannot return more items than it keeps)")
        _check(self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"), f"device={self.device!r} must be auto, cpu, cuda[:N] or mps")


# ----------------------------------------------------------------------------------------------
# Flat parameters (papermill) -> config
# ----------------------------------------------------------------------------------------------
def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def from_flat(cls: type, params: Mapping[str, Any], prefix: str = "") -> Any:
    """Build ``cls`` from the subset of ``params`` named ``prefix + field``; other keys are ignored."""
    kwargs = {}
    for f in fields(cls):
        key = prefix + f.name
        if key in params:
            kwargs[f.name] = params[key]
    return cls(**kwargs)


def reject_unknown(params: Mapping[str, Any], known: set[str] | list[str], where: str = "parameters") -> None:
    """Raise ConfigError for any key not in ``known``, suggesting the closest known name."""
    known = set(known)
    for key in params:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown parameter {key!r} for {where}{hint} Known: {', '.join(sorted(known))}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-friendly dict of a config dataclass (enums become their values)."""
    out = {}
    for k, v in dataclasses.asdict(cfg).items():
        out[k] = v.value if isinstance(v, enum.Enum) else (list(v) if isinstance(v, tuple) else v)
    return out
