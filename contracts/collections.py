"""Image collections' names and the choice an add makes for known content: the gateway's API and stores, the
admin API's ingest jobs and the clients follow these rules.
"""
from __future__ import annotations

from typing import Literal

COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # also a folder name: no dots, no upper case
COLLECTION_NAME_RULE = "1-64 of a-z, 0-9, '_', '-', starting with a letter or a digit"

# What an add does with an image whose bytes (sha256) the collection already holds: nothing (the answer names the
# image it matched), replace that image (keeping its id unless the add gives one), or add it again.
OnDuplicate = Literal["skip", "replace", "add"]
