"""Closed-loop dosing: agents and classical baselines on held-out virtual cohorts."""
