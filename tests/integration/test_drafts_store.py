"""Drafts in every backend: one per journey, written only from the revision it is at."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from journeyman.storage import Database
from journeyman.storage.drafts import DraftStore, StoredDraft
from tests.conftest import START
from tests.stores import run

DOCUMENT: dict[str, Any] = {
    "kind": "journey",
    "name": "onboard",
    "entry": {"event": "signed_up", "when": 'event.plan != "ü"'},
    "steps": [{"id": "done", "end": None}],
}


def draft(revision: str, by: str, **changes: Any) -> StoredDraft:
    at = START + timedelta(seconds=len(revision))
    return StoredDraft("onboard", revision, by, at, "journeys/onboard.yaml", DOCUMENT | changes)


def test_a_draft_is_kept_as_saved_and_replaced_only_from_its_revision(store: Database) -> None:
    async def check() -> None:
        assert isinstance(store, DraftStore)
        assert await store.draft("onboard") is None
        assert await store.save_draft(draft("r1", "ana"), None)
        assert await store.draft("onboard") == draft("r1", "ana")
        # Bob, who opened no draft, cannot create one over Ana's.
        assert not await store.save_draft(draft("r2", "bob"), None)
        assert await store.save_draft(draft("r22", "bob", description="b"), "r1")
        # Ana, still at r1, is refused; the draft stays Bob's.
        assert not await store.save_draft(draft("r333", "ana"), "r1")
        assert await store.draft("onboard") == draft("r22", "bob", description="b")
        assert not await store.discard_draft("onboard", "r1")
        assert await store.discard_draft("onboard", "r22")
        assert await store.draft("onboard") is None
        assert not await store.discard_draft("onboard")
        assert not await store.save_draft(draft("r4", "ana"), "r22")
        assert await store.draft("onboard") is None

    run(store, check)
