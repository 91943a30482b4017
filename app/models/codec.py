"""The JSON bridge between Faust (raw bytes on topics and in tables) and our pydantic models."""
from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def dump(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)  # model_dump_json()'s bytes, without a str in between


def load(model: type[M], data: bytes) -> M:
    return model.model_validate_json(data)
