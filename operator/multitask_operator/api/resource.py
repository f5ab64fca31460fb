"""The whole `MultiTaskModel` object: apiVersion, kind, metadata, spec, status."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import DNS1123_LABEL, ApiModel
from .spec import MultiTaskModelSpec
from .status import MultiTaskModelStatus

GROUP = "multitask.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MultiTaskModel"
# The kubectl form of an approval of a revision's cutover: REVISION[:task,task] ...
APPROVE_ANNOTATION = "multitask.ai/approve-cutover"
PLURAL = "multitaskmodels"
SINGULAR = "multitaskmodel"
SHORT_NAMES = ["mtm"]
# Names of Jobs, Services and PVCs are derived from the object name plus a suffix such as
# "-stage2-classification-1a2b3c4d"; 40 characters keeps them within the 63 of a DNS-1123 label.
MAX_NAME_LENGTH = 40


class ObjectMeta(ApiModel):
    """The part of metadata that `mtm` reads; everything else is passed through."""

    model_config = {"extra": "allow"}

    name: str = Field(pattern=DNS1123_LABEL, max_length=MAX_NAME_LENGTH)
    namespace: str | None = Field(None, pattern=DNS1123_LABEL, max_length=63)
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class MultiTaskModel(ApiModel):
    api_version: Literal["multitask.ai/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["MultiTaskModel"]
    metadata: ObjectMeta
    spec: MultiTaskModelSpec
    status: MultiTaskModelStatus | None = None
