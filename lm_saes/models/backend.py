"""Language models through transformer_lens' TransformerBridge: any architecture it can bridge.

``load_language_model`` takes a hub name (online) or a local Hugging Face directory (offline)
through the same call. ``LanguageModel.run_to_hooks`` runs a batch and stops the forward as soon
as the last requested hook has fired, so caching an early layer costs only the layers before it.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from lm_saes.config import ModelConfig
from lm_saes.errors import ModelError

PROBE_CTX = 3  # tokens in the probe forward that reads hook shapes
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(spec: str) -> torch.device:
    """'auto' is the local rank's CUDA device when CUDA is present, else the CPU."""
    if spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


class _HooksDone(Exception):
    """Raised inside the last needed hook to end the forward early."""


@dataclass(frozen=True)
class LanguageModel:
    """A bridged model, its tokenizer, and where it runs."""

    bridge: torch.nn.Module  # transformer_lens TransformerBridge
    tokenizer: object  # transformers PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype

    @property
    def pad_token_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return candidate
        return 0

    def hook_names(self) -> list[str]:
        """Every hook point of the model, aliases included, sorted."""
        return sorted(self.bridge.hook_dict)

    def check_hooks(self, hooks: Sequence[str]) -> None:
        """Raise ModelError naming each unknown hook, close matches, and the valid hooks."""
        valid = self.hook_names()
        unknown = [h for h in hooks if h not in self.bridge.hook_dict]
        if not unknown:
            return
        lines = []
        for hook in unknown:
            close = difflib.get_close_matches(hook, valid, n=3, cutoff=0.6)
            lines.append(f"  {hook!r}" + (f": did you mean {', '.join(close)}?" if close else ""))
        raise ModelError(
            f"{self.name} has no hook point(s):\n" + "\n".join(lines) + "\nvalid hook points:\n  "
            + "\n  ".join(valid)
        )

    def run_to_hooks(
        self, tokens: Int[Tensor, "batch ctx"], hooks: Sequence[str], out_dtype: torch.dtype | None = None
    ) -> dict[str, Tensor]:
        """Activations at ``hooks`` for a token batch, each [batch, ctx, ...], copied as ``out_dtype``.

        The forward stops right after the last of the hooks fires.
        """
        captured = self._capture(tokens, hooks, out_dtype, stop_early=True)
        missing = set(hooks) - captured.keys()
        if missing:
            raise ModelError(f"hook point(s) {sorted(missing)} never fire in {self.name}'s forward")
        return captured

    @torch.inference_mode()
    def logits(
        self, tokens: Int[Tensor, "batch ctx"], fwd_hooks: Sequence[tuple[str, Callable]] = ()
    ) -> Tensor:
        """Logits [batch, ctx, vocab] of a full forward with transformer_lens hook functions
        ``fn(act, hook)`` attached; a function that returns a tensor replaces the activation."""
        self._enable_gated([name for name, _ in fwd_hooks])
        with self.bridge.hooks(fwd_hooks=list(fwd_hooks)):
            return self.bridge(tokens.to(device=self.device, dtype=torch.long), return_type="logits")

    @torch.inference_mode()
    def _capture(
        self, tokens: Tensor, hooks: Sequence[str], out_dtype: torch.dtype | None, stop_early: bool
    ) -> dict[str, Tensor]:
        """Whatever of ``hooks`` fires in one forward (until the last of them, if ``stop_early``)."""
        self._enable_gated(hooks)
        wanted = set(hooks)
        captured: dict[str, Tensor] = {}

        def capture(act: Tensor, hook) -> None:
            # An alias and its canonical name share one HookPoint; hook.name is the canonical one.
            for name in names_by_point[id(hook)]:
                captured[name] = act.detach().to(dtype=out_dtype or act.dtype, copy=True)
            if stop_early and wanted <= captured.keys():
                raise _HooksDone

        names_by_point: dict[int, list[str]] = {}
        for name in hooks:
            names_by_point.setdefault(id(self.bridge.hook_dict[name]), []).append(name)
        one_name_per_point = [names[0] for names in names_by_point.values()]
        with self.bridge.hooks(fwd_hooks=[(name, capture) for name in one_name_per_point]):
            try:
                self.bridge(tokens.to(self.device), return_type=None)
            except _HooksDone:
                pass
        return captured

    def gate_of(self, hook: str) -> str | None:
        """The bridge setting that must be on for ``hook`` to fire (e.g. 'use_hook_mlp_in'), if any."""
        return getattr(self.bridge, "_gated_hook_reason", lambda name: None)(hook)

    def _enable_gated(self, hooks: Sequence[str]) -> None:
        """Switch on hook points the bridge computes only on request (e.g. hook_mlp_in)."""
        for name in hooks:
            if setting := self.gate_of(name):
                try:
                    getattr(self.bridge, f"set_{setting}")(True)
                except ValueError as e:
                    raise ModelError(f"hook {name!r} cannot be enabled with the others: {e}") from e

    def hook_shapes(self, hooks: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Each hook's activation shape for a probe batch of 1 context of PROBE_CTX tokens.

        Hooks that never fire in this model's forward are left out.
        """
        probe = torch.full((1, PROBE_CTX), self.pad_token_id, dtype=torch.long)
        captured = self._capture(probe, hooks, None, stop_early=False)
        return {name: tuple(captured[name].shape) for name in hooks if name in captured}

    def hook_widths(self, hooks: Sequence[str]) -> dict[str, int]:
        """d of each hook whose activations are [batch, ctx, d]; ModelError for any other shape."""
        shapes = self.hook_shapes(hooks)
        silent = [h for h in hooks if h not in shapes]
        if silent:
            raise ModelError(f"hook point(s) {silent} never fire in {self.name}'s forward; pick others")
        bad = {h: s for h, s in shapes.items() if len(s) != 3 or s[:2] != (1, PROBE_CTX)}
        if bad:
            raise ModelError(
                "only hooks of shape [batch, ctx, d] can be cached; these are not (shape for 1 "
                f"context of {PROBE_CTX} tokens): " + ", ".join(f"{h} {list(s)}" for h, s in bad.items())
            )
        return {h: s[2] for h, s in shapes.items()}


def _model_source(cfg: ModelConfig) -> str:
    """The local directory or hub name ``cfg.name`` loads from (a missing local directory: ModelError)."""
    local = Path(cfg.name).expanduser()
    looks_local = cfg.name.startswith((".", "/", "~")) or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise ModelError(
            f"model.name={cfg.name!r}: no Hugging Face model directory there (expected "
            f"{local / 'config.json'}). Train one with `lm-saes pretrain`, or give a hub name."
        )
    return str(local) if looks_local else cfg.name


def _offline_hint(cfg: ModelConfig, e: OSError) -> ModelError:
    return ModelError(
        f"could not load model {cfg.name!r}: {e}\nOffline? Point model.name at a local "
        "Hugging Face directory (e.g. one made by `lm-saes pretrain`)."
    )


def load_tokenizer(cfg: ModelConfig):
    """The model's tokenizer alone (transformers' AutoTokenizer), without loading its weights."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(_model_source(cfg), revision=cfg.revision,
                                             trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise _offline_hint(cfg, e) from e


