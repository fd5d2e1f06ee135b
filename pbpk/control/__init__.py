"""Dosing control: cycle-by-cycle simulation from a state, clinical dose-modification rules as
data compiled to jit-able logic, and the dosing environments (pure JAX, exported to torchrl)
with the three clinical cases."""

from .cycles import CycleSimulator as CycleSimulator
from .rules import CumulativeCap as CumulativeCap
from .rules import HoldBelow as HoldBelow
from .rules import Protocol as Protocol
from .rules import ProtocolResult as ProtocolResult
from .rules import ReduceAfter as ReduceAfter
from .constraints import ExposureLimit as ExposureLimit
from .env import DosingEnv as DosingEnv
from .env import EnvState as EnvState
from .env import Limit as Limit
from .env import Patients as Patients
from .env import Reward as Reward
from .env import Sample as Sample
from .cases import chemotherapy_env as chemotherapy_env
from .cases import nanoparticle_env as nanoparticle_env
from .cases import radioligand_env as radioligand_env
from .tabulated import tabulate as tabulate
from .policies import FixedSchedule as FixedSchedule
from .policies import LabelRules as LabelRules
from .policies import compare as compare
from .policies import evaluate as evaluate
from .policies import optimise_schedule as optimise_schedule
from .schedule import DosingSchedule as DosingSchedule
from .schedule import forecast_schedule as forecast_schedule
from .mipd import PrecisionDosing as PrecisionDosing
from .particles import ParticleTwin as ParticleTwin
from .shield import ShieldedPolicy as ShieldedPolicy
from .closed_loop import ClosedLoopResult as ClosedLoopResult
from .closed_loop import Drift as Drift
from .closed_loop import MissedDoses as MissedDoses
from .closed_loop import decision_seconds as decision_seconds
from .closed_loop import run_closed_loop as run_closed_loop
from .explain import Recommendation as Recommendation
from .explain import explain as explain
from .explain import global_sensitivity as global_sensitivity
