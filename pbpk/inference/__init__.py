"""Calibration to one patient's data: log-density (BlackJAX contract) and MAP/Laplace estimates.

The NUTS sampler, Posterior, sequential updates and population fits build on these.
"""

from .logdensity import SubjectLogDensity as SubjectLogDensity
from .logdensity import individual_logdensity as individual_logdensity
from .map import MAPResult as MAPResult
from .map import map_estimate as map_estimate
