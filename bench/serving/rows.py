"""The serving-results file: published, measured LLM serving results, one cited row each.

``ServingRow`` is one result as its source states it: the card, GPUs and parallel layout, engine and version, the
model (a preset of bench/models.py) and the checkpoint as published, weight and KV formats, input/output lengths,
concurrency or batch, the metric and its value, the number as printed (``as_published``), the arithmetic that
turned it into ``value`` (``conversion``) and the citation (``source``). ``load`` reads the file strictly (bounded,
no NaN, unknown fields refused) and ``check`` holds every row against the library: a known spec card, a known
model, formats the card has, and GPUs that hold the model. Any problem is one line (:class:`ServingError`).
The format and the rules for adding a row are in docs/serving.md.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from .. import models
from .. import profile as prof
from ..jsonio import read_json
from ..roofline import Deployment, Hardware, Roofline, RooflineError, native_support

MAX_SERVING_FILE_BYTES = 4 * 1024 * 1024
SCHEMA_VERSION = 1
MAX_TOKENS = 10_000_000  # lengths and batches beyond this are a typo, not a serving run
MAX_GPUS = 4096

Metric = Literal["output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user", "tpot_ms", "itl_ms"]
PER_USER_METRICS = ("output_tokens_per_s_per_user", "tpot_ms", "itl_ms")
# a citation names where the number is: a URL, or a repository path (owner/name path @ commit or date)
_CITATION = re.compile(r"(https?://\S+)|(\S+/\S+)")


class ServingError(ValueError):
    """A serving-results file or row that cannot be used; the message is one line, fit for the CLI."""


def default_path() -> Path:
    return prof.profiles_dir() / "serving.json"


class ServingRow(prof.StrictModel):
    id: str = Field(min_length=1, description="unique: study/scenario/card/model/format/kv/layout/lengths")
    card: str = Field(min_length=1, description="a spec profile name (profiles/specs)")
    gpus: int = Field(ge=1, le=MAX_GPUS, description="GPUs of one replica (the deployment measured)")
    tp: int = Field(default=1, ge=1, le=MAX_GPUS)
    ep: int = Field(default=1, ge=1, le=MAX_GPUS)
    attention_dp: bool = Field(default=False, description="attention data parallel, experts over ep GPUs")
    engine: str = Field(min_length=1)
    engine_version: str | None = Field(default=None, description="None: not stated by the source")
    model: str = Field(min_length=1, description="a model preset (bench/models.py)")
    checkpoint: str = ""
    weight_dtype: str = Field(description="format of the weights (dense part for a MoE model)")
    expert_weight_dtype: str | None = Field(default=None, description="routed experts' format if not weight_dtype")
    kv_dtype: str | None = Field(default=None, description="None: not stated by the source")
    input_len: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    output_len: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    context: int | None = Field(default=None, ge=1, le=MAX_TOKENS,
                                description="cached tokens per sequence when the source states it (decode only)")
    concurrency: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    batch: int | None = Field(default=None, ge=1, le=MAX_TOKENS, description="running sequences of the replica")
    scenario: Literal["latency", "throughput"]
    study: str = Field(min_length=1, description="rows measured the same way (one source table)")
    metric: Metric
    value: float = Field(gt=0, description="in the metric's unit, after `conversion`")
    as_published: str = Field(min_length=1)
    conversion: str = ""
    source: str = Field(description="citation: URL, or repository + path + commit or date")
    date: str = Field(min_length=1)
    note: str = ""

    @field_validator("source")
    @classmethod
    def _cited(cls, v: str) -> str:
        if not v.strip() or not _CITATION.search(v):
            raise ValueError("a citation is required: a URL, or repository + path + commit or date")
        return v

    @field_validator("weight_dtype", "expert_weight_dtype", "kv_dtype")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        return None if v is None else models.norm_dtype(v)

    @model_validator(mode="after")
    def _consistent(self) -> ServingRow:
        if self.context is None and (self.input_len is None or self.output_len is None):
            raise ValueError("give input_len and output_len (or the decode context)")
        if self.gpus % self.tp or self.gpus % self.ep:
            raise ValueError(f"gpus ({self.gpus}) must be a multiple of tp ({self.tp}) and of ep ({self.ep})")
        if self.scenario == "latency":
            if self.metric not in PER_USER_METRICS:
                raise ValueError(f"a latency row gives a per-user metric ({', '.join(PER_USER_METRICS)})")
            if (self.concurrency or 1) != 1 or (self.batch or 1) != 1:
                raise ValueError("a latency row is measured at concurrency 1 (batch 1)")
        elif self.metric != "output_tokens_per_s_per_gpu":
            raise ValueError("a throughput row gives output_tokens_per_s_per_gpu (divide a total by gpus in "
                             "`conversion`)")
        return self

    # ------------------------------------------------------------------------------------------ derived
    @property
    def decode_context(self) -> int:
        """Cached tokens per sequence during decode: the stated context, else the mean over the output,
        input_len + output_len / 2 (the KV term grows linearly, so the mean step is the step at the mean)."""
        if self.context is not None:
            return self.context
        return round((self.input_len or 0) + (self.output_len or 0) / 2)

    @property
    def rate(self) -> float:
        """The result as a rate: output tokens/s per GPU (throughput) or per user (latency; 1000 / TPOT or ITL)."""
        return 1000.0 / self.value if self.metric in ("tpot_ms", "itl_ms") else self.value

    @property
    def unit(self) -> str:
        return "tok/s/user" if self.scenario == "latency" else "tok/s/GPU"

    @property
    def formats(self) -> tuple[str, str]:
        """(dense weights' format, routed experts' format)."""
        return self.weight_dtype, self.expert_weight_dtype or self.weight_dtype

    @property
    def lengths(self) -> str:
        if self.input_len is not None and self.output_len is not None:
            return f"{self.input_len}/{self.output_len}"
        return f"context {self.decode_context}"

    def model_spec(self) -> models.ModelSpec:
        """The model preset in the row's formats."""
        base = models.PRESETS.get(self.model)
        if base is None:
            raise ServingError(f"unknown model {self.model!r} (presets: {', '.join(models.PRESETS)})")
        dense, expert = self.formats
        return base.model_copy(update={"weight_dtype": dense,
                                       "expert_weight_dtype": expert if base.is_moe else None})


