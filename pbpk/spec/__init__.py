"""Model specification: the builder, units and safe expression parsing."""

from .expr import FUNCTIONS as FUNCTIONS
from .expr import parse_expression as parse_expression
from .model import Compartment as Compartment
from .model import Model as Model
from .units import parse_unit as parse_unit
from .compose import compose as compose
from .compose import renamed as renamed
