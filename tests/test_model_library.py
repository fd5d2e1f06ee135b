"""The standard harness, run on every model in models/: it compiles (units checked), carries its
citation, equations and parameter table, conserves mass where built from flows, stays finite
and non-negative under a standard regimen, and has gradients matching finite differences."""

import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pbpk

NAMES = pbpk.models.available()
TIMES = jnp.linspace(0.0, 72.0, 49)


def standard_regimen(model):
    if not model.compartment_names:   # a PD part (its input at its default) or raw-state model
        return pbpk.Regimen()
    first = model.compartment_names[0]
    return pbpk.Regimen.of(pbpk.Bolus(100.0, first), pbpk.Infusion(50.0, first, time=24.0, duration=2.0))


def test_library_lists_models_and_rejects_unknown():
    assert {"docetaxel_bruno1996", "one_compartment_iv", "docetaxel_pbpk"} <= set(NAMES)
    with pytest.raises(pbpk.ModelError, match="Did you mean 'docetaxel_bruno1996'"):
        pbpk.models.load("docetaxel_bruno96")


@pytest.mark.parametrize("name", NAMES)
def test_model_documents_itself(name):
    entry = pbpk.models.info(name)
    doc = entry.build.__doc__ or ""
    assert entry.citation
    assert "| parameter |" in doc or "| quantity |" in doc, "parameter table with units and sources"
    assert "Equations" in doc or "equations" in doc
    spec = pbpk.models.load(name)
    for p in spec.parameters.values():
        assert p.source, f"{name}: parameter {p.name} has no source"


@pytest.mark.parametrize("name", NAMES)
def test_model_simulates_conserves_mass_and_stays_physical(lib, name):
    model = lib(name)
    sol = model.simulate(standard_regimen(model), TIMES, rtol=1e-10, atol=1e-12)
    states = np.asarray(sol.states)
    assert int(sol.status) == 0 and np.all(np.isfinite(states))
    assert states.min() >= -1e-9 * states.max()
    if pbpk.models.info(name).flows and model.compartment_names:
        f = np.asarray(model.dose_properties(model.theta, model.covariate_reference)[0])[0]
        held = [model.state_names.index(n) for n in (*model.compartment_names, "eliminated") if n in model.state_names]
        total = states[:, held].sum(axis=1)
        dosed = np.where(np.asarray(TIMES) >= 26.0, 150.0, np.nan) * f
        late = ~np.isnan(dosed)
        np.testing.assert_allclose(total[late], dosed[late], rtol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_model_gradients_match_finite_differences(lib, name):
    model = lib(name)
    reg = standard_regimen(model)
    idx = [i for i, v in enumerate(np.asarray(model.theta)) if v > 0][:2]

    def auc(theta):
        return jnp.sum(model.simulate(reg, TIMES, params=theta, rtol=1e-10, atol=1e-12).observations)

    def central_difference(i, rel):
        h = rel * float(model.theta[i])
        return float((auc(model.theta.at[i].add(h)) - auc(model.theta.at[i].add(-h))) / (2 * h))

    grad = np.asarray(jax.grad(auc)(model.theta))
    for i in idx:
        fd = central_difference(i, 1e-5)
        # The adaptive solver makes finite differences noisy where the states span many decades
        # (a tumour driven to 1e-60 cells); the tolerance grows with that noise, estimated from
        # a second step size, never below 1e-5 relative.
        noise = abs(fd - central_difference(i, 1e-4))
        tol = max(1e-5 * abs(fd), 3 * noise, 1e-9 * abs(float(auc(model.theta))))
        assert abs(grad[i] - fd) <= tol, (model.parameter_names[i], grad[i], fd, noise)


def test_models_ship_in_the_wheel(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                          "-w", str(tmp_path), "."], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("pbpk-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "pbpk/models/docetaxel.py" in names and "pbpk/models/__init__.py" in names