class ServingFile(prof.StrictModel):
    schema_version: Literal[1]
    description: str = ""
    rows: list[ServingRow]

    @model_validator(mode="after")
    def _unique(self) -> ServingFile:
        seen: set[str] = set()
        for r in self.rows:
            if r.id in seen:
                raise ValueError(f"two rows have the id {r.id!r}")
            seen.add(r.id)
        return self


# ------------------------------------------------------------------------------------------------ loading
def _one_line(e: ValidationError, data: Any, where: str) -> str:
    first = e.errors()[0]
    loc = list(first.get("loc", ()))
    if len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int):
        rows = data.get("rows") if isinstance(data, dict) else None
        row = rows[loc[1]] if isinstance(rows, list) and loc[1] < len(rows) else None
        ident = row.get("id") if isinstance(row, dict) else None
        head = f"row {loc[1]}" + (f" ({ident})" if isinstance(ident, str) else "")
        rest = ".".join(str(x) for x in loc[2:])
        loc_s = head + (f" {rest}" if rest else "")
    else:
        loc_s = ".".join(str(x) for x in loc) or "(root)"
    msg = " ".join(str(first.get("msg", "")).split()).removeprefix("Value error, ")
    n = len(e.errors())
    return f"{where}: {loc_s}: {msg}" + (f" (and {n - 1} more)" if n > 1 else "")


def parse(data: Any, where: str = "serving results") -> list[ServingRow]:
    """Rows from a parsed document; ServingError with one line if it does not hold."""
    if not isinstance(data, dict):
        raise ServingError(f"{where}: a serving-results file is a JSON object with schema_version and rows")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ServingError(f"{where}: schema_version must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    try:
        doc = ServingFile.model_validate(data)
    except ValidationError as e:
        raise ServingError(_one_line(e, data, where)) from None
    for r in doc.rows:
        check(r, where)
    return doc.rows


def load(path: str | Path | None = None) -> list[ServingRow]:
    """The rows of a serving-results file (default profiles/serving.json), each checked against the library."""
    path = Path(path) if path is not None else default_path()
    return parse(read_json(path, MAX_SERVING_FILE_BYTES, "serving results", ServingError), str(path))


# ------------------------------------------------------------------------------------------ the library
_SPECS: dict[str, prof.Profile] = {}


def spec_profile(card: str) -> prof.Profile:
    """The spec profile of a card by name; ServingError if the library has none."""
    if card not in _SPECS:
        path = prof.library("spec").get(card)
        if path is None:
            raise ServingError(f"unknown card {card!r} (spec profiles: {', '.join(prof.library('spec'))})")
        try:
            _SPECS[card] = prof.load(path)
        except prof.ProfileError as e:
            raise ServingError(str(e)) from None
    return _SPECS[card]


def check(row: ServingRow, where: str = "serving results") -> None:
    """A row the model can stand against: a known spec card and model preset, weight and KV formats the card has
    (the model's released formats run anywhere: an engine dequantises them), and GPUs that hold the weights and
    one sequence at the row's context."""
    head = f"{where}: row {row.id}"
    try:
        spec = spec_profile(row.card)
        model = row.model_spec()
    except ServingError as e:
        raise ServingError(f"{head}: {e}") from None
    released = models.PRESETS[row.model].weight_dtypes()
    for fmt, as_released, what in ((row.formats[0], released[0], "weights"),
                                   (row.formats[1], released[1], "expert weights"),
                                   (row.kv_dtype, None, "KV cache")):
        if fmt is not None and fmt != as_released and not native_support(spec, fmt):
            raise ServingError(f"{head}: {row.card} has no {fmt} ({what}): its spec lists no matmul rate for it")
    try:
        rl = Roofline(Hardware(spec, label=row.card), model, deployment_for(row, kv_dtype="bf16"))
        mb = rl.max_batch(row.decode_context)
    except RooflineError as e:
        raise ServingError(f"{head}: {e}") from None
    if mb is not None and mb < 1:
        raise ServingError(f"{head}: {row.gpus} x {row.card} cannot hold {row.model} "
                           f"({rl.resident_bytes_per_gpu() / 1e9:.1f} GB of weights per GPU and one sequence "
                           f"of {row.decode_context} tokens)")


def deployment_for(row: ServingRow, kv_dtype: str) -> Deployment:
    """The roofline Deployment of a row: attention data parallel with the experts over ``ep`` GPUs, else tp × ep."""
    if row.attention_dp:
        return Deployment(tp=1, ep=row.ep, gpus=row.gpus, kv_dtype=kv_dtype)
    return Deployment(tp=row.tp, ep=row.ep, gpus=row.gpus, kv_dtype=kv_dtype)