def load_language_model(cfg: ModelConfig) -> LanguageModel:
    """Load a model and its tokenizer by hub name or from a local Hugging Face directory."""
    from transformer_lens.model_bridge import TransformerBridge

    source = _model_source(cfg)
    device = resolve_device(cfg.device)
    dtype = TORCH_DTYPES[cfg.dtype]
    tokenizer = load_tokenizer(cfg)
    try:
        bridge = TransformerBridge.boot_transformers(
            source,
            tokenizer=tokenizer,
            device=device,
            dtype=dtype,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
        )
    except OSError as e:
        raise _offline_hint(cfg, e) from e
    bridge.eval()
    return LanguageModel(bridge=bridge, tokenizer=tokenizer, name=cfg.name, device=device, dtype=dtype)


def load_causal_lm(cfg: ModelConfig) -> tuple[torch.nn.Module, object]:
    """The Hugging Face model itself (its own module names, e.g. ``transformer.h.0.mlp.c_fc``) and its
    tokenizer, by hub name or local directory, in eval mode on ``cfg.device``: for stages that work
    on a model's parameters rather than its hook points (SPD)."""
    from transformers import AutoModelForCausalLM

    source = _model_source(cfg)
    tokenizer = load_tokenizer(cfg)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, revision=cfg.revision, dtype=TORCH_DTYPES[cfg.dtype],
                                                     trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise _offline_hint(cfg, e) from e
    return model.to(resolve_device(cfg.device)).eval(), tokenizer
