"""The typed boundary to the Mojo kernels: one packed parameter block per kernel, the
enumerations both sides use and the layout of what the kernels write back, each defined once,
here in Python.

An op module declares its kernel's block as a ``KernelABI``::

    METRIC = Enumeration("metric", ("euclidean", "sqeuclidean", ...))
    ABI = KernelABI("distance", [("metric", INT), ("x", ADDR), ("n", INT), ...], enums=[METRIC])

* Python fills a block with ``ABI.pack(metric=..., x=a, ...)`` (every field by name, nothing
  positional; an address field takes a numpy array, another ``Block``, an int address or
  None) and passes ``block.address`` to the kernel. The block keeps a reference to every
  array and block whose address it carries, so nothing it points to is freed while the
  block (held by the call running the kernel) lives; a MAX op gets the same
  block as an int64 tensor (``ABI.pack(...).words()``), its address fields set to 1 for
  "present" and 0 for "absent", and substitutes its tensors' addresses.
* The Mojo side of every block is generated from the same declaration into the op's folder,
  ``kernels/aura_kernels/<name>/abi.mojo`` (or the module named by ``module=``, e.g.
  ``"ssd.grad_abi"`` for a second block of the ssd op): the enumeration members as ``comptime`` ids, and a
  struct ``<Name>Params`` whose ``load(address)`` checks the block's layout word (a hash of
  the name, the version and every field and member, in order) before reading a field, so a
  kernel built from another declaration raises instead of reading garbage.
  ``tests/unit/test_abi.py`` fails while a generated file is stale; ``python tools/gen_abi.py``
  rewrites them.

Every block ends with a ``control`` field that ``pack`` fills itself: the address of the
calling thread's ``aura_lab._control`` words (cancel flag, progress counters), which the
kernels poll between chunks of work; MAX ops get it as is (a real address, not a flag).

A kernel's outputs are declared with the block too (``outputs=``): a ``Slots`` names the words
of an int64 array the kernel fills (``INFO = Slots("info", ("status", "bars", ...),
prefix="INFO_")``: Mojo ``INFO_STATUS = 0``, ..., ``INFO_WORDS``), an ``Enumeration`` with a
prefix the codes or record kinds it writes (``STATUS_OK = 0``, ...). Python reads them through
``.enum``, an ``IntEnum`` of the upper-case members (``info[Info.STATUS] == Status.CANCELLED``
with ``Info, Status = INFO.enum, STATUS.enum``). Outputs count in the layout word as the
fields do. An ``Enumeration`` may start its ids elsewhere than 0 (``start=``: progress stages
clear of the engine's own); ``Flags`` are bits (member ``i`` is ``1 << i``) for a field that
holds several.

Every field is 8 bytes: ``INT`` (Mojo ``Int``), ``BOOL`` (0/1, Mojo ``Bool``), ``FLOAT``
(Mojo ``Float64``) and ``ADDR`` (an address as Mojo ``Int``, 0 = absent).
"""

from __future__ import annotations

import ctypes
import textwrap
import zlib
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from pathlib import Path

import numpy as np

from . import _control

INT, BOOL, FLOAT, ADDR = "int", "bool", "float", "addr"
_CTYPES = {INT: ctypes.c_int64, BOOL: ctypes.c_int64, FLOAT: ctypes.c_double, ADDR: ctypes.c_int64}
_MOJO = {INT: "Int", BOOL: "Bool", FLOAT: "Float64", ADDR: "Int"}


@dataclass(frozen=True)
class Enumeration:
    """Named ids shared with the kernels: member ``i`` has id ``start + i``; in Mojo the constant
    ``prefix + MEMBER`` (upper case)."""

    name: str
    members: tuple[str, ...]
    prefix: str = ""
    start: int = 0

    def value(self, i: int) -> int:
        """The id of member ``i``."""
        return self.start + i

    def id(self, member: str) -> int:
        return self.value(self.members.index(member))

    def constants(self) -> list[tuple[str, int]]:
        """The generated Mojo constants, (name, value)."""
        return [(f"{self.prefix}{m}".upper(), self.value(i)) for i, m in enumerate(self.members)]

    @property
    def extra_spec(self) -> tuple:
        """What the layout word covers beyond the name and members (nothing for plain ids from 0)."""
        return () if self.start == 0 else (self.start,)

    @cached_property
    def enum(self) -> type[IntEnum]:
        """The members as a Python ``IntEnum`` (``Enumeration("status", ("ok", ...)).enum.OK``)."""
        return IntEnum("".join(w.capitalize() for w in self.name.split("_")),
                       [(m.upper(), self.value(i)) for i, m in enumerate(self.members)])


@dataclass(frozen=True)
class Flags(Enumeration):
    """Bit flags shared with the kernels: member ``i`` is ``1 << i`` (a field holds their or)."""

    def value(self, i: int) -> int:
        return 1 << i

    @property
    def extra_spec(self) -> tuple:
        return ("bits",)


@dataclass(frozen=True)
class Slots(Enumeration):
    """The words of an int64 array a kernel fills: member ``i`` is word ``i``; Mojo also gets
    ``prefix + "WORDS"``, their count."""

    @property
    def words(self) -> int:
        return len(self.members)

    def constants(self) -> list[tuple[str, int]]:
        return [*super().constants(), (f"{self.prefix}WORDS", self.words)]


