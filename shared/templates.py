"""The template contract (`loopline.templates`): how a flow's records look in Argilla, and what
the annotators' answers to them mean.

Two services use a template: the argilla-publisher shows records with it (`settings`,
`to_record`), the exporter reads the answers with it (`questions`, `shown_responses`,
`originals`). The exporter knows nothing of question names: each question's `QuestionSpec`
says what kind of answer it takes and what role that answer plays, so a third-party template
with its own questions takes part in exports like a built-in one.

"Response i" in a spec is the i-th response the Argilla record shows (counting from 0), which
`shown_responses(record)` maps back to the Loopline record's responses.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Literal

from shared.events import Record
from shared.plugins import Plugin

if TYPE_CHECKING:
    import argilla as rg

QuestionKind = Literal["label", "multi_label", "rating", "ranking", "text"]


class TemplateRecordError(ValueError):
    """A record that this template cannot show (e.g. the wrong number of responses)."""


class QuestionRole(StrEnum):
    """What an answer says about the record's responses (the exporter builds rows from it).

    * ``none``: nothing the rows use (a comment, say); it is still aggregated and reported;
    * ``rating``: a person's rating of response ``response`` on the spec's ``scale``;
    * ``ranking``: the responses, best first; ``labels[i]`` is the value that names response i;
    * ``criteria``: the criteria response ``response`` meets (one point each);
      ``none_label``, if any, is the label that means "none of them";
    * ``verdict``: good or bad for response ``response``; the ``good`` labels mean good;
    * ``written_response``: a response a person wrote or corrected (it beats the models');
    * ``curated``: the final text of the original part ``field`` (see `Template.originals`):
      ``instruction`` and ``context`` replace the record's prompt, ``response`` is a written
      response (`CuratedPart`), any other part (``category``, ...) is only counted when
      changed.
    """

    none = "none"
    rating = "rating"
    ranking = "ranking"
    criteria = "criteria"
    verdict = "verdict"
    written_response = "written_response"
    curated = "curated"


class CuratedPart(StrEnum):
    """The parts of a record an export takes from ``curated`` answers (others are counted)."""

    instruction = "instruction"
    context = "context"
    response = "response"


# The kind of question each role needs.
_ROLE_KINDS: dict[QuestionRole, QuestionKind] = {
    QuestionRole.rating: "rating",
    QuestionRole.ranking: "ranking",
    QuestionRole.criteria: "multi_label",
    QuestionRole.verdict: "label",
    QuestionRole.written_response: "text",
    QuestionRole.curated: "text",
}
_PER_RESPONSE = (QuestionRole.rating, QuestionRole.criteria, QuestionRole.verdict)


@dataclass(frozen=True)
class QuestionSpec:
    """One question of a template: its name in Argilla, the answer it takes, what it means.

    * ``name``: the Argilla question's name;
    * ``kind``: ``label`` (one label), ``multi_label`` (a list of labels), ``rating`` (an
      integer of ``scale``), ``ranking`` (the ``labels`` ordered best first) or ``text``;
    * ``role``: what the answer says about the responses (`QuestionRole`);
    * ``response``: for ``rating``, ``criteria`` and ``verdict``: which shown response;
    * ``labels``: a label question's labels, in the order it lists them (a tied vote goes to
      the first), or a ranking's values (``labels[i]`` names response i);
    * ``scale``: a rating question's values, lowest first;
    * ``good``: for a ``verdict``: the labels that mean good (the others mean bad);
    * ``none_label``: for ``criteria``: the label that means "none of the criteria";
    * ``field``: for ``curated``: the original part the text is the final version of.

    A spec that does not hold together (a rating without a scale, a verdict whose good label
    is not one of its labels...) raises `ValueError`.
    """

    name: str
    kind: QuestionKind
    role: QuestionRole = QuestionRole.none
    response: int | None = None
    labels: tuple[str, ...] = ()
    scale: tuple[int, ...] = ()
    good: tuple[str, ...] = ()
    none_label: str | None = None
    field: str | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"question {self.name!r}: {problem}")

    def _problem(self) -> str | None:
        wanted = _ROLE_KINDS.get(self.role)
        if wanted is not None and self.kind != wanted:
            return f"role {self.role.value!r} needs a {wanted!r} question, not {self.kind!r}"
        if (self.role in _PER_RESPONSE) != (self.response is not None):
            need = "needs a" if self.response is None else "takes no"
            return f"role {self.role.value!r} {need} response index"
        if self.response is not None and self.response < 0:
            return "the response index counts from 0"
        if self.kind in ("label", "multi_label", "ranking") and not self.labels:
            return f"a {self.kind!r} question needs its labels"
        if len(set(self.labels)) != len(self.labels):
            return "labels repeat"
        if self.kind == "rating" and len(self.scale) < 2:
            return "a rating question needs a scale of at least two values"
        if list(self.scale) != sorted(set(self.scale)):
            return "the scale goes from lowest to highest, each value once"
        if self.role == QuestionRole.verdict and not (
            self.good and set(self.good) < set(self.labels)
        ):
            return "a verdict's good labels must be some, not all, of its labels"
        if self.none_label is not None and self.none_label not in self.labels:
            return f"the none label {self.none_label!r} is not one of the labels"
        if (self.role == QuestionRole.curated) != bool(self.field):
            return "a curated text, and only it, names the original part it curates"
        return None


class Template(Plugin):
    """The contract of a template plugin (entry-point group ``loopline.templates``).

    Built from the flow's ``publish.options`` as ``cls(**options)`` (see `Plugin`). Every
    template must provide:

    * ``name``: its plugin name;
    * ``settings(min_submitted)``: the Argilla dataset settings (`rg.Settings`): fields, the
      questions `questions()` declares (same names and kinds, one to one), metadata
      properties, guidelines, ``TaskDistribution(min_submitted)``; it must not need a server.
      ``min_submitted`` below 1 raises `ValueError`;
    * ``to_record(record)``: the Argilla record (`rg.Record`) of a Loopline record: id = the
      record id, its fields, and metadata whose ``loopline_record`` holds the whole record as
      JSON (`shared.argilla_metadata`), so the feedback collector gets the record back. A
      record the template cannot show raises `TemplateRecordError` with the reason;
    * ``questions()``: a `QuestionSpec` per question, what the exporter reads answers by.

    It may override ``shown_responses(record)`` (default: every response, in order) and
    ``originals(record)`` (default: nothing; a curation template returns what it showed).
    """

    name: ClassVar[str]

    @abstractmethod
    def settings(self, min_submitted: int) -> rg.Settings:
        """The dataset settings; a record is complete after `min_submitted` submissions."""

    @abstractmethod
    def to_record(self, record: Record) -> rg.Record:
        """The Argilla record of `record`, or `TemplateRecordError` when it cannot show it."""

    @abstractmethod
    def questions(self) -> tuple[QuestionSpec, ...]:
        """What each question asks and what its answers mean, in the settings' order."""

    def shown_responses(self, record: Record) -> tuple[int, ...]:
        """Indices into `record.responses` of the responses its Argilla record shows, in the
        order it shows them: "response i" of a `QuestionSpec` is `record.responses[shown[i]]`.
        """
        return tuple(range(len(record.responses)))

    def originals(self, record: Record) -> dict[str, str]:
        """The original text of each part a ``curated`` question edits (empty: none), so
        that an export counts the parts people changed."""
        return {}
