"""The sparse dictionary interface shared by every variant (SAE or transcoder).

A dictionary maps ``x`` [batch, d_in] to feature activations ``acts`` [batch, d_sae] and back to a
reconstruction [batch, d_out] of a target (``x`` itself for an SAE, another hook's activations
for a transcoder):

    pre  = (x - b_dec) @ W_enc + b_enc        (an SAE centres its input on b_dec; a transcoder does not)
    acts = activate(pre)                      (the variant: ReLU, TopK, BatchTopK, JumpReLU)
    recon = acts @ W_dec + b_dec

Training sees inputs scaled by ``input_scale`` and targets by ``output_scale`` (chosen so both
have average norm sqrt(d)); ``save`` folds the scales into the weights so a loaded dictionary
works on raw activations and reports scales of 1. A dictionary with ``normalize_tokens`` also
scales each token x by rho(x) = sqrt(d_in) / ||x|| (its target by the same rho) and divides its
reconstruction by rho(x): that is part of the function it computes, applied by ``encode`` and
``forward`` and kept through saving (rho(s x) s x = rho(x) x, so its input scale is 1).

A variant subclasses ``Dictionary``, sets ``kind``, implements ``activate`` and ``stacked_loss`` and,
if it keeps unit-norm decoder rows, sets ``unit_norm_decoder = True``. Registering it is one line in
``lm_saes/dictionaries/__init__.py``.

The training loss is written once, for a ``Stack``: M dictionaries of one kind and shape whose
tensors carry a leading member axis [M, ...], so the matmuls of every member run as one batched
matmul (a sweep trains its members of one shape this way, ``lm_saes.training.stack``). A dictionary
alone is a stack of one: ``loss`` runs ``stacked_loss`` on views of its own tensors. Per-member knobs
(k, coefficients, bandwidths) enter as floats when the members share them and as [M] tensors when
not; every operation gives member i's slice the same bits whatever M is (on the CPU), so a member
trained in a stack gets the weights it gets alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file
from torch import Tensor, nn

from lm_saes import __version__
from lm_saes.artifacts import write_safetensors
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives, gather_state_dict
from lm_saes.errors import ConfigError, LmSaesError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
METRICS_NAME = "metrics.json"  # written last by training: a dictionary directory is finished
MIN_START_SCALE = 1e-3  # floor of init_from_data's scale (a transcoder's random start may be unrelated to its target)


class DictionaryOutput(NamedTuple):
    recon: Float[Tensor, "batch d_out"]  # reconstruction of the target
    acts: Float[Tensor, "batch d_sae"]  # feature activations
    pre: Float[Tensor, "batch d_sae"]  # pre-activations


class LossOutput(NamedTuple):
    """One dictionary's loss; a stack's has a leading member axis on every field ([M], [M, d_sae])."""

    loss: Float[Tensor, ""]  # what the optimizer minimises
    terms: dict[str, Float[Tensor, ""]]  # every term, detached, for logging ("mse", "l1", "aux"...)
    fired: Bool[Tensor, "d_sae"] | None = None  # features active on some token of the batch (dead tracking)

    def member(self, i: int) -> "LossOutput":
        """Member i's loss, out of a stack's."""
        return LossOutput(self.loss[i], {k: v[i] for k, v in self.terms.items()},
                          None if self.fired is None else self.fired[i])


def fired_features(acts: Float[Tensor, "... batch d_sae"]) -> Bool[Tensor, "... d_sae"]:
    """Features active on at least one token of the batch."""
    return (acts.detach() != 0).any(dim=-2)


def shape_mismatches(expected: dict[str, tuple[int, ...]], state: dict[str, Tensor]) -> list[str]:
    """'name: expected (..), found (..)' for every tensor missing, unexpected or of another shape."""
    found = {k: tuple(v.shape) for k, v in state.items()}
    return [
        f"{k}: expected {expected.get(k, 'absent')}, found {found.get(k, 'absent')}"
        for k in sorted(expected.keys() | found.keys()) if expected.get(k) != found.get(k)
    ]


def check_finite(state: dict[str, Tensor], where: str | Path) -> None:
    """Refuse weights holding NaN or infinite values, naming the tensor (every metric of such a
    dictionary would be NaN). A log-scale tensor (``log_threshold``) may hold -inf: log(0)."""
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        bad = int((~torch.isfinite(tensor) & ~((tensor == -math.inf) & name.startswith("log_"))).sum())
        if bad:
            raise LmSaesError(f"{where}: tensor {name!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}; "
                              "the dictionary is unusable: train it again (a lower lr, or from its last checkpoint)")


def token_factors(x: Float[Tensor, "... batch d_in"]) -> Float[Tensor, "... batch 1"]:
    """rho(x) = sqrt(d_in) / ||x|| per token: x rho(x) has norm sqrt(d_in) (a zero token stays zero)."""
    return x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).eps)


def reconstruction_mse(
    recon: Float[Tensor, "... batch d_out"], target: Float[Tensor, "... batch d_out"]
) -> Float[Tensor, "..."]:
    """Squared L2 error summed over d_out, averaged over the batch (every variant's MSE)."""
    return (recon - target).pow(2).sum(-1).mean(-1)


def mean_l0(acts: Float[Tensor, "... batch d_sae"], comm: Collectives = SINGLE_DEVICE) -> Float[Tensor, "..."]:
    """Active features per token (over every feature shard), averaged over the batch."""
    return comm.feature_sum((acts != 0).float().sum(-1)).mean(-1)


class TrainingContext(NamedTuple):
    """What a loss may need beyond the batch."""

    sparsity_scale: float  # warmup factor in [0, 1] for the sparsity penalty
    dead_mask: Tensor | None  # [d_sae] bool: features that have not fired for a while (AuxK)


class Stack(NamedTuple):
    """Dictionaries of one kind and shape as the training maths sees them."""

    tensors: dict[str, Tensor]  # every parameter and buffer, with a leading member axis [M, ...]
    members: list["Dictionary"]  # their configs, switches and collectives

    @classmethod
    def of(cls, dictionary: "Dictionary") -> "Stack":
        """A dictionary alone: a stack of one, whose tensors are views of its own."""
        tensors = {name: getattr(dictionary, name).unsqueeze(0) for name in dictionary.tensor_names()}
        return cls(tensors, [dictionary])

    @property
    def comm(self) -> Collectives:
        return self.members[0].comm

    def per_member(self, values: list[float], like: Tensor) -> float | Tensor:
        """A knob per member, for a [M] quantity: a float when the members share it (always alone),
        else an [M] tensor (float32 products of the same float32 numbers: the same bits)."""
        return values[0] if len(set(values)) == 1 else like.new_tensor(values, dtype=torch.float32)

    def knob(self, name: str, like: Tensor) -> float | Tensor:
        """``per_member`` of the members' config field ``name``."""
        return self.per_member([getattr(m.cfg, name) for m in self.members], like)


def stacked_bias(st: Stack) -> Float[Tensor, "M d_sae"]:
    """The encoder's bias: b_enc, less b_dec W_enc for an SAE (see ``Dictionary.pre_acts``)."""
    t, transcoder = st.tensors, st.members[0].transcoder
    if transcoder:
        return t["b_enc"]
    return t["b_enc"] - torch.bmm(st.comm.enter(t["b_dec"]).unsqueeze(1), t["W_enc"]).squeeze(1)


def stacked_pre_acts(
    st: Stack, x: Float[Tensor, "M batch d_in"], bias: Float[Tensor, "M d_sae"]
) -> Float[Tensor, "M batch d_sae"]:
    """Every member's pre-activations, one batched matmul."""
    return torch.baddbmm(bias.unsqueeze(1), st.comm.enter(x), st.tensors["W_enc"])


def stacked_decode(st: Stack, acts: Float[Tensor, "M batch d_sae"]) -> Float[Tensor, "M batch d_out"]:
    """Every member's reconstruction from dense activations, one batched matmul."""
    return st.comm.reduce(torch.bmm(acts, st.tensors["W_dec"])) + st.tensors["b_dec"].unsqueeze(1)


class Dictionary(nn.Module):
    """Weights, encode/decode, save/load. Variants add the activation function and the loss."""

    kind: ClassVar[str]
    fast_paths: ClassVar[tuple[str, ...]] = ()  # switches (bool attributes) between a fast path and its eager twin
    unit_norm_decoder: ClassVar[bool] = False
    # The dimension that indexes features, for every tensor split across tensor-parallel ranks.
    feature_dims: ClassVar[dict[str, int]] = {"W_enc": 1, "b_enc": 0, "W_dec": 0}

    def __init__(self, cfg: Any, d_in: int, d_out: int, transcoder: bool = False) -> None:
        super().__init__()
        self.cfg = cfg  # the variant's validated config (d_sae, normalize_tokens and the variant's knobs)
        self.d_in, self.d_out, self.d_sae, self.transcoder = d_in, d_out, cfg.d_sae, transcoder
        if not transcoder and d_in != d_out:
            raise ConfigError(f"an SAE reconstructs its input, but d_in={d_in} != d_out={d_out}")
        self.W_enc = nn.Parameter(torch.empty(d_in, self.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(self.d_sae))
        self.W_dec = nn.Parameter(torch.empty(self.d_sae, d_out))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.register_buffer("input_scale", torch.tensor(1.0))
        self.register_buffer("output_scale", torch.tensor(1.0))
        self.comm: Collectives = SINGLE_DEVICE  # replaced by parallel.shard_ under tensor parallelism
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Decoder rows random unit vectors; encoder their transpose (a common, stable start)."""
        W_dec = torch.randn(self.d_sae, self.d_out)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        with torch.no_grad():
            self.W_dec.copy_(W_dec)
            self.W_enc.copy_(W_dec.T if self.d_in == self.d_out else torch.randn(self.d_in, self.d_sae) / self.d_in**0.5)
            self.b_enc.zero_()
            self.b_dec.zero_()

    @torch.no_grad()
    def init_from_data(
        self, x: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_out"],
        input_mean: Float[Tensor, "d_in"], target_mean: Float[Tensor, "d_out"],
    ) -> float:
        """Fit the random start to a batch of (scaled) training data; returns the scale ``c``.

        1. ``b_dec`` = the targets' mean: the reconstruction starts at the mean, and an SAE's
           pre-activations (x - b_dec) W_enc are centred. A transcoder, which does not centre,
           gets ``b_enc = -input_mean W_enc`` instead (sparsify's start for transcoders).
        2. The scale. The random start's reconstruction r0 = decode(encode(x)) - b_dec overshoots:
           the k directions chosen for a token all lean towards it, so their sum is about twice
           its norm (and a ReLU's thousands of active features far more). The least-squares
           multiple c = <target - b_dec, r0> / ||r0||^2 over the batch is the best that start can
           do; ``scale_start(c)`` shrinks the weights so the first reconstruction is c r0.
           Without this a TopK SAE spends its first hundred steps shrinking its activations
           (explained variance 0.17 instead of 0.81 after 35 steps in benchmarks/train.py's setting).
        """
        self.b_dec.copy_(target_mean)
        if self.transcoder:
            self.b_enc.copy_(-(self.comm.enter(input_mean) @ self.W_enc))
        self.init_activation(x)
        r0 = self.decode(self.activate(self.pre_acts(x))) - self.b_dec  # [batch, d_out]
        residual = target - self.b_dec
        overlap = self.comm.batch_mean((residual * r0).sum(-1).mean())
        energy = self.comm.batch_mean(r0.pow(2).sum(-1).mean())
        c = float(overlap / energy) if energy > 0 else 1.0
        c = min(max(c, MIN_START_SCALE), 1.0)
        self.scale_start(c)
        return c

    @torch.no_grad()
    def init_activation(self, x: Float[Tensor, "batch d_in"]) -> None:
        """A variant's own data-dependent start of its activation function (JumpReLU's thresholds)."""

    @torch.no_grad()
    def scale_start(self, c: float) -> None:
        """Make the start's reconstruction (less b_dec) c times what it was. With unit-norm decoder
        rows only the encoder can shrink: every pre-activation is multiplied by c (the selection of a
        TopK is unchanged)."""
        self.W_enc.mul_(c)
        self.b_enc.mul_(c)

    # --- the maths -------------------------------------------------------------------------

    def token_factors(self, x: Float[Tensor, "... batch d_in"]) -> Float[Tensor, "... batch 1"] | None:
        """rho(x) per token when the dictionary normalises tokens (``normalize_tokens``), else None."""
        return token_factors(x) if self.cfg.normalize_tokens else None

    def training_pair(
        self, x: Float[Tensor, "batch d_in"], y: Float[Tensor, "batch d_out"]
    ) -> tuple[Float[Tensor, "batch d_in"], Float[Tensor, "batch d_out"]]:
        """An (input, target) pair as the loss sees it: x s rho(x) and y t rho(x) (rho = 1 unless
        ``normalize_tokens``; s, t the input and output scales)."""
        rho = self.token_factors(x)
        x, y = x * self.input_scale, y * self.output_scale
        return (x, y) if rho is None else (x * rho, y * rho)

    def normalize(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_in"]:
        """Inputs as ``pre_acts`` takes them: each token at norm sqrt(d_in) if ``normalize_tokens``."""
        rho = self.token_factors(x)
        return x if rho is None else x * rho

    def pre_acts(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        """Pre-activations of inputs as the loss sees them (raw activations: ``normalize`` them first)."""
        # An SAE's (x - b_dec) W_enc + b_enc is computed as x W_enc + (b_enc - b_dec W_enc): one
        # GEMM less in the backward (b_dec's gradient no longer needs d loss / d x for the batch).
        rows = x.reshape(-1, x.shape[-1])  # [tokens, d_in]
        bias = self.b_enc if self.transcoder else self.b_enc - self.comm.enter(self.b_dec) @ self.W_enc
        pre = torch.addmm(bias, self.comm.enter(rows), self.W_enc)  # [tokens, d_sae]
        return pre.reshape(*x.shape[:-1], pre.shape[-1])

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        raise NotImplementedError

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        return self.activate(self.pre_acts(self.normalize(x)))

    def decode(self, acts: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_out"]:
        return self.comm.reduce(acts @ self.W_dec) + self.b_dec

    def forward(self, x: Float[Tensor, "batch d_in"]) -> DictionaryOutput:
        rho = self.token_factors(x)
        pre = self.pre_acts(x if rho is None else x * rho)
        acts = self.activate(pre)
        recon = self.decode(acts)
        return DictionaryOutput(recon=recon if rho is None else recon / rho, acts=acts, pre=pre)

    def loss(
        self, x: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_out"], ctx: TrainingContext
    ) -> LossOutput:
        """The training loss of one batch: ``stacked_loss`` on a stack of one."""
        return self.stacked_loss(Stack.of(self), x.unsqueeze(0), target.unsqueeze(0), [ctx]).member(0)

    @classmethod
    def stacked_loss(
        cls, st: Stack, x: Float[Tensor, "M batch d_in"], target: Float[Tensor, "M batch d_out"],
        ctxs: list[TrainingContext],
    ) -> LossOutput:
        """Every member's training loss on its (scaled) inputs and targets: a LossOutput of [M] fields."""
        raise NotImplementedError

    def tensor_names(self) -> list[str]:
        """The parameters and buffers, in a fixed order (the stacked tensors of ``Stack``)."""
        return [*self._parameters, *self._buffers]

    def stack_key(self) -> tuple:
        """What the members of one stack share: kind, sizes, mode, the fast-path switches, and the
        knobs that change the computation's shape (variants add theirs)."""
        return (self.kind, self.d_in, self.d_out, self.d_sae, self.transcoder, self.training,
                self.cfg.normalize_tokens, *(getattr(self, s) for s in self.fast_paths))

    # --- decoder constraint (variants with unit_norm_decoder) ----------------------------

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the part of each decoder row's gradient along the row (call before the step)."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            rows = self.W_dec / self.W_dec.norm(dim=1, keepdim=True)
            self.W_dec.grad -= (self.W_dec.grad * rows).sum(1, keepdim=True) * rows

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Project decoder rows back to unit norm (call after the step)."""
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    # --- normalisation --------------------------------------------------------------------

    @torch.no_grad()
    def set_scales(self, input_scale: float, output_scale: float) -> None:
        if self.cfg.normalize_tokens and input_scale != 1:
            raise ValueError(f"input_scale={input_scale:g}: a dictionary that normalises each token "
                             "(normalize_tokens) takes inputs at scale 1 (rho(s x) s x = rho(x) x)")
        self.input_scale.fill_(input_scale)
        self.output_scale.fill_(output_scale)

    def folded_state_dict(self) -> dict[str, Tensor]:
        """Weights that act on raw activations: the training scales folded in.

        For raw x and scales s (input), t (output) the trained dictionary computes
        pre = (s x - b_dec) W_enc + b_enc and the raw reconstruction (acts W_dec + b_dec) / t.
        With W_enc' = s W_enc, W_dec' = W_dec / t, b_dec' = b_dec / t the reconstruction is
        unchanged, and so are the pre-activations (thresholds need no folding): a transcoder
        does not centre, and an SAE's centring term (x - b_dec / t) s W_enc differs from the
        trained one by (s / t - 1) b_dec W_enc, which b_enc' absorbs (zero when s = t).
        """
        s, t = float(self.input_scale), float(self.output_scale)
        state = gather_state_dict(self)  # the whole dictionary, also under tensor parallelism
        if not self.transcoder:
            state["b_enc"] = state["b_enc"] + (s / t - 1) * (state["b_dec"] @ state["W_enc"])
        state["W_enc"] = state["W_enc"] * s
        state["W_dec"] = state["W_dec"] / t
        state["b_dec"] = state["b_dec"] / t
        state["input_scale"] = torch.tensor(1.0)
        state["output_scale"] = torch.tensor(1.0)
        return state

    @torch.no_grad()
    def unfold_scales(self, input_scale: float, output_scale: float) -> None:
        """Undo ``folded_state_dict`` on a loaded (single-device) dictionary: back to the weights
        of training time, which read inputs scaled by ``input_scale`` (s) and reconstruct targets
        scaled by ``output_scale`` (t), so ``loss(s x, t y)`` is the loss training minimised."""
        s, t = input_scale, output_scale
        self.W_enc.div_(s)
        self.W_dec.mul_(t)
        self.b_dec.mul_(t)
        if not self.transcoder:
            self.b_enc.sub_((s / t - 1) * (self.b_dec @ self.W_enc))
        self.set_scales(s, t)

    # --- save / load ----------------------------------------------------------------------

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` (scales folded in) to ``directory``.

        Under tensor parallelism every rank calls ``save`` (the shards are gathered); rank 0 writes.
        """
        directory = Path(directory)
        state = {k: v.contiguous().float() for k, v in self.folded_state_dict().items()}
        if self.comm.rank != 0:
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        write_safetensors(directory / WEIGHTS_NAME, state)
        meta = {
            "kind": self.kind, "d_in": self.d_in, "d_out": self.d_out, "d_sae": self.d_sae,
            "transcoder": self.transcoder, "dictionary": self.cfg.model_dump(mode="json"),
            "normalization": "folded into the weights",
            "training_scales": {"input": float(self.input_scale), "output": float(self.output_scale)},
            "lm_saes_version": __version__, **(extra or {}),
        }
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "Dictionary":
        """Load any registered variant from a dictionary directory written by ``save``.

        The dictionary comes back in eval mode (BatchTopK then uses its inference threshold).
        A SAELens directory (``cfg.json`` + ``sae_weights.safetensors``) loads through
        ``lm_saes.dictionaries.saelens.load_saelens``.
        """
        from lm_saes.dictionaries import build_dictionary, dictionary_config
        from lm_saes.dictionaries.saelens import is_saelens_dir, load_saelens

        directory = Path(directory)
        if not (directory / CONFIG_NAME).is_file() and is_saelens_dir(directory):
            return load_saelens(directory, device=device)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise LmSaesError(f"{directory} is not a dictionary directory: {path.name} is missing")
        try:
            meta = json.loads(config_path.read_text())
            # Saved before normalize_tokens existed: trained without it (BatchTopK's default is now on).
            cfg = dictionary_config({"normalize_tokens": False, **meta["dictionary"]})
            dictionary = build_dictionary(cfg, meta["d_in"], meta["d_out"], meta["transcoder"])
        except (ValueError, KeyError, TypeError) as e:  # bad JSON, a missing key, an invalid config
            raise LmSaesError(f"{config_path} is not a valid dictionary config: {e}") from e
        try:
            state = load_file(weights_path)
        except Exception as e:
            raise LmSaesError(f"{weights_path} is not a readable safetensors file: {e}") from e
        mismatches = shape_mismatches({k: tuple(v.shape) for k, v in dictionary.state_dict().items()}, state)
        if mismatches:
            raise LmSaesError(
                f"{weights_path} does not match {config_path.name} ({'; '.join(mismatches)}). "
                "The directory mixes files from different dictionaries; re-save it."
            )
        check_finite(state, weights_path)
        dictionary.load_state_dict(state)
        return dictionary.to(device).eval()
