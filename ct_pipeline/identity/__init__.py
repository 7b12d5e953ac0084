"""Identity layer: phone and email normalisation, identity choice and duplicate grouping.

Pure functions over pandas objects; the Dagster assets in `ct_pipeline.assets` call them.
"""

from ct_pipeline.identity.phones import PhoneOptions, normalize_phones

__all__ = ["PhoneOptions", "normalize_phones"]
