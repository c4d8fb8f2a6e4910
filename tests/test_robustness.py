"""Input cartkin refuses, and answers it must not get silently wrong.

Every refusal is one line `cartkin: error: ...` on stderr, exit code 2, nothing written, and is found
before the heavy work (fits, populations) starts.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError
from cartkin.cli import main
from cartkin.data import Dataset, read_data

GOOD = "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,7,nTA\n2,1,3,nTA\n2,3,4,nTA\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def listing(folder: Path) -> dict:
    """Every file under folder with its content (to show that nothing was written or changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv, capsys, folder: Path, *needles) -> str:
    """Run the CLI; it must exit 2 with one error line naming the problem and leave folder untouched."""
    before = listing(folder)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cartkin: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert listing(folder) == before
    return lines[0]


# --- 3. key=value options: a repeated key is refused -------------------------------------------------

@pytest.mark.parametrize("option, needle", [
    (["--dvid", "1=nTA,1=nB"], "--dvid: 1 is given twice"),
    (["--map", "TIME=TIME", "--map", "TIME=DV"], "--map: TIME is given twice"),
    (["--covariate", "WT=nB0,WT=nTN0"], "--covariate: WT is given twice"),
    (["--fix", "ka=1", "--fix", "ka=2"], "--fix ka is given twice"),
    (["--fix", "ka=nan"], "--fix 'ka=nan'"),
])
def test_repeated_or_bad_keys_are_refused(tmp_path, capsys, option, needle):
    data = write(tmp_path / "d.csv", GOOD)
    refused(["fit", data, "--model", "liu2022", "-o", tmp_path / "out", *option], capsys, tmp_path, needle)


# --- 6. a negative DV is an error, not a censored point ----------------------------------------------

def test_negative_dv_is_not_censored_by_a_floor(tmp_path, capsys):
    data = write(tmp_path / "d.csv", "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,-3,nTA\n")
    with pytest.raises(CartkinError, match=r"line 3: DV = -3 is negative"):
        read_data(data, "liu2022", censor_floor=0.2)
    with pytest.raises(CartkinError, match=r"is negative"):
        read_data(data, "liu2022", lloq=0.5)
    refused(["fit", data, "--model", "liu2022", "-o", tmp_path / "out", "--censor-floor", "0.2"], capsys,
            tmp_path, "DV = -3 is negative")
    # a value at or below the floor but not negative is still censored at it
    ok = read_data(write(tmp_path / "z.csv", "ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,0,nTA\n"), "liu2022",
                   censor_floor=0.2)
    assert ok.subjects[0].censored.tolist() == [False, True]
    # additive-error data may be negative
    add = read_data(data, "liu2022", positive=False)
    assert add.subjects[0].values.tolist() == [5.0, -3.0]


# --- 5. a parameter without information has no SE (NaN), not SE 0 --------------------------------------

def test_a_parameter_without_information_gets_nan_se_and_bounds():
    model = cartkin.load_model("liu2022")
    data = Dataset.from_arrays(model, ["1"], [2.0], [1.05], ["nTA"])
    result = cartkin.fit(model, data, estimate=["rTA0", "ka"], sigma={"sigma_nTA": 0.5}, starts=1)
    f = result.fits[0]
    k = list(f.names).index("ka")
    assert np.isfinite(f.estimates[k])
    assert math.isnan(f.standard_errors[k]) and math.isnan(f.lower[k]) and math.isnan(f.upper[k])
    assert any("no information on" in w and "ka" in w for w in f.warnings)
    assert not f.converged
