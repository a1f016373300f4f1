"""Reading rows from dataset files and folders, and mapping their columns to record fields.

The batch importer streams a source with `iter_rows`, turns each row into the raw input of a
`Record` with `Mapping.to_record_input`, and validates it: a row this module cannot parse
comes back as a `Row` with `error` set, and a row without a usable prompt fails validation, so
the importer can report both by `Row.number` and go on.

Sources are read as streams, never whole: JSON Lines line by line, CSV with `csv.DictReader`,
Parquet one record batch at a time and `datasets` folders (memory-mapped Arrow) in batches.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.chat import normalise_role

# --- Reading -------------------------------------------------------------------------------

FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet", "datasets")

_SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl",
    ".jsonlines": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # JSON Lines saved as .json; a JSON array is refused with a hint
    ".csv": "csv",
    ".tsv": "csv",  # read with a tab delimiter
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SUPPORTED = (
    "jsonl (.jsonl, .jsonlines, .ndjson, .json with one object per line), "
    "csv (.csv, .tsv), parquet (.parquet, .pq), "
    "datasets (a folder written by Dataset.save_to_disk or DatasetDict.save_to_disk)"
)
# Files a `save_to_disk` folder holds: a Dataset writes the first two, a DatasetDict the third.
_DATASET_MARKERS = ("state.json", "dataset_info.json")
_DATASET_DICT_MARKER = "dataset_dict.json"

BATCH_SIZE = 1_000  # rows per Parquet / datasets batch
_READ_CHUNK = 1 << 20


class SourceError(ValueError):
    """The source cannot be read at all: a missing path, an unknown format, a broken file."""


@dataclass(frozen=True)
class Row:
    """One row of a source: its data, or why it could not be parsed.

    `number` is the 1-based line number for JSON Lines, the 1-based data row number for CSV
    (the header is not counted) and the 1-based row index for Parquet and `datasets` (running
    on across the splits of a DatasetDict read whole).
    """

    number: int
    data: dict[str, Any] | None
    error: str | None = None


def detect_format(path: Path) -> str:
    """The format of `path`: "jsonl", "csv", "parquet" or "datasets"."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / _DATASET_DICT_MARKER).is_file() or any(
            (path / marker).is_file() for marker in _DATASET_MARKERS
        ):
            return "datasets"
        raise SourceError(
            f"{path}: a folder that is not a `datasets` save_to_disk folder (no "
            f"{_DATASET_DICT_MARKER}, {' or '.join(_DATASET_MARKERS)}); supported: {_SUPPORTED}"
        )
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; supported: {_SUPPORTED}"
        )
    return fmt


def iter_rows(path: Path, fmt: str | None = None, split: str | None = None) -> Iterator[Row]:
    """Stream the rows of `path` (format detected unless `fmt` is given).

    `split` picks one split of a DatasetDict folder; without it every split is read in order.
    Problems with the source as a whole raise `SourceError` at the call, not at the first row.
    """
    path = Path(path)
    fmt = _resolve(path, fmt, split)
    if fmt == "jsonl":
        _refuse_json_array(path)
        return _iter_jsonl(path)
    if fmt == "csv":
        return _iter_csv(path)
    if fmt == "parquet":
        _parquet_metadata(path)  # fail now on a file that is not Parquet
        return _iter_parquet(path)
    return _iter_datasets(_load_splits(path, split))


def count_rows(path: Path, fmt: str | None = None, split: str | None = None) -> int | None:
    """How many rows `iter_rows` yields for the same arguments, or None when not cheaply known.

    Parquet and `datasets` read it from their metadata; JSON Lines and CSV take one pass over
    the file without building rows (a CSV pass, so quoted fields spanning lines count once).
    """
    path = Path(path)
    fmt = _resolve(path, fmt, split)
    if fmt == "jsonl":
        _refuse_json_array(path)
        return _count_jsonl(path)
    if fmt == "csv":
        return _count_csv(path)
    if fmt == "parquet":
        rows = _parquet_metadata(path).num_rows
        return int(rows) if rows is not None else None
    return sum(len(dataset) for _, dataset in _load_splits(path, split))


