"""Write the calibrated values into the built-in scenarios (maintainers' step after a calibration run).

    cartkin calibrate eliana -o cal/eliana
    cartkin calibrate meta10-19 --scenario cal/eliana/calibrated.toml -o cal/meta10-19
    python examples/install_calibration.py cal/eliana cal/meta10-19

Replaces, in src/cartkin/scenario/builtin/eliana.toml and meta10-19.toml, the provenance line and the
[population.variability] and [population.typical] tables (everything else, comments, covariates, outcomes,
arms and [trial], stays as written by hand), and writes the calibration draws beside them: eliana_draws.csv
(the ELIANA calibration's draws) and meta10-19_draws.csv (the same rows with the META 10-19 calibration's
draws of the IL-10 effect joined column-wise: draw r of each, the ELIANA estimates having been held fixed
in the second calibration).
"""
from __future__ import annotations

import csv
import re
import sys
import tomllib
from pathlib import Path

BUILTIN = Path(__file__).resolve().parents[1] / "src" / "cartkin" / "scenario" / "builtin"


def table(name: str, values: dict, comment: str) -> str:
    lines = [f"# {comment}", f"[population.{name}]"]
    lines += [f"{k} = {float(v):.6g}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def replace_table(text: str, name: str, new: str) -> str:
    """Replace [population.NAME] (with the comment lines right above it) up to the next table or blank line
    run, or insert it before [population.correlation]."""
    pattern = re.compile(rf"(?:#[^\n]*\n)*\[population\.{name}\]\n(?:[^\[\n][^\n]*\n|\n(?=[^\[#\n]))*", re.M)
    if pattern.search(text):
        return pattern.sub(lambda m: new + "\n", text, count=1)
    return text.replace("[population.correlation]", new + "\n[population.correlation]", 1)


def install(name: str, calibrated: Path, draws: list[dict]) -> None:
    data = tomllib.loads(calibrated.read_text(encoding="utf-8"))
    path = BUILTIN / f"{name}.toml"
    text = path.read_text(encoding="utf-8")
    provenance = data["scenario"]["provenance"].replace('"', "'")
    text = re.sub(r'^provenance = ".*"$', f'provenance = "{provenance}"', text, count=1, flags=re.M)
    population = data["population"]
    text = replace_table(text, "variability", table(
        "variability", population["variability"], "inter-individual variability, CV% of a log-normal distribution "
        "around the typical value (calibrated where the provenance says so)"))
    text = replace_table(text, "typical", table(
        "typical", population["typical"], "typical values that differ from il10's defaults (from the calibration)"))
    text = replace_table(text, "uncertainty", f"# the calibration's posterior draws (trial replicates use them)\n"
                         f"[population.uncertainty]\ndraws = \"{name}_draws.csv\"\n")
    path.write_text(text, encoding="utf-8")
    with open(BUILTIN / f"{name}_draws.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(draws[0]))
        writer.writeheader()
        writer.writerows(draws)
    print(f"{path.name}: provenance, variability, typical values; {name}_draws.csv ({len(draws)} draws)")


def read_draws(folder: Path) -> list[dict]:
    with open(folder / "calibrated_draws.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    eliana, meta = Path(sys.argv[1]), Path(sys.argv[2])
    eliana_draws, meta_draws = read_draws(eliana), read_draws(meta)
    install("eliana", eliana / "calibrated.toml", eliana_draws)
    joined = [{**a, **b} for a, b in zip(eliana_draws, meta_draws)]
    install("meta10-19", meta / "calibrated.toml", joined)


if __name__ == "__main__":
    main()
