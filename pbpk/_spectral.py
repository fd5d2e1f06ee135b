"""Closed-form propagators of small linear compartment models, from their eigenvalues.

For the standard PK structures (depots, a central compartment with up to two peripherals, and
accumulators such as the eliminated amount or urine) the matrix exponential has a closed form,
as in NONMEM's ADVAN1–4, 11, 12: with the eigenvalues μᵢ of the non-accumulating block A_N,

    exp(A_N·τ) = Σᵢ exp(μᵢτ)·Pᵢ,   Pᵢ = Πⱼ≠ᵢ (A_N − μⱼI)/(μᵢ − μⱼ)   (Sylvester's projectors),

and the integrals over a step (zero-order inputs, accumulators) use φ₁(z) = (eᶻ−1)/z and
φ₂(z) = (eᶻ−1−z)/z².  A step then costs a few exponentials instead of a scaled-and-squared
Taylor polynomial: 20–50× cheaper per gradient, which is what per-patient NUTS pays for.

The eigenvalues come block by block (strongly connected components: in topological order A_N is
block-triangular): a 1-state block is its diagonal entry, a 2- or 3-state block the real
roots of its characteristic polynomial (a tree of reversible exchanges, as in mammillary models,
is similar to a symmetric matrix, so its roots are real), polished by Newton steps.  Nothing
calls LAPACK, so the propagator vmaps inside NUTS without the batched-LAPACK stalls seen with XLA
on CPU.  Nearly equal eigenvalues (ka ≈ k by chance) are spread to a gap of at least δ = 7.6e-6 of
the largest rate instead of dividing by zero: the interpolation nodes then differ from the
spectrum by up to δ, and the result by ~δ·(μτ)² relative, inside that window only (gradients
there are those of the spread nodes).  Structurally equal ones (a chain of transit compartments
with one rate) make the model ineligible, and the matrix exponential is used.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

MAX_DYNAMIC = 6          # non-accumulating states; beyond this the matrix exponential is cheaper
MAX_BLOCK = 3            # closed-form real roots up to cubics
REL_GAP = 2.0**-17       # ≈ 7.6e-6 of the largest rate: gradients' round-off ε/gap² stays ≲ 1e-6


class SpectralPlan(NamedTuple):
    """Static layout: non-accumulating states grouped by block, the blocks, the accumulators."""

    dynamic: tuple[int, ...]
    blocks: tuple[tuple[int, ...], ...]       # positions within ``dynamic``
    accumulators: tuple[int, ...]


def spectral_plan(a: sp.Matrix, accumulators) -> SpectralPlan | None:
    """The plan for a symbolic state matrix A (rhs = A·y + b), or None when not eligible."""
    n = a.shape[0]
    dynamic = [i for i in range(n) if not accumulators[i]]
    if not dynamic or len(dynamic) > MAX_DYNAMIC:
        return None
    edges = {(i, j) for i in dynamic for j in dynamic if i != j and a[i, j] != 0}   # j feeds i
    components = _components(dynamic, edges)
    for comp in components:
        if len(comp) > MAX_BLOCK or not _reversible_tree(comp, edges):
            return None
    singles = [a[c[0], c[0]] for c in components if len(c) == 1]
    if len(set(singles)) < len(singles):
        return None                   # e.g. transit compartments sharing one rate: a Jordan block
    order = [i for comp in components for i in comp]
    position = {s: k for k, s in enumerate(order)}
    blocks = tuple(tuple(position[i] for i in comp) for comp in components)
    return SpectralPlan(tuple(order), blocks, tuple(i for i in range(n) if accumulators[i]))


def _components(nodes, edges):
    """Strongly connected components (their eigenvalues together are A_N's: it is block-triangular)."""
    reach = {i: {i} for i in nodes}
    for _ in nodes:                                       # transitive closure; n ≤ 6
        for (i, j) in edges:
            reach[j] |= reach[i]
    comps, seen = [], set()
    for i in nodes:
        if i not in seen:
            comp = tuple(sorted(j for j in nodes if j in reach[i] and i in reach[j]))
            seen.update(comp)
            comps.append(comp)
    return comps


def _reversible_tree(comp, edges) -> bool:
    if len(comp) == 1:
        return True
    pairs = {frozenset(e) for e in edges if e[0] in comp and e[1] in comp}
    symmetric = all((i, j) in edges and (j, i) in edges for p in pairs for i, j in [tuple(p)])
    return symmetric and len(pairs) == len(comp) - 1


# =========================================================================== numerics
def eigenvalues(plan: SpectralPlan, a_n: jax.Array) -> jax.Array:
    """Eigenvalues of the non-accumulating block (in plan order), ascending, nearly-equal ones spread."""
    roots = []
    for blk in plan.blocks:
        pick = np.eye(a_n.shape[0])[:, list(blk)]
        roots.append(_block_roots(mm(mm(pick.T, a_n), pick)))
    lam = _sorted(jnp.concatenate(roots))
    # Gaps g below δ become g + δ·e^(-g/δ) (≥ δ, smooth, and ≡ g to round-off once g > 40δ).
    delta = REL_GAP * (jnp.max(jnp.abs(lam)) + 1e-300)
    gaps = jnp.diff(lam)
    gaps = gaps + delta * jnp.exp(-gaps / delta)
    return jnp.concatenate([lam[:1], lam[0] + jnp.cumsum(gaps)])


def _sorted(x):
    """Ascending, by a compare-exchange network (m ≤ 6: at most 15 min/max pairs).  XLA's sort
    on CPU costs ~0.7 µs per call and twice that in its gradient, more than the rest of a
    2-compartment model's propagator: inside NUTS it ran on every leapfrog step."""
    v = [x[i] for i in range(x.shape[0])]
    for end in range(len(v) - 1, 0, -1):
        for j in range(end):
            v[j], v[j + 1] = jnp.minimum(v[j], v[j + 1]), jnp.maximum(v[j], v[j + 1])
    return jnp.stack(v)


def _block_roots(b):
    m = b.shape[0]
    if m == 1:
        return b[0]
    if m == 2:
        half_tr = 0.5 * (b[0, 0] + b[1, 1])
        det = b[0, 0] * b[1, 1] - b[0, 1] * b[1, 0]
        disc = jnp.sqrt(0.25 * (b[0, 0] - b[1, 1]) ** 2 + b[0, 1] * b[1, 0])
        big = half_tr + jnp.where(half_tr < 0, -disc, disc)            # the larger magnitude, no cancellation
        return jnp.stack([big, det / big])
    # Cubic λ³ + c2·λ² + c1·λ + c0 (trigonometric form: three real roots), then Newton.
    c2 = -jnp.trace(b)
    c1 = (b[0, 0] * b[1, 1] - b[0, 1] * b[1, 0] + b[0, 0] * b[2, 2] - b[0, 2] * b[2, 0]
          + b[1, 1] * b[2, 2] - b[1, 2] * b[2, 1])
    c0 = -_det3(b)
    p = c1 - c2**2 / 3.0
    q = 2.0 * c2**3 / 27.0 - c2 * c1 / 3.0 + c0
    r = jnp.sqrt(jnp.maximum(-p / 3.0, 1e-300))
    arg = jnp.clip(-q / (2.0 * r**3), -1.0, 1.0)
    phi = jnp.arccos(arg) / 3.0
    lam = jnp.stack([2.0 * r * jnp.cos(phi - 2.0 * math.pi * k / 3.0) for k in range(3)]) - c2 / 3.0
    for _ in range(2):
        f = ((lam + c2) * lam + c1) * lam + c0
        df = (3.0 * lam + 2.0 * c2) * lam + c1
        lam = lam - f / jnp.where(df == 0, 1.0, df)
    return lam


def _det3(b):
    return (b[0, 0] * (b[1, 1] * b[2, 2] - b[1, 2] * b[2, 1])
            - b[0, 1] * (b[1, 0] * b[2, 2] - b[1, 2] * b[2, 0])
            + b[0, 2] * (b[1, 0] * b[2, 1] - b[1, 1] * b[2, 0]))


def projectors(a_n: jax.Array, mu: jax.Array) -> jax.Array:
    """Sylvester's projectors Pᵢ (m, m, m) for the interpolation nodes ``mu``."""
    m = mu.shape[0]
    eye = jnp.eye(m, dtype=a_n.dtype)
    out = []
    for i in range(m):
        p = eye
        for j in range(m):
            if j != i:
                p = mm(p, a_n - mu[j] * eye) / (mu[i] - mu[j])
        out.append(p)
    return jnp.stack(out)


def mm(a, b):
    """Matrix product (broadcast over leading axes) as a fused multiply-and-sum: for matrices this
    small, and batched under vmap, XLA's CPU dot kernels cost several times more."""
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _contract(coef, basis):
    """Σ_b coef[t, b]·basis[b] as a fused elementwise sum: for these tiny shapes a matmul call costs more."""
    return jnp.sum(coef[:, :, None, None] * basis[None], axis=1)


def phi1(z, ez):
    """(eᶻ − 1)/z from ``ez`` = eᶻ (which Φ needs anyway: no second transcendental), exact at
    z = 0 with finite gradients there.  (eᶻ − 1)/z loses ~ε/|z| relative (its derivative ~ε/z²),
    so below |z| = 0.1 the Taylor series (to z¹²: truncation < 1e-21) is used and value and
    derivative stay within ~1e-14 relative.  Transcendentals are most of what a small
    closed-form density costs inside NUTS.
    """
    small = jnp.abs(z) < 0.1
    zs = jnp.where(small, 1.0, z)
    series = sum(z**k / math.factorial(k + 1) for k in range(13))
    return jnp.where(small, series, (ez - 1.0) / zs)


def phi2(z):
    """(eᶻ − 1 − z)/z²; Taylor for |z| < 0.1 where the difference cancels."""
    small = jnp.abs(z) < 0.1
    zs = jnp.where(small, 1.0, z)
    series = sum(z**k / math.factorial(k + 2) for k in range(9))
    return jnp.where(small, series, (jnp.expm1(zs) - zs) / zs**2)


def spectral_basis(plan: SpectralPlan, a: jax.Array, *, accumulators: bool = True):
    """Eigenvalues μ (m,) and the basis (2m + 1, n, n) in which Φ(τ) and Ψ(τ) are expanded.

    With Gᵢ = Pᵢ on the non-accumulating block, Hᵢ = F·Pᵢ (F: the accumulators' inflows) and I_C
    the accumulators' identity:
        Φ(τ) = Σᵢ [eᶻ Gᵢ + τφ₁(z) Hᵢ] + I_C,   Ψ(τ) = Σᵢ [τφ₁(z) Gᵢ + τ²φ₂(z) Hᵢ] + τ·I_C,   z = μᵢτ
    (``coefficients`` gives the scalar weights).  ``accumulators=False``: only the m matrices Gᵢ,
    which propagate the non-accumulating states exactly and leave the accumulators at zero.
    """
    n = a.shape[0]
    # Static selections as products with 0/1 matrices: batched gathers and scatters are slow on CPU.
    pick_n = np.eye(n)[:, list(plan.dynamic)]                          # (n, m): columns e_dyn
    pick_c = np.eye(n)[:, list(plan.accumulators)]                     # (n, c)
    a_n = mm(mm(pick_n.T, a), pick_n)
    mu = eigenvalues(plan, a_n)
    proj = projectors(a_n, mu)                                          # (m, m, m)
    g = mm(mm(pick_n, proj), pick_n.T)                                  # (m, n, n)
    if not accumulators:
        return mu, g
    h = mm(mm(mm(pick_c, mm(mm(pick_c.T, a), pick_n)), proj), pick_n.T)
    i_c = jnp.asarray((pick_c @ pick_c.T)[None], a.dtype)
    return mu, jnp.concatenate([g, h, i_c])


def coefficients(mu, taus, *, accumulators: bool = True):
    """Weights (T, 2m + 1) — or (T, m) without accumulators — of the basis for Φ(τ) and for Ψ(τ)."""
    z = taus[..., None] * mu
    ez = jnp.exp(z)
    t1 = taus[..., None] * phi1(z, ez)
    if not accumulators:
        return ez, t1
    one = jnp.ones_like(taus)[..., None]
    phi = jnp.concatenate([ez, t1, one], -1)
    psi = jnp.concatenate([t1, taus[..., None] ** 2 * phi2(z), taus[..., None]], -1)
    return phi, psi


def spectral_flow(plan: SpectralPlan, a: jax.Array):
    """(w (n, k), taus (T,)) -> Φ(τ) = exp(Aτ) (T, n, n) and Ψ(τ)·w = ∫₀^τ exp(As) ds·w (T, n, k).

    The basis is computed once, here; each call only evaluates scalar weights and one contraction.
    """
    mu, basis = spectral_basis(plan, a)

    def flow(w, taus):
        c_phi, c_psi = coefficients(mu, taus)
        return _contract(c_phi, basis), _contract(c_psi, mm(basis, w))

    return flow
