"""The flow file: per flow, which plugins each stage uses and with which options.

```yaml
flows:
  support-bot:
    route: {plugin: all}
    generate:
      - {plugin: openai, generations: 2, options: {model: qwen2.5-coder-1.5b-instruct}}
    judge: {plugin: multi-aspect}
    publish: {plugin: preference}
    export: {formats: [{plugin: dpo}, {plugin: sft}], every_records: 1000}
```
A stage a flow leaves out is skipped. A bad file fails at startup with the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.events import RECORDS_GENERATED, RECORDS_INGESTED, RECORDS_JUDGED
from shared.plugins import (
    PluginKind,
    PluginLoadError,
    PluginOptionsError,
    PluginRegistry,
    UnknownPluginError,
)


class FlowFileError(ValueError):
    """The flow file cannot be used; the message names the file and the bad key."""


class PluginRef(BaseModel):
    """A plugin by name, with its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plugin: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class ModelRef(PluginRef):
    """An LLM plugin and how many candidate responses it generates per record."""

    generations: int = Field(default=1, ge=1, le=16)


class JudgeRef(PluginRef):
    """A rubric plugin, the LLM that judges with it, and how often each record is judged."""

    llm: PluginRef | None = None  # default: the `openai` plugin at LOOPLINE_LLM__*
    repeats: int = Field(default=1, ge=1, le=8)
    max_tokens: int = Field(default=800, ge=64)
    temperature: float = Field(default=0.0, ge=0, le=2)


class ReviewWhen(BaseModel):
    """Which judged records people see; the others are auto-accepted (`shared/review.py`).

    A record goes to people when any condition holds: no judgment succeeded
    (`judgment_failed`), the judge's margin (best minus worst score) is below `margin_below`,
    repeated judgments agree less than `agreement_below`; else, a `sample_rate` share of the
    rest goes to people for audit (the same records every time: by record id).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    judgment_failed: bool = True
    margin_below: float | None = Field(default=None, gt=0)
    agreement_below: float | None = Field(default=None, gt=0, le=1)
    sample_rate: float = Field(default=0.0, ge=0, le=1)


class PublishRef(PluginRef):
    """An Argilla template plugin and where and how its records are annotated."""

    dataset: str | None = None  # default: the flow's name
    workspace: str | None = None  # default: LOOPLINE_ARGILLA__WORKSPACE
    min_submitted: int = Field(default=1, ge=1)  # overlap: submissions a record needs
    # split: each record goes to exactly one of `annotators`, in a workspace of their own
    mode: Literal["overlap", "split"] = "overlap"
    annotators: list[str] = Field(default_factory=list)
    # a dataset whose settings differ from the template: fail, or publish to `<name>-v<N>`
    on_settings_change: Literal["fail", "new_version"] = "fail"
    batch_size: int = Field(default=256, ge=1)
    flush_interval_s: float = Field(default=2.0, gt=0)
    # Which judged records people see (default: all of them); the rest are auto-accepted.
    when: ReviewWhen | None = None

    @model_validator(mode="after")
    def _split_needs_annotators(self) -> PublishRef:
        if self.mode == "split" and not self.annotators:
            raise ValueError("mode 'split' needs a list of `annotators`")
        return self


class AutoAccept(BaseModel):
    """When a judged record counts as accepted without people (all conditions must hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_repeats: int = Field(default=1, ge=1)  # successful judgments the record needs
    min_margin: float = Field(default=0.0, ge=0)  # best minus worst score, in every judgment
    min_agreement: float | None = Field(default=None, ge=0, le=1)  # across repeats


class HubTarget(BaseModel):
    """Where each new version is pushed on the Hub (token: LOOPLINE_EXPORT__HF_TOKEN)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_id: str = Field(min_length=3, pattern=r"^[\w.-]+/[\w.-]+$")
    private: bool = True


class ExportRef(BaseModel):
    """Which dataset formats a flow exports, when, and what counts as accepted.

    A plain list is short for `formats`: `export: [{plugin: dpo}]`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    formats: list[PluginRef] = Field(default_factory=list)
    every_records: int = Field(default=1000, ge=0)  # new version after N changed records; 0: off
    every_s: float = Field(default=3600.0, ge=0)  # or this long after a change; 0: off
    test_size: float = Field(default=0.1, ge=0, lt=1)
    split_seed: str = "loopline"
    # Judged records accepted without people. Default: every judged record when the flow has
    # no `publish` stage, none when it has one (people decide).
    auto_accept: AutoAccept | None = None
    push_to_hub: HubTarget | None = None

    @model_validator(mode="before")
    @classmethod
    def _list_is_formats(cls, value: Any) -> Any:
        return {"formats": value} if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_version_line_per_format(self) -> ExportRef:
        names = [ref.plugin for ref in self.formats]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"formats {repeated} appear more than once (one per flow)")
        return self


class DedupOptions(BaseModel):
    """Exact-duplicate dropping: same normalised content within `window_s` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    window_s: float = Field(default=24 * 3600, gt=0)
    max_entries: int = Field(default=1_000_000, ge=1)


class IngestOptions(BaseModel):
    """What the ingester does to a flow's records before routing them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redact: PluginRef | None = None
    dedup: DedupOptions = Field(default_factory=DedupOptions)
    near_duplicates: PluginRef | None = None