def _resolve(path: Path, fmt: str | None, split: str | None) -> str:
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise SourceError(f"{path}: unknown format {fmt!r}; supported: {', '.join(FORMATS)}")
    elif not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if fmt == "datasets" and not path.is_dir():
        raise SourceError(f"{path}: a `datasets` source must be a save_to_disk folder")
    if fmt != "datasets" and path.is_dir():
        raise SourceError(f"{path}: is a folder, not a {fmt} file")
    if split is not None and fmt != "datasets":
        raise SourceError(f"{path}: a split can only be chosen in a `datasets` folder, not {fmt}")
    return fmt


# JSON Lines


def _refuse_json_array(path: Path) -> None:
    """A `.json` file holding one JSON array cannot be streamed line by line: say so."""
    if path.suffix.lower() != ".json":
        return
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        raise SourceError(
            f"{path}: a JSON array, not JSON Lines; convert it to one object per line "
            "(e.g. `jq -c '.[]' in.json > out.jsonl`)"
        )


def _iter_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield Row(number, None, f"not valid UTF-8: {exc.reason} at byte {exc.start}")
                continue
            except json.JSONDecodeError as exc:
                yield Row(number, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
                continue
            if not isinstance(value, dict):
                yield Row(number, None, f"expected a JSON object, got {_json_kind(value)}")
                continue
            yield Row(number, value, None)


def _count_jsonl(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for raw in f if raw.strip() and raw.strip() != b"\xef\xbb\xbf")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# CSV


def _allow_long_csv_fields() -> None:
    # The csv module refuses fields over 128 KiB by default; long documents are normal here.
    limit = sys.maxsize
    while True:
        try:
            if csv.field_size_limit() < limit:
                csv.field_size_limit(limit)
            return
        except OverflowError:  # a C long smaller than sys.maxsize (Windows)
            limit //= 2


def _open_csv(path: Path) -> Any:
    return path.open(encoding="utf-8-sig", newline="")


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _iter_csv(path: Path) -> Iterator[Row]:
    _allow_long_csv_fields()
    with _open_csv(path) as f:
        reader = csv.DictReader(f, delimiter=_delimiter(path), restkey=_EXTRA)
        number = 0
        while True:
            try:
                data = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                yield Row(number, None, f"invalid CSV: {exc}")
                continue
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{path}: not valid UTF-8 after data row {number}: {exc.reason}"
                ) from exc
            number += 1
            extra = data.pop(_EXTRA, None)
            if extra is not None:
                yield Row(
                    number,
                    None,
                    f"{len(reader.fieldnames or ()) + len(extra)} fields, "
                    f"the header has {len(reader.fieldnames or ())}",
                )
                continue
            yield Row(number, data, None)


_EXTRA = "\x00extra"  # DictReader's key for fields beyond the header's


def _count_csv(path: Path) -> int:
    _allow_long_csv_fields()
    rows = 0
    with _open_csv(path) as f:
        reader = csv.reader(f, delimiter=_delimiter(path))
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                rows += 1
                continue
            except UnicodeDecodeError as exc:
                raise SourceError(f"{path}: not valid UTF-8: {exc.reason}") from exc
            if row:  # DictReader skips blank lines too
                rows += 1
    return max(rows - 1, 0)  # the header


# Parquet


def _parquet_metadata(path: Path) -> Any:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path)
    except (pyarrow.ArrowException, OSError) as exc:
        raise SourceError(f"{path}: not a readable Parquet file: {exc}") from exc


def _iter_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    number = 0
    parquet = pq.ParquetFile(path)
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_SIZE):
            for data in batch.to_pylist():
                number += 1
                yield Row(number, data, None)
    finally:
        parquet.close()


# datasets folders


