"""The base of every configuration model: strict, frozen, in the camelCase users type."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel


def _flag(value: object) -> object:
    """A yes/no key: a boolean, or its text as `pulumi config set` may store it; pydantic's
    own bool would also take 1, "yes", "on" and "y", which reads like a choice nobody made."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("true or false, without quotes")


# Every yes/no config key.
Flag = Annotated[bool, BeforeValidator(_flag)]


class ConfigModel(BaseModel):
    """Unknown keys are refused (typos), values are frozen, and no error echoes its input."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=True,
    )