class SampleRef(BaseModel):
    """A small sample of the data a flow stands for (`loopline demo` imports it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)  # relative to the flow file's folder
    preset: str | None = None  # column mapping preset (`loopline ingest --preset`)
    map: list[str] = Field(default_factory=list)  # column=field, as `loopline ingest --map`


class Flow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    sample: SampleRef | None = None
    ingest: IngestOptions = Field(default_factory=IngestOptions)
    route: PluginRef | None = None
    generate: list[ModelRef] = Field(default_factory=list)
    # Records that arrive with the app's own response: generate extra candidates to compare?
    generate_if_answered: bool = True
    judge: JudgeRef | None = None
    publish: PublishRef | None = None
    export: ExportRef = Field(default_factory=ExportRef)

    def plugin_refs(self) -> list[tuple[str, PluginKind, PluginRef]]:
        """Every plugin the flow names, with the key it sits under and its kind."""
        refs: list[tuple[str, PluginKind, PluginRef]] = []
        singles = (
            (self.ingest.redact, "ingest.redact", PluginKind.redactors),
            (self.ingest.near_duplicates, "ingest.near_duplicates", PluginKind.dedupers),
            (self.route, "route", PluginKind.routers),
            (self.judge, "judge", PluginKind.rubrics),
            (self.publish, "publish", PluginKind.templates),
        )
        for single, key, kind in singles:
            if single is not None:
                refs.append((key, kind, single))
        if self.judge is not None and self.judge.llm is not None:
            refs.append(("judge.llm", PluginKind.llms, self.judge.llm))
        lists: tuple[tuple[list[Any], str, PluginKind], ...] = (
            (self.generate, "generate", PluginKind.llms),
            (self.export.formats, "export.formats", PluginKind.formats),
        )
        for items, key, kind in lists:
            refs.extend((f"{key}.{i}", kind, ref) for i, ref in enumerate(items))
        return refs


class FlowsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    flows: dict[str, Flow] = Field(min_length=1)

    def get(self, name: str) -> Flow:
        try:
            return self.flows[name]
        except KeyError:
            raise KeyError(
                f"unknown flow {name!r}; defined: {', '.join(sorted(self.flows))}"
            ) from None


def next_topic(flow: Flow, after: str) -> str:
    """The topic a record goes to after stage `after`: the input of the next stage the flow uses.

    Stages a flow leaves out are skipped without a round trip through their service. A record
    with no stage left waits on `records.judged` (the publisher's input), whose absence of a
    `publish` stage the exporter will treat as auto-accept.
    """
    order = ("ingest", "generate", "judge", "publish")
    inputs = {"generate": RECORDS_INGESTED, "judge": RECORDS_GENERATED, "publish": RECORDS_JUDGED}
    uses = {
        "generate": bool(flow.generate),
        "judge": flow.judge is not None,
        "publish": flow.publish is not None,
    }
    for stage in order[order.index(after) + 1 :]:
        if uses[stage]:
            return inputs[stage]
    return RECORDS_JUDGED


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    if error["type"] == "missing":
        return f"{location}: required key is missing"
    return f"{location}: {error['msg']}"


def parse_flows(data: Any, source: str) -> FlowsConfig:
    """Validate already-parsed YAML; errors name `source` and each bad key."""
    try:
        return FlowsConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())
        raise FlowFileError(f"{source}: {problems}") from None


FLOW_SUFFIXES = (".yaml", ".yml")


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise FlowFileError(f"{path}: cannot read flow file: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowFileError(f"{path}: not valid YAML: {exc}") from None


def load_flows(path: Path) -> FlowsConfig:
    """Read and validate flows: a folder of flow files, or one file.

    In a folder, each `*.yaml` file is one flow named after the file (`flows/code-eval.yaml` is
    the flow `code-eval`) and holds that flow's keys. One file holds `flows: {name: {...}}`.
    Errors name the file and the bad key.
    """
    if not path.is_dir():
        single = parse_flows(_read_yaml(path), str(path))
        return FlowsConfig(
            flows={name: _with_sample_beside(flow, path) for name, flow in single.flows.items()}
        )
    files = sorted(p for p in path.iterdir() if p.suffix in FLOW_SUFFIXES and p.is_file())
    if not files:
        raise FlowFileError(f"{path}: a flows folder needs at least one *.yaml flow file")
    flows: dict[str, Flow] = {}
    for file in files:
        data = _read_yaml(file)
        if isinstance(data, dict) and "flows" in data:
            raise FlowFileError(
                f"{file}: a file in a flows folder is one flow (its keys at the top level, "
                f"named after the file), not a `flows:` mapping"
            )
        one = parse_flows({"flows": {file.stem: data}}, str(file))
        flows[file.stem] = _with_sample_beside(one.flows[file.stem], file)
    return FlowsConfig(flows=flows)


def _with_sample_beside(flow: Flow, file: Path) -> Flow:
    """A flow whose `sample.path` is relative to the folder of its flow file (and exists)."""
    if flow.sample is None:
        return flow
    path = (file.parent / flow.sample.path).resolve()
    if not path.is_file():
        raise FlowFileError(f"{file}: sample.path: no such file {str(path)!r}")
    sample = flow.sample.model_copy(update={"path": str(path)})
    return flow.model_copy(update={"sample": sample})


def check_plugins(flows: FlowsConfig, registry: PluginRegistry, source: str) -> None:
    """Fail unless every plugin every flow names is installed and takes the options it is given.

    Each plugin is built through its contract, as the services build it, so a flow file that
    passes here does not stop a service at start.
    """
    problems: list[str] = []
    for flow_name, flow in flows.flows.items():
        for key, kind, ref in flow.plugin_refs():
            where = f"flows.{flow_name}.{key}"
            try:
                registry.build(kind, ref.plugin, ref.options)
            except UnknownPluginError as exc:
                problems.append(f"{where}.plugin: {exc}")
            except (PluginOptionsError, PluginLoadError) as exc:
                problems.append(f"{where}.options: {exc}")
    if problems:
        raise FlowFileError(f"{source}: " + "; ".join(problems))
