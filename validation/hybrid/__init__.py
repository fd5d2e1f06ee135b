"""Hybrid (neural-ODE / PINN) validation: misspecified mechanisms recovered, symbolic read-out."""
