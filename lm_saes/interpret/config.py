"""`lm-saes interpret` configuration: which features, who explains and scores them, on what contexts.

    dictionary = "topk"                     # a dictionary in the store, analyzed by `lm-saes analyze`
    [explainer]                             # the offline default: kind = "lexical"
    kind = "openai"                         # any OpenAI-compatible chat-completions endpoint
    base_url = "http://localhost:8000/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"
    api_key_env = "OPENAI_API_KEY"          # the *name* of the variable; the key is never stored

The scorer (the simulator, detector and fuzzing judge) is the explainer unless ``[scorer]`` says
otherwise. Contexts come from the stored analysis (``lm_saes.interpret.contexts``): its top and
band samples are split into the explainer's and held-out ones; random and non-activating held-out
contexts are read from the analysis's 2d cache (``lm_saes.interpret.pool``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from lm_saes.config import StoreConfig, StrictModel
from lm_saes.sweep.config import BaselineName


class LexicalConfig(StrictModel):
    """The offline baseline: the explanation is the feature's characteristic tokens with their weights
    (lm_saes.interpret.lexical); the simulator predicts those weights wherever the tokens occur. No
    model runs."""

    kind: Literal["lexical"] = "lexical"
    n_tokens: int = Field(8, gt=0, le=100, description="Characteristic tokens kept in an explanation.")


class OpenAIConfig(StrictModel):
    """A model behind an OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, Ollama)."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(description="The API root, e.g. https://api.openai.com/v1 or http://localhost:11434/v1.")
    model: str = Field(min_length=1, description="Model name the endpoint serves.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the environment variable holding the key ('': send no key, "
        "for local servers). The key itself is never logged or stored."
    )
    concurrency: int = Field(8, gt=0, le=1024, description="Requests in flight at once.")
    max_retries: int = Field(5, ge=0, le=100, description="Retries of a request after a 429, a 5xx, a timeout "
                             "or a refused connection, before the run stops.")
    backoff_s: float = Field(1.0, ge=0, description="Wait before the first retry; doubled each time (a "
                             "Retry-After header wins), with jitter, at most max_backoff_s.")
    max_backoff_s: float = Field(60.0, ge=0, description="Longest wait between two tries.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds one request may take.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(1024, gt=0, description="Most tokens of one reply.")

    @field_validator("base_url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        return url.rstrip("/")


JudgeConfig = Annotated[Union[LexicalConfig, OpenAIConfig], Field(discriminator="kind")]


class InterpretConfig(StrictModel):
    """`lm-saes interpret`: explain and score the features of an analyzed dictionary (lm_saes.interpret)."""

    dictionary: str = Field(min_length=1, description="The dictionary's name in the store.")
    analysis: str = Field("default", min_length=1, description="Which of its analyses supplies the contexts.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="The store holding the analysis.")
    explainer: JudgeConfig = Field(default_factory=LexicalConfig, description="Who writes the explanations.")
    scorer: JudgeConfig | None = Field(None, description="Who simulates, detects and judges fuzzing "
                                       "(None: the explainer).")
    name: str | None = Field(None, min_length=1, max_length=200, description="The explainer's id in the store "
                             "(None: 'lexical', or 'openai:<model>'; '+<scorer>' when the scorer differs).")
    features: list[Annotated[int, Field(ge=0, lt=2**63)]] | None = Field(
        None, description="Feature indices to interpret (None: every feature firing in min_contexts contexts)."
    )
    sample: int | None = Field(None, gt=0, description="Interpret only this many of them, drawn with `seed`.")
    explain_top: int = Field(10, ge=0, description="Top contexts shown to the explainer (of the even-ranked half).")
    explain_per_band: int = Field(2, ge=0, description="Band samples per band shown to the explainer.")
    score_top: int = Field(10, ge=0, description="Held-out top contexts scored (of the odd-ranked half).")
    score_per_band: int = Field(2, ge=0, description="Held-out band samples per band scored.")
    score_negatives: int = Field(20, ge=0, description="Windows of the cache where the feature is zero, which "
                                 "detection must tell from the held-out activating ones (Delphi).")
    score_random: int = Field(20, ge=0, description="Windows of the cache drawn at random, with the feature's "
                              "true activations, which the simulation also predicts (OpenAI's top and random).")
    min_contexts: int = Field(10, ge=1, description="Interpret only features that fire in at least this many "
                              "contexts (rarer ones have too few to explain from and score on).")
    negative_contexts: int = Field(256, gt=0, description="Contexts of the 2d cache cut into the windows the "
                                   "random and non-activating contexts are drawn from.")
    cache: Path | None = Field(None, description="2d cache of the analyzed contexts (None: the one the "
                               "analysis read; needed when it ran on the fly).")
    batch_size: int = Field(16, gt=0, description="Contexts per encoder batch while finding non-activating windows.")
    device: str = Field("auto", description="Where the dictionary encodes those windows.")
    seed: int = Field(0, ge=0, description="Seed of the sample, the non-activating windows and the fuzzing marks.")
    retry_failed: bool = Field(False, description="Explain again the features whose replies could not be parsed.")
    dry_run: bool = Field(False, description="Count the requests and prompt tokens, send nothing.")
    baselines: list[BaselineName] = Field(
        default_factory=list, description="Also build these baselines at the dictionary's L0 (as `lm-saes sweep` "
        "does), analyze and interpret them the same way, and compare the mean scores."
    )
    baseline_fit_tokens: int = Field(16_384, gt=0, description="Training-cache tokens the baselines are fitted on.")
    output_dir: Path | None = Field(None, description="Baseline dictionaries and the comparison report "
                                    "(None: work/interpret/<dictionary>).")
    progress: bool = Field(True, description="Show a progress bar.")

    @model_validator(mode="after")
    def _something_to_score(self) -> InterpretConfig:
        if self.explain_top + self.explain_per_band == 0:
            raise ValueError("explain_top and explain_per_band are both 0: the explainer would see no context")
        if self.score_top + self.score_per_band == 0:
            raise ValueError("score_top and score_per_band are both 0: no activating context would be scored")
        return self

    @property
    def judge(self) -> JudgeConfig:
        """The scorer's config (the explainer's unless set)."""
        return self.scorer or self.explainer

    @property
    def explainer_id(self) -> str:
        """How this explainer's records are keyed in the store."""
        if self.name is not None:
            return self.name
        explainer, scorer = describe(self.explainer), describe(self.judge)
        return explainer if explainer == scorer else f"{explainer}+{scorer}"

    def resolved_output_dir(self) -> Path:
        return self.output_dir or Path("work/interpret") / self.dictionary


def describe(judge: LexicalConfig | OpenAIConfig) -> str:
    return "lexical" if judge.kind == "lexical" else f"openai:{judge.model}"
