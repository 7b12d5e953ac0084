"""How reads of many fields are split into calls and joined back."""

import pandas as pd

from ct_pipeline.zoho.records import MAX_FIELDS_PER_CALL, _join_chains, field_groups


def test_fifty_fields_or_fewer_take_one_call():
    groups = field_groups([f"F{i}" for i in range(MAX_FIELDS_PER_CALL - 1)])

    assert len(groups) == 1
    assert len(groups[0]) == MAX_FIELDS_PER_CALL


def test_more_than_fifty_fields_split_and_each_call_carries_modified_time():
    fields = [f"F{i}" for i in range(120)]

    groups = field_groups(fields)

    assert all(len(group) <= MAX_FIELDS_PER_CALL for group in groups)
    assert all(group[0] == "Modified_Time" for group in groups)
    assert [name for group in groups for name in group[1:]] == fields


def _chain(rows):
    frame = pd.DataFrame(rows, columns=["id", "Modified_Time", "value"])
    frame["Modified_Time"] = pd.to_datetime(frame["Modified_Time"], utc=True)
    return frame


def test_chains_join_by_id_keeping_only_records_both_saw_in_the_same_version():
    first = _chain([["1", "2024-01-01T00:00:01Z", "a"], ["2", "2024-01-01T00:00:02Z", "b"]])
    second = _chain(
        [
            ["1", "2024-01-01T00:00:01Z", "A"],
            ["2", "2024-01-01T00:00:09Z", "B"],
            ["3", "2024-01-01T00:00:10Z", "C"],
        ]
    ).rename(columns={"value": "other"})

    joined = _join_chains([first, second])

    assert joined["id"].tolist() == ["1"]
    assert joined[["value", "other"]].iloc[0].tolist() == ["a", "A"]


def test_an_empty_chain_makes_the_join_empty():
    first = _chain([["1", "2024-01-01T00:00:01Z", "a"]])

    assert len(_join_chains([first, first.iloc[0:0]])) == 0
