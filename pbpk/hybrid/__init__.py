"""Hybrid models: learned (neural) right-hand-side terms declared in the specification
(``Model.neural``), trained across patients with optax, saved and loaded with equinox."""

from .neural import NeuralResidual as NeuralResidual
from .neural import NeuralTerm as NeuralTerm
from .neural import load_hybrid as load_hybrid
from .neural import save_hybrid as save_hybrid
from .train import HybridFit as HybridFit
from .train import TypicalFit as TypicalFit
from .train import estimate_typical as estimate_typical
from .train import population_loss as population_loss
from .train import train_hybrid as train_hybrid
from .symbolic import SymbolicFit as SymbolicFit
from .symbolic import learned_term as learned_term
from .symbolic import symbolic_readout as symbolic_readout
from .pinn import PinnFit as PinnFit
from .pinn import fit_pinn as fit_pinn
from .covariates import CovariateFit as CovariateFit
from .covariates import CovariateNetwork as CovariateNetwork
from .covariates import train_covariate_network as train_covariate_network
