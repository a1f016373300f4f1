"""What every plugin of every kind must do: derive from its kind's contract, and refuse an
option it does not take, naming the option and every option it accepts (so a typo in a flow
file fails at `loopline check-flows`, not in a running service).

Runs over every installed entry point of every kind: `pytest tests/contracts -k my-plugin`
checks a third party's plugin as soon as its package is installed. The behaviour each kind
owes is checked by that kind's own suite beside this one.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.annotators.base import AnnotatorPolicy
from services.exporter.formats.base import Format
from services.ingester.dedupers.base import NearDuplicateDetector
from services.ingester.redactors.base import Redactor
from services.ingester.routers.base import Router
from services.judge.rubrics.base import Rubric
from shared.llm.base import LLM
from shared.plugins import Plugin, PluginKind, PluginRegistry
from shared.templates import Template
from tests.contracts import (
    test_annotators,
    test_dedupers,
    test_llms,
    test_redactors,
    test_routers,
    test_rubrics,
    test_templates,
)
from tests.contracts.common import check_unknown_option_is_refused, installed

# Each kind's contract, and the least options its plugins need to be built (by name).
CONTRACTS: dict[PluginKind, tuple[type[Plugin], dict[str, dict[str, Any]]]] = {
    PluginKind.llms: (LLM, test_llms.MINIMAL_OPTIONS),
    PluginKind.rubrics: (Rubric, test_rubrics.MINIMAL_OPTIONS),
    PluginKind.routers: (Router, test_routers.MINIMAL_OPTIONS),
    PluginKind.redactors: (Redactor, test_redactors.MINIMAL_OPTIONS),
    PluginKind.dedupers: (NearDuplicateDetector, test_dedupers.MINIMAL_OPTIONS),
    PluginKind.templates: (Template, test_templates.MINIMAL_OPTIONS),
    PluginKind.formats: (Format, {}),
    PluginKind.annotators: (AnnotatorPolicy, test_annotators.MINIMAL_OPTIONS),
}
PLUGINS = [(kind, name) for kind in PluginKind for name in installed(kind)]
IDS = [f"{kind.value}-{name}" for kind, name in PLUGINS]


def test_every_kind_has_a_contract_and_plugins() -> None:
    assert set(CONTRACTS) == set(PluginKind)
    assert {kind for kind, _ in PLUGINS} == set(PluginKind)


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=IDS)
def test_derives_from_the_contract(kind: PluginKind, name: str) -> None:
    factory = PluginRegistry().load(kind, name)
    contract, _ = CONTRACTS[kind]
    assert isinstance(factory, type) and issubclass(factory, contract)


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=IDS)
def test_an_unknown_option_is_refused_naming_it_and_the_accepted_ones(
    kind: PluginKind, name: str
) -> None:
    _, minimal = CONTRACTS[kind]
    check_unknown_option_is_refused(PluginRegistry(), kind, name, minimal.get(name, {}))
