"""Accepted profile hashes: journalled per batch, read as pushed at once, folded in one pass."""

from __future__ import annotations

import pandas as pd

from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import (
    PUSH_JOURNAL,
    PUSHED_PROFILES,
    fold_accepted_profiles,
    pushed_hashes,
    record_accepted_profiles,
)


def accepted(*pairs: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "identity": [identity for identity, _ in pairs],
            "payload_hash": [digest for _, digest in pairs],
            "contact_id": [f"c-{identity}" for identity, _ in pairs],
        }
    )


def journal(warehouse: WarehouseResource, *batches: pd.DataFrame) -> None:
    for batch in batches:
        with warehouse.transaction() as tx:
            record_accepted_profiles(tx, batch)


def test_journalled_hashes_count_as_pushed_before_they_are_folded(warehouse: WarehouseResource):
    journal(warehouse, accepted(("+911", "a"), ("+912", "b")))

    assert pushed_hashes(warehouse).to_dict() == {"+911": "a", "+912": "b"}
    assert pushed_hashes(warehouse, ["+912"]).to_dict() == {"+912": "b"}
    assert warehouse.read_table(PUSHED_PROFILES).empty


def test_folding_keeps_the_newest_hash_of_each_identity_and_empties_the_journal(
    warehouse: WarehouseResource,
):
    journal(warehouse, accepted(("+911", "a"), ("+912", "b")))
    fold_accepted_profiles(warehouse)
    journal(warehouse, accepted(("+911", "old")), accepted(("+911", "new"), ("+913", "c")))

    assert pushed_hashes(warehouse).to_dict() == {"+911": "new", "+912": "b", "+913": "c"}
    assert fold_accepted_profiles(warehouse) == 2

    stored = warehouse.read_table(PUSHED_PROFILES).set_index("identity")
    assert stored["payload_hash"].to_dict() == {"+911": "new", "+912": "b", "+913": "c"}
    assert stored.loc["+913", "contact_id"] == "c-+913"
    assert warehouse.read_table(PUSH_JOURNAL).empty
    assert fold_accepted_profiles(warehouse) == 0
