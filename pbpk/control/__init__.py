"""Dosing control: cycle-by-cycle simulation from a state, clinical dose-modification rules as
data compiled to jit-able logic (the standard-protocol baseline and the shields of later
agents)."""

from .cycles import CycleSimulator as CycleSimulator
from .rules import CumulativeCap as CumulativeCap
from .rules import HoldBelow as HoldBelow
from .rules import Protocol as Protocol
from .rules import ProtocolResult as ProtocolResult
from .rules import ReduceAfter as ReduceAfter
from .constraints import ExposureLimit as ExposureLimit
