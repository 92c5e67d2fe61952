"""How one environment variable is named, typed, defaulted, documented and checked, and how a
process's frozen dataclass of them turns into a pod spec's env (`to_env`) and back (`from_env`).

Standard library only: the CDK app builds its charts' env from these classes.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, Callable, ClassVar, Iterator, Mapping, Optional, TypeVar

# What is wrong with a (parsed) value, or None when nothing is.
Check = Callable[[Any], Optional[str]]
E = TypeVar("E", bound="Env")


class ContractError(ValueError):
    """A value a process cannot use; the message names the variable (one line, for the pod's log)."""


@dataclasses.dataclass(frozen=True)
class Var:
    """One SD21_ variable: the one place its name, type, default and meaning are written."""
    name: str
    type: type  # str, int, float or bool
    default: Any  # None: unset (the process does without, or requires it)
    doc: str
    check: Optional[Check] = None

    def field(self, *, required: bool = False) -> Any:
        """A dataclass field holding this variable (required: no default, the process cannot start without)."""
        if required:
            return dataclasses.field(metadata={"var": self})
        return dataclasses.field(default=self.default, metadata={"var": self})

    def parse(self, text: str) -> Any:
        try:
            value = _PARSERS[self.type](text)
        except ValueError:
            raise ContractError(f"{self.name}={text!r} is not {_KINDS[self.type]}") from None
        problem = self.check(value) if self.check else None
        if problem:
            raise ContractError(f"{self.name}={text!r}: {problem}")
        return value

    def text(self, value: Any) -> str:
        """The value as a pod spec writes it (what parse reads back)."""
        if self.type is bool:
            return "1" if value else "0"
        return str(value)

    def read(self, environ: Mapping[str, str]) -> Any:
        """This one variable (empty counts as unset); for a module that needs one value where it is used."""
        text = environ.get(self.name, "")
        return self.parse(text) if text != "" else self.default


def _boolean(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_PARSERS: dict[type, Callable[[str], Any]] = {str: str, int: int, float: _finite, bool: _boolean}
_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "0 or 1"}


# Checks: each says what it wants, in the message the process prints (and, being data,
# what values a test may generate).
@dataclasses.dataclass(frozen=True)
class Range:
    low: float
    high: float = math.inf
    strict: bool = False  # above low, not at least

    def __call__(self, value: float) -> Optional[str]:
        if (value > self.low if self.strict else value >= self.low) and value <= self.high:
            return None
        if self.high != math.inf:
            return f"must be {self.low}..{self.high}"
        return f"must be above {self.low}" if self.strict else f"must be at least {self.low}"


@dataclasses.dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]

    def __call__(self, value: str) -> Optional[str]:
        return None if value in self.choices else f"must be one of {', '.join(self.choices)}"


@dataclasses.dataclass(frozen=True)
class Pattern:
    regex: str
    wanted: str

    def __call__(self, value: str) -> Optional[str]:
        return None if re.fullmatch(self.regex, value, re.DOTALL) else f"must be {self.wanted}"


def at_least(low: float) -> Range:
    return Range(low)


def above(low: float) -> Range:
    return Range(low, strict=True)


def between(low: float, high: float) -> Range:
    return Range(low, high)


def one_of(*choices: str) -> OneOf:
    return OneOf(choices)


HTTP_URL = Pattern(r"https?://.*", "an http(s):// URL")


def part(cls: type) -> Any:
    """A group of variables one module reads (jobs, CloudWatch), embedded in a process's environment."""
    return dataclasses.field(default_factory=cls, metadata={"part": cls})


class Env:
    """Base of a process's environment (and of the parts embedded in one).

    `to_env()` writes the variables given to the constructor, in that order, as a pod spec
    names what it sets and leaves the rest to the process's defaults; `from_env()` reads
    them back (the variables found count as given), so from_env(e.to_env()) == e.
    """
    entrypoint: ClassVar[str] = ""  # the console script that reads it ("" for a part)
    _given: tuple[str, ...] = ()

    @classmethod
    def variables(cls) -> Iterator[tuple[Var, bool]]:
        """(variable, required here) of every field, the parts' included."""
        for field in dataclasses.fields(cls):
            if "part" in field.metadata:
                yield from field.metadata["part"].variables()
            else:
                yield field.metadata["var"], field.default is dataclasses.MISSING

    @classmethod
    def var(cls, field_name: str) -> Var:
        """The variable of a field (for a message that names it)."""
        return next(field.metadata["var"] for field in dataclasses.fields(cls) if field.name == field_name)

    def to_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        fields = {field.name: field for field in dataclasses.fields(self)}
        for name in self._given:
            value, field = getattr(self, name), fields[name]
            if "part" in field.metadata:
                env.update(value.to_env())
            elif value is not None:
                env[field.metadata["var"].name] = field.metadata["var"].text(value)
        return env

    @classmethod
    def from_env(cls: type[E], environ: Mapping[str, str]) -> E:
        """Parsed and checked; ContractError names the variable that is wrong (all the missing ones)."""
        given: dict[str, Any] = {}
        missing: list[str] = []
        for field in dataclasses.fields(cls):
            if "part" in field.metadata:
                given[field.name] = field.metadata["part"].from_env(environ)
                continue
            var = field.metadata["var"]
            if environ.get(var.name, "") != "":
                given[field.name] = var.parse(environ[var.name])
            elif field.default is dataclasses.MISSING:
                missing.append(var.name)
        if missing:
            raise ContractError(f"{', '.join(missing)} must be set")
        env = cls(**given)
        env.check()
        return env

    def check(self) -> None:
        """Relations between variables (a part's own checks run when it is read)."""


def environment(entrypoint: str = "") -> Callable[[type[E]], type[E]]:
    """Makes a class a frozen, keyword-only dataclass of variables that remembers which were given."""
    def make(cls: type[E]) -> type[E]:
        cls = dataclasses.dataclass(frozen=True, kw_only=True)(cls)
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, **given: Any) -> None:
            init(self, **given)
            object.__setattr__(self, "_given", tuple(given))

        cls.__init__ = __init__
        cls.entrypoint = entrypoint
        return cls
    return make
