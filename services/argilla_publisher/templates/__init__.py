"""The built-in template plugins (`loopline.templates`), one per module; what they share is in
`base.py`, their default guidelines in `guidelines/*.md`, and the contract they implement in
`shared.templates`."""

from __future__ import annotations

from services.argilla_publisher.templates.code_scoring import CodeScoringTemplate
from services.argilla_publisher.templates.curation import CurationTemplate
from services.argilla_publisher.templates.preference import PreferenceTemplate
from services.argilla_publisher.templates.sft_demonstration import SFTDemonstrationTemplate
from services.argilla_publisher.templates.thumbs import ThumbsTemplate
from shared.templates import Template

# The built-ins by plugin name (the entry points in pyproject.toml name the same classes).
TEMPLATES: dict[str, type[Template]] = {
    template.name: template
    for template in (
        PreferenceTemplate,
        SFTDemonstrationTemplate,
        CurationTemplate,
        CodeScoringTemplate,
        ThumbsTemplate,
    )
}
