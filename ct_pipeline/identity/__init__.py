"""Identity layer: phone and email normalisation, identity choice and duplicate grouping.

Pure functions over pandas objects; the Dagster assets call them.
"""

from ct_pipeline.identity.emails import normalize_emails
from ct_pipeline.identity.phones import PhoneOptions, normalize_phones

__all__ = ["PhoneOptions", "normalize_emails", "normalize_phones"]