class KernelABI:
    """The parameter block of one kernel (see the module docstring)."""

    registry: dict[str, "KernelABI"] = {}

    def __init__(self, name: str, fields: list[tuple[str, str]], *, enums: tuple[Enumeration, ...] = (),
                 outputs: tuple[Enumeration, ...] = (), version: int = 1, module: str | None = None):
        fields = [*fields, ("control", ADDR)]
        names = [f for f, _ in fields]
        if len(set(names)) != len(names) or "layout" in names:
            raise ValueError(f"{name}: field names must be distinct and not 'layout' or 'control'")
        for f, kind in fields:
            if kind not in _CTYPES:
                raise ValueError(f"{name}.{f}: unknown field kind {kind!r}")
        self.name = name
        #: the generated Mojo module under aura_kernels: "<op folder>.<file stem>"
        self.module = module or f"{name}.abi"
        if len(self.module.split(".")) != 2:
            raise ValueError(f"{name}: module must be '<op folder>.<file stem>', got {self.module!r}")
        self.fields = list(fields)
        self.enums = tuple(enums)
        self.outputs = tuple(outputs)
        self.version = version
        spec = (name, version, self.fields, [(e.name, e.members, *e.extra_spec) for e in self.enums])
        if self.outputs:
            spec += ([(type(e).__name__, e.name, e.prefix, e.members, *e.extra_spec) for e in self.outputs],)
        spec = repr(spec)
        self.layout = (version << 32) | zlib.crc32(spec.encode())
        self.struct = type(f"{self.struct_name}", (ctypes.Structure,),
                           {"_fields_": [("layout", ctypes.c_int64), *((f, _CTYPES[k]) for f, k in fields)]})
        KernelABI.registry[name] = self

    @property
    def struct_name(self) -> str:
        return "".join(w.capitalize() for w in self.name.split("_")) + "Params"

    def pack(self, **values) -> "Block":
        """A filled block; every field must be given (booleans and None addresses allowed)
        except ``control``, which is the current ``aura_lab._control`` block's address. An
        address field given a numpy array or a ``Block`` takes its address and keeps it alive."""
        values.setdefault("control", _control.address())
        missing = [f for f, _ in self.fields if f not in values]
        extra = sorted(set(values) - {f for f, _ in self.fields})
        if missing or extra:
            raise TypeError(f"{self.name} parameters: missing {missing}, unexpected {extra}")
        block = Block(self, self.struct(layout=self.layout))
        for f, kind in self.fields:
            v = values[f]
            if kind == ADDR and isinstance(v, (np.ndarray, Block)):
                block.keep.append(v)
                v = v.ctypes.data if isinstance(v, np.ndarray) else v.address
            setattr(block.params, f, float(v) if kind == FLOAT else int(v or 0))
        return block

    # ------------------------------------------------------------------ the Mojo side
    def mojo_source(self) -> str:
        """The generated Mojo module (``mojo_path``)."""
        out = [f"# Generated from the KernelABI {self.name!r} (aura_lab/_abi.py): do not edit.",
               "# Regenerate with `python tools/gen_abi.py`; tests/unit/test_abi.py fails while this file is stale.",
               "", "from aura_kernels.common import checked_block", "",
               f"comptime {self.name.upper()}_LAYOUT = {self.layout:#x}", ""]
        for e in (*self.enums, *self.outputs):
            out.append(f"# {e.name} {'ids' if e in self.enums else '(written by the kernel)'}")
            out += [f"comptime {c} = {v}" for c, v in e.constants()]
            out.append("")
        out += ["", "@fieldwise_init", f"struct {self.struct_name}(ImplicitlyCopyable):",
                f'    """The {self.name} parameter block (addresses: 0 = absent)."""', ""]
        out += [f"    var {f}: {_MOJO[k]}" for f, k in self.fields]
        args = [{INT: f"Int(w[unsafe_offset={i}])", ADDR: f"Int(w[unsafe_offset={i}])", BOOL: f"w[unsafe_offset={i}] != 0",
                 FLOAT: f"f[unsafe_offset={i}]"}[k] for i, (_, k) in enumerate(self.fields, start=1)]
        out += ["", "    @staticmethod", "    def load(address: Int) raises -> Self:",
                '        """Read a block written by Python; raises if its layout word is not this one."""',
                f'        var w = checked_block(address, {self.name.upper()}_LAYOUT, "{self.name}")',
                *(["        var f = Pointer[Float64, MutUntrackedOrigin](unsafe_from_address=address)"]
                  if any(k == FLOAT for _, k in self.fields) else []),
                *textwrap.wrap("return Self(" + ", ".join(args) + ")", 110, initial_indent=" " * 8,
                               subsequent_indent=" " * 12, break_on_hyphens=False),
                ""]
        return "\n".join(out)

    def mojo_path(self, kernels_dir: Path) -> Path:
        """``<kernels_dir>/aura_kernels/<op folder>/<file stem>.mojo`` (``module``)."""
        folder, stem = self.module.split(".")
        return Path(kernels_dir) / "aura_kernels" / folder / f"{stem}.mojo"

    def write(self, kernels_dir: Path) -> Path:
        """Write ``mojo_source`` to ``mojo_path``, starting the op's folder (a Mojo package:
        an ``__init__.mojo``) when it has none yet."""
        path = self.mojo_path(kernels_dir)
        path.parent.mkdir(exist_ok=True)
        init = path.parent / "__init__.mojo"
        if not init.exists():
            init.write_text(f"# The {path.parent.name} op's kernels (see kernels/aura_kernels/__init__.mojo).\n")
        path.write_text(self.mojo_source())
        return path


class Block:
    """One filled parameter block (keep it referenced while the kernel runs); ``keep`` holds
    the arrays and blocks whose addresses it carries (see ``KernelABI.pack``)."""

    def __init__(self, abi: KernelABI, params: ctypes.Structure):
        self.abi = abi
        self.params = params
        self.keep: list = []

    @property
    def address(self) -> int:
        return ctypes.addressof(self.params)

    def words(self):
        """The block as an int64 numpy array (a copy), for a MAX op's parameter tensor."""
        return np.frombuffer(bytes(self.params), np.int64).copy()