def _load_splits(path: Path, split: str | None) -> list[tuple[str | None, Any]]:
    """The (split name, Dataset) pairs to read, in order."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable `datasets` folder: {exc}") from exc
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded.keys())
        if split is None:
            return [(name, loaded[name]) for name in names]
        if split not in loaded:
            raise SourceError(
                f"{path}: no split {split!r}; the splits are: {', '.join(names) or '(none)'}"
            )
        return [(split, loaded[split])]
    own = None if loaded.split is None else str(loaded.split)
    if split is not None and split != own:
        raise SourceError(
            f"{path}: a single dataset without splits; no split {split!r} to choose "
            "(leave the split out)"
        )
    return [(own, loaded)]


def _iter_datasets(splits: list[tuple[str | None, Any]]) -> Iterator[Row]:
    number = 0
    for _, dataset in splits:
        columns = list(dataset.column_names)
        for batch in dataset.iter(batch_size=BATCH_SIZE):
            for values in zip(*(batch[c] for c in columns), strict=True):
                number += 1
                yield Row(number, dict(zip(columns, values, strict=True)), None)


# --- Mapping columns to record fields --------------------------------------------------------

METADATA_PREFIX = "metadata."
FIELDS: tuple[str, ...] = (
    "record_id",
    "instruction",
    "context",
    "system",
    "messages",
    "response",
    "chosen",
    "rejected",
    "tags",
    "category",
)
_FIELDS_HELP = ", ".join((*FIELDS, f"{METADATA_PREFIX}<name>"))

# column -> field. Auto-detection takes the preset with the most columns all present.
PRESETS: dict[str, dict[str, str]] = {
    # databricks/databricks-dolly-15k
    "dolly": {
        "instruction": "instruction",
        "context": "context",
        "response": "response",
        "category": "category",
    },
    # Intel/orca_dpo_pairs
    "orca_dpo": {
        "system": "system",
        "question": "instruction",
        "chosen": "chosen",
        "rejected": "rejected",
    },
    # tatsu-lab/alpaca and its many copies
    "alpaca": {"instruction": "instruction", "input": "context", "output": "response"},
    # TRL's preference format (chosen/rejected as text or as chats), e.g. ultrafeedback_binarized
    "dpo": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
    "prompt_completion": {"prompt": "instruction", "completion": "response"},
    # chat format: a list of {role, content}
    "messages": {"messages": "messages"},
    # ShareGPT: a list of {from: human|gpt|system, value}
    "sharegpt": {"conversations": "messages"},
}


def _check_field(name: str, spec: str) -> str:
    if name in FIELDS:
        return name
    if name.startswith(METADATA_PREFIX) and name[len(METADATA_PREFIX) :].strip():
        return METADATA_PREFIX + name[len(METADATA_PREFIX) :].strip()
    raise ValueError(f"unknown field {name!r} in --map {spec!r}; valid fields: {_FIELDS_HELP}")


def _preset_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return key


def detect_preset(columns: Sequence[str]) -> str | None:
    """The preset whose columns are all in `columns`, the one matching the most of them."""
    present = set(columns)
    best: str | None = None
    for name, preset in PRESETS.items():
        if set(preset) <= present and (best is None or len(preset) > len(PRESETS[best])):
            best = name
    return best


@dataclass(frozen=True)
class Mapping:
    """Which source column fills which record field (`fields`: field -> column)."""

    fields: dict[str, str] = field(default_factory=dict)
    preset: str | None = None

    @classmethod
    def from_options(
        cls,
        preset: str | None = None,
        maps: Sequence[str] = (),
        columns: Sequence[str] | None = None,
    ) -> Mapping:
        """A mapping from a preset and `--map column=field` options that override or extend it.

        With neither, the preset is detected from the source's `columns`.
        """
        user: dict[str, str] = {}
        for spec in maps:
            column, sep, name = spec.rpartition("=")
            column = column.strip()
            if not sep or not column:
                raise ValueError(
                    f"--map {spec!r} is not `column=field`; valid fields: {_FIELDS_HELP}"
                )
            target = _check_field(name.strip(), spec)
            if target in user and user[target] != column:
                raise ValueError(
                    f"field {target!r} is mapped from two columns: {user[target]!r} and {column!r}"
                )
            user[target] = column

        if preset is not None:
            preset = _preset_name(preset)
        elif not user:
            if columns is None:
                raise ValueError(
                    "cannot detect a preset without the source's columns; "
                    f"choose a preset ({', '.join(PRESETS)}) or map columns with --map"
                )
            preset = detect_preset(columns)
            if preset is None:
                raise ValueError(
                    f"no preset fits the columns {', '.join(columns) or '(none)'}; choose a "
                    f"preset ({', '.join(PRESETS)}) or map columns with --map column=field "
                    f"(fields: {_FIELDS_HELP})"
                )

        fields: dict[str, str] = {}
        if preset is not None:
            user_columns = set(user.values())
            for column, target in PRESETS[preset].items():
                # A --map of the same column or to the same field replaces the preset's entry.
                if column not in user_columns and target not in user:
                    fields[target] = column
        fields.update(user)
        return cls(fields=fields, preset=preset)

    @property
    def columns(self) -> list[str]:
        """The source columns this mapping reads."""
        return list(dict.fromkeys(self.fields.values()))

    def to_record_input(self, data: dict[str, Any], flow: str, source_name: str) -> dict[str, Any]:
        """The raw input of `Record.model_validate` for one row. Never raises on missing
        values: validating the result reports a row without a prompt."""
        values = {f: data[c] for f, c in self.fields.items() if data.get(c) is not None}

        record_id = _text(values.get("record_id"))
        instruction = _text(values.get("instruction"))
        context = _text(values.get("context"))
        system = _text(values.get("system"))
        messages = _chat(values.get("messages"))

        chosen = _response_text(values.get("chosen"))
        rejected = _response_text(values.get("rejected"))
        response = _response_text(values.get("response"))

        if isinstance(messages, list):
            if system is not None and not (messages and _role(messages[0]) == "system"):
                messages = [{"role": "system", "content": system}, *messages]
            if (
                response is None
                and chosen is None
                and rejected is None
                and messages
                and _role(messages[-1]) == "assistant"
                and isinstance(messages[-1].get("content"), str)
            ):
                response = _text(messages[-1]["content"])
                messages = messages[:-1]
        elif messages is None and system is not None and instruction is not None:
            # The same user turn Record.prompt_messages builds from instruction and context.
            user_text = instruction if context is None else f"{instruction}\n\n{context}"
            messages = [
                {"role": "system", "content": system},
                {"role": "user", "content": user_text},
            ]
            instruction = None

        responses: list[dict[str, Any]] = []
        preference: dict[str, int] = {}
        for kind, text in (("chosen", chosen), ("rejected", rejected), ("response", response)):
            if text is None:
                continue
            if kind != "response":
                preference[kind] = len(responses)
            responses.append({"text": text, "model": source_name, "source": "dataset"})

        metadata: dict[str, Any] = {}
        category = _text(values.get("category"))
        if category is not None:
            metadata["category"] = category
        for target, value in values.items():
            if target.startswith(METADATA_PREFIX) and not (
                isinstance(value, str) and not value.strip()
            ):
                metadata[target[len(METADATA_PREFIX) :]] = value
        metadata.setdefault("source", source_name)
        if preference:
            metadata["preference"] = preference

        record: dict[str, Any] = {"flow": flow}
        if record_id is not None:
            record["record_id"] = record_id
        if instruction is not None:
            record["instruction"] = instruction
        if messages is not None:
            record["messages"] = messages
        if context is not None:
            record["context"] = context
        if responses:
            record["responses"] = responses
        record["metadata"] = metadata
        tags = _tags(values.get("tags"))
        if tags:
            record["tags"] = tags
        return record


def _text(value: Any) -> str | None:
    """A string field's value: None for missing or blank, str() of anything else."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else None


