"""Command line: ``pbpk demo``, ``pbpk models``, ``pbpk simulate``, ``pbpk schedule``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pbpk", description="Symbolic PBPK models compiled to JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main job: virtual population, a patient's calibration and twin, an explained safe adaptive schedule, the closed loop on a cohort; writes report.html")
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--patients", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--cohort", type=int, default=24, help="virtual patients in the closed-loop comparison")
    sub.add_parser("models", help="list the model library")
    simulate = sub.add_parser("simulate", help="simulate a library model for a NONMEM dataset")
    simulate.add_argument("model", help="library model name (pbpk models)")
    simulate.add_argument("dataset", help="NONMEM-format CSV")
    simulate.add_argument("--out", default="simulation.csv")
    schedule = sub.add_parser("schedule", help="a dosing schedule and its forecast for a case's patient")
    schedule.add_argument("--case", choices=("chemotherapy", "nanoparticle", "radioligand"), default="chemotherapy")
    schedule.add_argument("--policy", choices=("protocol", "rules", "optimised", "mipd"), default="protocol",
                          help="the standard protocol, the label rules (chemotherapy), the optimised static plan or "
                               "model-informed precision dosing with a 64-particle twin")
    schedule.add_argument("--draws", type=int, default=500, help="twin draws (virtual patients from the population)")
    schedule.add_argument("--seed", type=int, default=0)
    schedule.add_argument("--out", default="schedule.csv")
    schedule.add_argument("--figure", default=None, help="also save the schedule figure (PNG)")
    args = parser.parse_args(argv)
    return {"demo": _demo, "models": _models, "simulate": _simulate, "schedule": _schedule}[args.command](args)


# The MIPD target per case: (observation, statistic, target; None = the case's limit on that
# observation).  Radioligand: the salivary limit binds before the kidney's (radioligand_env).
_MIPD_TARGETS = {"chemotherapy": ("ANC", "min", 0.5), "nanoparticle": ("C_skin", "max", None),
                 "radioligand": ("D_salivary", "max", None)}


def _schedule(args) -> int:
    import jax

    from . import control

    env = getattr(control, f"{args.case}_env")()
    twin = control.Patients.from_population(env.model.population(args.draws, jax.random.key(args.seed)))
    if args.policy == "protocol":
        policy = control.FixedSchedule(env, [env.standard] * env.horizon)
    elif args.policy == "rules":
        if args.case != "chemotherapy":
            print("pbpk schedule: --policy rules is defined for the chemotherapy case (the docetaxel label).")
            return 2
        policy = control.LabelRules(env, (100.0, 75.0, 60.0), hold=("ANC", 21.0, 1.5), reduce=("ANC", 7.0, 0.5))
    elif args.policy == "mipd":
        prior = control.Patients.from_population(env.model.population(64, jax.random.key(args.seed + 4)))
        observation, statistic, target = _MIPD_TARGETS[args.case]
        if target is None:
            target = next(lim.threshold for lim in env.limits if lim.observation == observation)
        policy = control.PrecisionDosing(env, prior, observation=observation, statistic=statistic, target=target)
    else:
        train = control.Patients.from_population(env.model.population(64, jax.random.key(args.seed + 1)))
        policy, _, _ = control.optimise_schedule(env, train, jax.random.key(args.seed + 2))
    result = control.forecast_schedule(env, policy, twin, jax.random.key(args.seed + 3), name=args.policy)
    result.to_csv(args.out)
    print(result.table.to_string(index=False))
    if args.figure:
        result.plot(path=args.figure)
    print(f"wrote {args.out}" + (f" and {args.figure}" if args.figure else ""))
    return 0


def _models(args) -> int:
    import pbpk

    for name in pbpk.models.available():
        entry = pbpk.models.info(name)
        print(f"{name:28s} {entry.description}\n{'':28s} {entry.citation}")
    return 0


def _simulate(args) -> int:
    import pbpk

    model = pbpk.models.load(args.model).compile()
    data = pbpk.read_nonmem(args.dataset, model)
    frames = []
    for subject in data:
        df = model.simulate(subject, None).to_dataframe()
        df.insert(0, "ID", subject.id)
        frames.append(df)
    import pandas as pd

    pd.concat(frames).to_csv(args.out, index=False)
    print(f"wrote {args.out} ({len(frames)} subjects)")
    return 0


def _demo(args) -> int:
    from ._demo import run_calibration_demo, run_demo
    from ._demo_living import run_living_demo, write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    population = run_demo(out, n_patients=args.patients, seed=args.seed)
    print(population)
    calibration = run_calibration_demo(out, seed=args.seed)
    print(calibration)
    living, sections = run_living_demo(out, cohort=args.cohort, seed=args.seed)
    print(living)
    sections = {"Virtual population (whole-body docetaxel PBPK)": [("summary", population),
                                                                   ("figure", out / "organ_profiles.png")],
                "Calibration and twin (NUTS, docetaxel PK)": [("summary", calibration),
                                                              ("figure", out / "individual_fit.png"),
                                                              ("figure", out / "forecast_cycle3.png")]} | sections
    summary = "\n".join([population, calibration, living])
    write_report(out / "report.html", summary, sections)
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; report {(out / 'report.html').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
