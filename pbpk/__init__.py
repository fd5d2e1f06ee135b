"""pbpk: symbolic PBPK and tumour–immune models compiled to JAX, dose-correct batched simulation,
NONMEM datasets, Bayesian calibration (BlackJAX), digital twins and (in later modules) dosing control.

float64 is switched on at import: pharmacometric systems are stiff and span many orders of
magnitude, and the numerical core relies on it.
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import dosimetry as dosimetry
from . import models as models
from .compile import CompiledModel as CompiledModel
from .dosing import Bolus as Bolus
from .dosing import Infusion as Infusion
from .dosing import Regimen as Regimen
from .dosing import Reset as Reset
from .dosing import bsa as bsa
from .errors import DataError as DataError
from .errors import DosimetryError as DosimetryError
from .errors import DosingError as DosingError
from .errors import ModelError as ModelError
from .errors import PbpkError as PbpkError
from .errors import UnitError as UnitError
from .inference import Posterior as Posterior
from .inference import PosteriorWarning as PosteriorWarning
from .inference import fit as fit
from .inference import fit_population as fit_population
from .population import Population as Population
from .residual import Additive as Additive
from .residual import Combined as Combined
from .residual import Exponential as Exponential
from .residual import LogNormal as LogNormal
from .residual import Proportional as Proportional
from .simulate import Solution as Solution
from .simulate import simulate as simulate
from .spec import Model as Model
from .spec import compose as compose
from .spec import renamed as renamed
from .twin import Twin as Twin

from .nonmem import Dataset as Dataset
from .nonmem import read_nonmem as read_nonmem
from .nonmem import write_nonmem as write_nonmem

__version__ = "0.1.0"
