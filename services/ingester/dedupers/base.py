"""The near-duplicate detector contract (`loopline.dedupers`).

A flow names its detector under `ingest.near_duplicates`, e.g.
`near_duplicates: {plugin: minhash, options: {threshold: 0.85}}`. The ingester asks it about
every record that is not an exact duplicate, after redaction, with the record's text
(`services.ingester.dedup.record_text`); a record it names an earlier one for is dropped as a
duplicate. A third-party detector registers like a built-in::

    [project.entry-points."loopline.dedupers"]
    my-deduper = "my_package.dedup:MyDetector"
"""

from __future__ import annotations

from abc import abstractmethod

from shared.plugins import Plugin


class NearDuplicateDetector(Plugin):
    """Finds records whose text is nearly the same as one seen recently.

    Options: the constructor's keyword parameters, checked as `shared.plugins.Plugin` says.
    """

    @abstractmethod
    def check_and_add(self, key: str, text: str) -> str | None:
        """The key of a remembered text that `text` nearly duplicates; else `None`, and `text`
        is remembered under `key`.

        The same text checked twice names the first key the second time; a text unlike any
        remembered one is new (`None`). A detector may forget old texts (a window), but must
        not raise for any string, the empty one included.
        """

    def forget(self, key: str) -> None:
        """Forget the text remembered under `key`, if any.

        The ingester calls it for a record it asked about that was not published after all (the
        broker failed, the record was refused), so the client's retry is not its duplicate.
        Override it: this default cannot forget, and the ingester logs that it could not.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot forget a remembered text")
