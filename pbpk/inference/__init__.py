"""Calibration: log-density (BlackJAX contract), MAP/Laplace (optimistix), NUTS (BlackJAX),
the Posterior with ArviZ diagnostics, and population (hierarchical) fits."""

from .fit import fit as fit
from .hierarchical import PopulationPosterior as PopulationPosterior
from .hierarchical import fit_population as fit_population
from .logdensity import SubjectLogDensity as SubjectLogDensity
from .logdensity import individual_logdensity as individual_logdensity
from .map import MAPResult as MAPResult
from .map import map_estimate as map_estimate
from .posterior import Posterior as Posterior
from .posterior import PosteriorWarning as PosteriorWarning