def _chat(value: Any) -> Any:
    """A chat as a list of {role, content}, from {role, content} or ShareGPT {from, value}
    items, or a JSON string of either. What cannot be read is returned as it is, for `Record`
    validation to reject."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if not isinstance(value, list | tuple):
        return value
    messages: list[Any] = []
    for item in value:
        if not isinstance(item, dict):
            messages.append(item)
            continue
        role = item.get("role", item.get("from"))
        if isinstance(role, str):
            role = normalise_role(role) or role
        content = item.get("content", item.get("value"))
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            texts = [p.get("text") for p in content if isinstance(p, dict)]
            if all(isinstance(t, str) for t in texts):
                content = "\n".join(t for t in texts if t)
        messages.append({"role": role, "content": content})
    return messages


def _looks_like_chat(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(
            isinstance(m, dict)
            and ("role" in m or "from" in m)
            and ("content" in m or "value" in m)
            for m in value
        )
    )


def _response_text(value: Any) -> str | None:
    """A response's text: the value itself, or the last assistant turn of a chat."""
    if isinstance(value, str) and value.lstrip().startswith("[") and value.rstrip().endswith("]"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if _looks_like_chat(parsed):
            value = parsed
    if _looks_like_chat(value):
        for message in reversed(_chat(value)):
            if message.get("role") == "assistant":
                return _text(message.get("content"))
        return None
    return _text(value)


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return _tags(parsed)
        items: Sequence[Any] = stripped.split(",")
    elif isinstance(value, list | tuple | set):
        items = list(value)
    else:
        items = [value]
    tags = (str(t).strip() for t in items if t is not None)
    return list(dict.fromkeys(t for t in tags if t))
