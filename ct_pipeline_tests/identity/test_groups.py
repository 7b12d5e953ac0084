"""find_duplicate_groups links true duplicates and never chains strangers through shared values."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ct_pipeline.identity import GroupingOptions, find_duplicate_groups
from ct_pipeline.identity.groups import _masked, mask_value

OFFICE = "+91 80 2345 6789"
SMALL_POOL = [f"+91 98{index:03d} 4567{index % 10}" for index in range(6)]


def crm(rows: list[dict]) -> pd.DataFrame:
    """Records with defaults for the columns a test does not care about."""
    defaults = {
        "module": "Contacts",
        "Modified_Time": "2024-01-01T00:00:00Z",
        "deal_count": 0,
        "Mobile": None,
        "Phone": None,
        "Email": None,
        "identity": None,
    }
    return pd.DataFrame([{**defaults, **row} for row in rows])


def test_contact_and_lead_sharing_a_mobile_are_one_group() -> None:
    records = crm(
        [
            {"id": "c1", "Mobile": "98123 45678"},
            {"id": "l1", "module": "Leads", "Mobile": "+919812345678"},
        ]
    )
    result = find_duplicate_groups(records).records
    assert result["group_id"].nunique() == 1
    assert (result["group_status"] == "merged").all()


def test_shared_office_number_does_not_chain_strangers() -> None:
    strangers = [{"id": f"c{index}", "Phone": OFFICE} for index in range(8)]
    result = find_duplicate_groups(crm(strangers), GroupingOptions(max_records_per_value=5))
    assert result.records["group_id"].nunique() == 8
    assert result.suppressed["records"].tolist() == [8]


def test_office_number_cannot_bridge_two_real_duplicates() -> None:
    rows = [
        {"id": "a1", "Mobile": "98123 45678", "Phone": OFFICE},
        {"id": "a2", "Mobile": "98123 45678"},
        {"id": "b1", "Mobile": "98765 12345", "Phone": OFFICE},
        {"id": "b2", "Mobile": "98765 12345"},
    ] + [{"id": f"x{index}", "Phone": OFFICE} for index in range(5)]
    groups = find_duplicate_groups(crm(rows)).records.set_index(crm(rows)["id"])["group_id"]
    assert groups["a1"] == groups["a2"]
    assert groups["b1"] == groups["b2"]
    assert groups["a1"] != groups["b1"]


def test_placeholder_values_do_not_link() -> None:
    rows = [{"id": "c1", "Mobile": "9999999999"}, {"id": "c2", "Mobile": "99999 99999"}]
    rows += [{"id": "c3", "Email": "test@test.com"}, {"id": "c4", "Email": "test@test.com"}]
    assert find_duplicate_groups(crm(rows)).records["group_id"].nunique() == 4


def test_group_larger_than_the_limit_is_flagged_not_merged() -> None:
    chain = [{"id": f"c{i}", "Mobile": SMALL_POOL[i], "Email": f"p{i}@acme.in"} for i in range(4)]
    chain += [
        {"id": f"d{i}", "Mobile": SMALL_POOL[i], "Email": f"p{i + 1}@acme.in"} for i in range(4)
    ]
    result = find_duplicate_groups(crm(chain), GroupingOptions(max_group_size=3)).records
    assert (result["group_status"] == "oversized").all()
    assert result["is_canonical"].all()


def test_canonical_prefers_contact_then_deals_then_most_recent() -> None:
    rows = [
        {"id": "lead", "module": "Leads", "Mobile": SMALL_POOL[0], "deal_count": 3},
        {"id": "old", "Mobile": SMALL_POOL[0], "Modified_Time": "2023-01-01T00:00:00Z"},
        {"id": "new", "Mobile": SMALL_POOL[0], "Modified_Time": "2024-06-01T00:00:00Z"},
        {"id": "dealer", "Mobile": SMALL_POOL[0], "deal_count": 1},
    ]
    result = find_duplicate_groups(crm(rows)).records
    assert set(result["canonical_id"]) == {"dealer"}


def test_canonical_order_is_configurable() -> None:
    rows = [
        {"id": "lead", "module": "Leads", "Mobile": SMALL_POOL[0], "deal_count": 3},
        {"id": "contact", "Mobile": SMALL_POOL[0]},
    ]
    options = GroupingOptions(canonical_order=("deals", "module", "modified"))
    assert set(find_duplicate_groups(crm(rows), options).records["canonical_id"]) == {"lead"}


def test_links_keep_the_value_that_made_them_masked_and_hashed() -> None:
    rows = [{"id": "c1", "Mobile": "98123 45678"}, {"id": "c2", "Mobile": "+91 98123 45678"}]
    links = find_duplicate_groups(crm(rows)).links
    assert links["value"].tolist() == ["+919812345678", "+919812345678"]
    assert links["value_masked"].tolist() == ["+91******5678", "+91******5678"]
    assert links["value_hash"].nunique() == 1
    assert links["field"].tolist() == ["Mobile", "Mobile"]


def test_two_canonical_people_with_one_identity_are_a_collision() -> None:
    rows = [{"id": f"c{index}", "Phone": OFFICE, "identity": "+918023456789"} for index in range(7)]
    result = find_duplicate_groups(crm(rows))
    assert result.records["identity_collision"].all()
    assert result.collisions["people"].tolist() == [7]
    assert result.collisions["identity_masked"].tolist() == ["+91******6789"]


def test_merged_duplicates_sharing_an_identity_are_not_a_collision() -> None:
    rows = [
        {"id": "c1", "Mobile": SMALL_POOL[1], "identity": "+919800145671"},
        {"id": "c2", "Mobile": SMALL_POOL[1], "identity": "+919800145671"},
    ]
    result = find_duplicate_groups(crm(rows))
    assert not result.records["identity_collision"].any()
    assert result.collisions.empty


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, *SMALL_POOL]), st.sampled_from([None, "a@x.in", "b@x.in"])
        ),
        min_size=1,
        max_size=25,
    )
)
def test_groups_are_the_components_of_records_sharing_a_linking_value(rows: list) -> None:
    records = crm([{"id": f"r{i}", "Mobile": m, "Email": e} for i, (m, e) in enumerate(rows)])
    options = GroupingOptions(max_records_per_value=4, max_group_size=1000)
    groups = find_duplicate_groups(records, options).records["group_id"].tolist()

    values = [[v for v in (m and m.replace(" ", ""), e) if v] for m, e in rows]
    holders: dict[str, list[int]] = {}
    for index, record_values in enumerate(values):
        for value in record_values:
            holders.setdefault(value, []).append(index)
    parent = list(range(len(rows)))

    def root(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    for members in holders.values():
        if 2 <= len(members) <= 4:
            for member in members[1:]:
                parent[root(member)] = root(members[0])
    for left in range(len(rows)):
        for right in range(len(rows)):
            same_group = groups[left] == groups[right]
            assert same_group == (root(left) == root(right)), f"records {left} and {right}"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.sampled_from(list("+0123456789@abc.é")), max_size=20), max_size=20))
def test_masks_in_frames_are_the_display_masks(values: list[str]) -> None:
    assert _masked(pa.array(values, type=pa.string())).to_pylist() == [
        mask_value(value) for value in values
    ]


def test_mask_hides_all_but_the_ends_of_a_number() -> None:
    assert mask_value("+919812345678") == "+91******5678"
    assert mask_value("priya@acme.in") == "p***@acme.in"
