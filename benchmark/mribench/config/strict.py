"""The one base of every config model: an unknown key is an error, never a silent default
(nanoGPT's configurator, pydantic's extra="forbid"), and a loaded config cannot change."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
