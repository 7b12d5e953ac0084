"""Identity layer: phone and email normalisation, identity choice and duplicate grouping.

Pure functions over pandas objects; the Dagster assets call them.
"""

from ct_pipeline.identity.choice import IdentityPolicy, choose_identity
from ct_pipeline.identity.emails import normalize_emails
from ct_pipeline.identity.groups import DuplicateGroups, GroupingOptions, find_duplicate_groups
from ct_pipeline.identity.phones import PhoneOptions, normalize_phones

__all__ = [
    "DuplicateGroups",
    "GroupingOptions",
    "IdentityPolicy",
    "PhoneOptions",
    "choose_identity",
    "find_duplicate_groups",
    "normalize_emails",
    "normalize_phones",
]
