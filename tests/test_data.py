"""Reading NONMEM-style long data: the Liu 2022 files as released, the documented rules, and every
validation error as a one-line CartkinError that names the problem."""
import csv
import math
from pathlib import Path

import numpy as np
import pytest

import cartkin
from cartkin import CartkinError, Infusion, Regimen
from cartkin.data import Dataset, Subject, read_data

LIU = Path(__file__).resolve().parents[2] / "shared" / "data" / "liu2022"
LIU_OPTIONS = dict(column_map={"time": "TIME", "y": "DV", "y_ID": "DVID"}, dvid_map={1: "nTA", 2: "nB"},
                   covariates={"Reg": "nB0"}, censor_floor=0.2)
needs_liu = pytest.mark.skipif(not (LIU / "Data_CR.csv").is_file() or not (LIU / "Data_NR.csv").is_file(),
                               reason="the Liu 2022 data (../shared/data/liu2022) are not present")


@pytest.fixture(scope="module")
def liu():
    return cartkin.load_model("liu2022")


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def raw_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --- the real files ----------------------------------------------------------------------------------

@needs_liu
def test_liu_complete_remission_file_with_the_documented_mapping(liu):
    rows = raw_rows(LIU / "Data_CR.csv")
    data = read_data(LIU / "Data_CR.csv", liu, **LIU_OPTIONS)
    # expected counts from the raw file: every row after day 0 is an observation, <= 0.2 is censored
    after = [r for r in rows if float(r["time"]) > 0]
    assert data.n_subjects == len({r["ID"] for r in rows}) == 14
    assert data.n_observations == len(after) == 169
    assert data.n_censored == sum(float(r["y"]) <= 0.2 for r in after) == 41
    assert data.observables_used == ("nTA", "nB")
    expected = {}
    for code, name in (("1", "nTA"), ("2", "nB")):
        block = [float(r["y"]) for r in after if r["y_ID"] == code]
        expected[name] = (len(block), sum(y <= 0.2 for y in block))
    assert data.counts() == expected
    # day-0 rows (pre-infusion CAR T zeros and the leukaemia baseline) are excluded, and listed
    assert len(data.excluded) == 28 and {e[3] for e in data.excluded} == {"baseline"}
    for s in data.subjects:
        assert np.all(s.times > 0) and np.all(np.diff(s.times) >= 0)
        assert np.all(s.limits[s.censored] == 0.2) and np.all(np.isnan(s.limits[~s.censored]))
        assert np.all(s.values[s.censored] <= 0.2) and np.all(s.values[~s.censored] > 0.2)
        assert s.regimen is None
        reg = {float(r["Reg"]) for r in rows if r["ID"] == s.id}
        assert s.covariates == {"nB0": reg.pop()}
    first = data.subject("1")
    assert first.covariates == {"nB0": 774.0}
    assert first.n_censored == 1 and first.times[first.censored][0] == 56  # leukaemia at the floor on day 56
    text = data.summary()
    assert "\n" not in text and "14 subjects" in text and "169 observations (41 censored" in text


@needs_liu
def test_liu_both_files_need_prefixed_ids(liu):
    with pytest.raises(CartkinError, match="subject ID 1 appears in both Data_CR.csv and Data_NR.csv.*prefix_ids"):
        read_data([LIU / "Data_CR.csv", LIU / "Data_NR.csv"], liu, **LIU_OPTIONS)
    data = read_data([LIU / "Data_CR.csv", LIU / "Data_NR.csv"], liu, prefix_ids=True, **LIU_OPTIONS)
    assert data.n_subjects == 21
    assert data.ids[0] == "Data_CR-1" and data.ids[-1] == "Data_NR-7"
    assert data.n_observations == 169 + 56 and data.n_censored == 41 + 6
    # NR patient 1's late CAR T values below the floor (0.118 ... 0.181) are censored at 0.2
    nr1 = data.subject("Data_NR-1")
    assert nr1.n_censored == 4 and np.all(nr1.limits[nr1.censored] == 0.2)


@needs_liu
def test_liu_baseline_options(liu):
    zeros = read_data(LIU / "Data_CR.csv", liu, baseline="zeros", **LIU_OPTIONS)
    assert zeros.n_observations == 169 + 14  # the leukaemia value at day 0 is kept
    assert {e[3] for e in zeros.excluded} == {"pre-dose zero"} and len(zeros.excluded) == 14
    s = zeros.subject("1")
    k_nb = liu.observables.index("nB")
    day0 = (s.times == 0) & (s.observable_index == k_nb)
    assert s.values[day0].tolist() == [774.0] == [s.covariates["nB0"]]
    keep = read_data(LIU / "Data_CR.csv", liu, baseline="keep", **LIU_OPTIONS)
    assert keep.n_observations == 197 and not keep.excluded  # the day-0 zeros fall under the floor: censored
    assert keep.n_censored == 41 + 14


@needs_liu
def test_liu_round_trip_through_csv(liu, tmp_path):
    data = read_data([LIU / "Data_CR.csv", LIU / "Data_NR.csv"], liu, prefix_ids=True, **LIU_OPTIONS)
    path = data.to_csv(tmp_path / "long.csv")
    back = read_data(path, liu, covariates={p: p for p in data.covariate_names})
    assert back.ids == data.ids
    for a, b in zip(data.subjects, back.subjects):
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_array_equal(a.observable_index, b.observable_index)
        np.testing.assert_array_equal(a.censored, b.censored)
        np.testing.assert_array_equal(a.limits, b.limits)
        np.testing.assert_array_equal(a.values[~a.censored], b.values[~b.censored])
        assert a.covariates == b.covariates


# --- the documented rules ------------------------------------------------------------------------------

def test_standard_columns_case_insensitive_ids_normalised_and_blocks_per_observable(tmp_path, liu):
    path = write(tmp_path, "id,time,dv,dvid\n1.0,1,5,nTA\n1.0,3,7,nTA\n1,2,100,nB\n1,4,90,nB\n")
    data = read_data(path, liu)
    (s,) = data.subjects
    assert s.id == "1"
    assert s.times.tolist() == [1, 2, 3, 4]
    assert [liu.observables[k] for k in s.observable_index] == ["nTA", "nB", "nTA", "nB"]
    assert not s.censored.any() and s.covariates == {} and s.regimen is None
    ids = read_data(write(tmp_path, "ID,TIME,DV,DVID\n007,1,5,nTA\n7,1,5,nTA\nP-3,1,5,nTA\n", "i.csv"), liu).ids
    assert ids == ("007", "7", "P-3")


def test_dose_records_become_a_regimen_and_set_the_pre_dose_window(tmp_path, liu):
    text = ("ID,TIME,DV,DVID,EVID,MDV,AMT\n"
            "1,0,0,nTA,0,0,.\n"        # pre-dose zero: dropped
            "1,1,.,.,1,1,2e5\n"        # dose on day 1
            "1,1,3,nTA,0,0,.\n"        # at the dose time: still pre-dose, dropped
            "1,2,.,nTA,2,1,.\n"        # EVID 2: ignored
            "1,3,9,nTA,0,1,.\n"        # MDV 1: ignored
            "1,4,8,nTA,0,0,0\n"
            "1,8,1e5,.,1,1,1e5\n")     # second dose
    data = read_data(write(tmp_path, text), liu)
    (s,) = data.subjects
    assert s.times.tolist() == [4.0] and s.values.tolist() == [8.0]
    assert s.regimen == Regimen([Infusion(1, dose_per_kg=2e5), Infusion(8, dose_per_kg=1e5)])
    assert [e[1] for e in data.excluded] == [0.0, 1.0]
    assert "2 dose records" in data.summary()
    flat = read_data(write(tmp_path, text), liu, dose_unit="cells")
    assert [d.cells for d in flat.subjects[0].regimen] == [2e5, 1e5]
    # no EVID column: rows with AMT > 0 are doses
    noevid = read_data(write(tmp_path, "ID,TIME,DV,DVID,AMT\n1,0,.,nTA,5e4\n1,2,4,nTA,0\n", "n.csv"), liu)
    assert noevid.subjects[0].regimen.total_per_kg == 5e4 and noevid.n_observations == 1


def test_censoring_rules_in_order(tmp_path, liu):
    text = ("ID,TIME,DV,DVID,CENS,LLOQ\n"
            "1,1,0.5,nTA,1,.\n"      # CENS 1: limit is DV
            "1,2,0.3,nTA,0,0.4\n"    # below the row LLOQ: censored at 0.4
            "1,3,0.45,nTA,0,0.4\n"   # above it (the row's LLOQ replaces lloq=0.6)
            "1,4,0.45,nTA,0,.\n"     # below lloq=0.6 for nTA
            "1,5,0.8,nTA,0,.\n"
            "1,1,50,nB,0,.\n"        # nB: <= censor_floor 120
            "1,2,120,nB,0,.\n"       # <= includes the floor itself
            "1,3,150,nB,0,.\n")
    data = read_data(write(tmp_path, text), liu, lloq={"nTA": 0.6}, censor_floor={"nB": 120})
    s = data.subjects[0]
    k = {n: i for i, n in enumerate(liu.observables)}
    nta = s.observable_index == k["nTA"]
    assert s.censored[nta].tolist() == [True, True, False, True, False]
    np.testing.assert_array_equal(s.limits[nta], [0.5, 0.4, np.nan, 0.6, np.nan])
    assert s.values[nta].tolist() == [0.5, 0.3, 0.45, 0.45, 0.8]  # values as read
    nb = s.observable_index == k["nB"]
    assert s.censored[nb].tolist() == [True, True, False]
    np.testing.assert_array_equal(s.limits[nb], [120, 120, np.nan])


def test_lloq_by_dvid_code_and_positive_rule(tmp_path, liu):
    path = write(tmp_path, "ID,TIME,DV,DVID\n1,1,0.05,1\n1,2,3,1\n1,1,0,2\n")
    data = read_data(path, liu, dvid_map={1: "nTA", 2: "nB"}, lloq={1: 0.1, "nB": 1})
    s = data.subjects[0]
    assert s.censored.tolist() == [True, True, False]
    with pytest.raises(CartkinError, match=r"line 4: DV = 0 must be > 0 .*positive=False"):
        read_data(path, liu, dvid_map={1: "nTA", 2: "nB"}, lloq={1: 0.1})
    additive = read_data(path, liu, dvid_map={1: "nTA", 2: "nB"}, positive=False)
    assert additive.n_observations == 3 and not additive.subjects[0].censored.any()


def test_a_dvid_mapped_to_skip_is_left_out_and_listed(tmp_path, liu):
    """il10 has no leukaemia-count observable: the Liu files' DVID 2 rows are skipped, not an error."""
    path = write(tmp_path, "ID,TIME,DV,DVID\n1,1,5,1\n1,2,3,1\n1,1,40,2\n2,1,7,1\n2,3,0.5,2\n")
    data = read_data(path, "il10", dvid_map={1: "car_blood", 2: "skip"})
    assert [s.n_observations for s in data.subjects] == [2, 1]
    assert data.observables_used == ("car_blood",)
    assert [(r[0], r[1], r[3]) for r in data.excluded] == [("1", 1.0, "skipped DVID"), ("2", 3.0, "skipped DVID")]
    assert "2 skipped DVID" in data.summary()
    with pytest.raises(CartkinError, match="line 2: unknown DVID '1'"):  # unmapped codes still fail
        read_data(path, "il10", dvid_map={2: "skip"})
    with pytest.raises(CartkinError, match="subject 1: no observations"):
        read_data(path, liu, dvid_map={1: "skip", 2: "skip"})


def test_a_column_named_as_a_parameter_is_a_covariate_unless_mapped(tmp_path, liu):
    text = "ID,TIME,DV,DVID,nB0,Reg\n1,1,5,nTA,700,3\n1,2,7,nTA,700,3\n2,1,3,nTA,900,4\n"
    data = read_data(write(tmp_path, text), liu)
    assert data.covariate_names == ("nB0",)
    assert [s.covariates for s in data.subjects] == [{"nB0": 700.0}, {"nB0": 900.0}]
    mapped = read_data(write(tmp_path, text), liu, covariates={"Reg": "nB0"})  # the explicit mapping wins
    assert [s.covariates for s in mapped.subjects] == [{"nB0": 3.0}, {"nB0": 4.0}]
    assert read_data(write(tmp_path, text), liu, column_map={"nB0": "other"}).covariate_names == ()
    # only when every file has the column, and never a kinetic parameter (stein2019's Cmax, liu2022's ka)
    other = write(tmp_path, "ID,TIME,DV,DVID,ka\n3,1,5,nTA,0.5\n3,2,6,nTA,0.7\n", "other.csv")
    both = read_data([write(tmp_path, text), other], liu, prefix_ids=True)
    assert both.covariate_names == ()


def test_a_file_that_is_not_utf8_is_one_line_error(tmp_path, liu):
    path = tmp_path / "latin1.csv"
    path.write_bytes("ID,TIME,DV,DVID,note\n1,1,5,nTA,5 µg\n".encode("latin-1"))
    with pytest.raises(CartkinError, match="latin1.csv: not UTF-8 text"):
        read_data(path, liu)


def test_single_observable_model_needs_no_dvid_column(tmp_path):
    base = cartkin.load_model("liu2022")
    one = cartkin.Model(name="one", states=base.states, parameter_info=base.parameter_info,
                        equations=base.equations, observable_info=base.observable_info[:1], initial=base.initial)
    data = read_data(write(tmp_path, "ID,TIME,DV\n1,1,2\n1,2,3\n"), one)
    assert data.observables_used == ("nTA",)


def test_dataset_and_subject_are_frozen_with_read_only_arrays(tmp_path, liu):
    data = read_data(write(tmp_path, "ID,TIME,DV,DVID\n1,1,5,nTA\n"), liu)
    s = data.subjects[0]
    with pytest.raises(ValueError):
        s.values[0] = 1.0
    with pytest.raises(AttributeError):
        s.id = "2"
    with pytest.raises(AttributeError):
        data.subjects = ()


# --- from_arrays, round trip with doses ------------------------------------------------------------------

def test_from_arrays_builds_subjects_and_round_trips_with_doses(tmp_path, liu):
    ids = [1, 1, 1, 2, 2]
    data = Dataset.from_arrays(liu, ids, times=[1, 2, 2, 1, 5], values=[3.0, 0.1, 40, 2, 5],
                               observables=["nTA", "nTA", "nB", 0, 0], censored=[False, True, False, False, False],
                               limits=[np.nan, 0.2, np.nan, np.nan, np.nan], covariates={"nB0": [7, 7, 7, 9, 9]},
                               regimens={1: Regimen.single(1e5), 2: Regimen.split(3e5)})
    a, b = data.subjects
    assert a.censored.tolist() == [False, True, False] and a.limits[1] == 0.2 and a.values[1] == 0.1
    assert a.covariates == {"nB0": 7.0} and b.covariates == {"nB0": 9.0}
    assert len(b.regimen) == 3
    back = read_data(data.to_csv(tmp_path / "x.csv"), liu, covariates={"nB0": "nB0"})
    for x, y in zip(data.subjects, back.subjects):
        assert x.id == y.id and x.regimen == y.regimen and x.covariates == y.covariates
        np.testing.assert_array_equal(x.times, y.times)
        np.testing.assert_array_equal(x.limits, y.limits)
    # a single observable name for every row; a regimen for everyone
    one = Dataset.from_arrays("liu2022", ["a", "a"], [1, 2], [1.0, 2.0], "nB", regimens=Regimen.single(1e5))
    assert one.observables_used == ("nB",) and one.subjects[0].regimen.total_per_kg == 1e5
    with pytest.raises(CartkinError, match="flat dose on day 0 cannot be written with dose_unit='per_kg'"):
        Dataset.from_arrays(liu, [1], [1], [1.0], "nB", regimens=Regimen.single(cells=1e7)).to_long()


@pytest.mark.parametrize("kwargs, message", [
    (dict(times=[1, 2]), "times has 2 entries, ids has 3"),
    (dict(values=[1, "x", 3]), r"subject 1, row 1: values = 'x' is not a number"),
    (dict(observables=["nTA", "nXX", "nTA"]), "unknown DVID 'nXX'"),
    (dict(observables=[0, 7, 0]), "observable index 7 outside"),
    (dict(covariates={"nB0": [1, 2, 3]}), r"subject 1: covariate nB0 must have one value per subject, got 1 \(row 0\)"),
    (dict(covariates={"nBO": [1, 1, 1]}), "unknown parameter 'nBO' for model liu2022"),
    (dict(times=[1, -1, 2]), "subject 1, row 1: negative TIME -1"),
    (dict(regimens={5: Regimen.single(1e5)}), "regimens given for unknown subject ID '5'"),
    (dict(baseline="all"), "baseline must be one of"),
])
def test_from_arrays_errors_name_the_row(liu, kwargs, message):
    args = dict(ids=[1, 1, 2], times=[1, 2, 1], values=[1.0, 2.0, 3.0], observables="nTA")
    args.update(kwargs)
    with pytest.raises(CartkinError, match=message) as info:
        Dataset.from_arrays(liu, **args)
    assert "\n" not in str(info.value)


def test_direct_construction_checks(liu):
    s = Subject("1", [1.0, 2.0], [1.0, 2.0], [0, 0], [False, False], [np.nan, np.nan])
    with pytest.raises(CartkinError, match="subject ID 1 appears twice"):
        Dataset((s, s), liu.observables)
    with pytest.raises(CartkinError, match="must be sorted"):
        Subject("2", [2.0, 1.0], [1.0, 2.0], [0, 0], [False, False], [np.nan, np.nan])
    with pytest.raises(CartkinError, match="censored observation needs a finite limit"):
        Subject("3", [1.0], [1.0], [0], [True], [np.nan])
    with pytest.raises(CartkinError, match="observable index outside"):
        Dataset((Subject("4", [1.0], [1.0], [5], [False], [np.nan]),), liu.observables)


# --- every validation error: one line, naming file, line, column, ID ---------------------------------

BAD = [
    # (file text, read_data keyword arguments, message fragment)
    ("ID,TIME,DVID\n1,1,nTA\n", {}, r"d.csv: missing column DV \(columns: ID, TIME, DVID"),
    ("ID,TIME,DV,DVID\n1,1,abc,nTA\n", {}, r"subject 1, d.csv line 2: DV = 'abc' is not a number"),
    ("time,ID,y,DVID\n1,1,abc,nTA\n", {"column_map": {"y": "DV", "time": "TIME"}},
     r"d.csv line 2: DV \(column y\) = 'abc' is not a number"),
    ("ID,TIME,DV,DVID\n1,1,inf,nTA\n", {}, "DV = 'inf' is not a finite number"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,,nTA\n", {}, "d.csv line 3: DV is missing in an observation row"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n1,2,NaN,nTA\n", {}, "line 3: DV is missing"),
    ("ID,TIME,DV,DVID\n1,-1,5,nTA\n", {}, "subject 1, d.csv line 2: negative TIME -1"),
    ("ID,TIME,DV,DVID\n1,,5,nTA\n", {}, "line 2: TIME is missing"),
    ("ID,TIME,DV,DVID\n1,2,5,nTA\n1,1,5,nTA\n", {}, "line 3: TIME 1 is before the previous nTA time 2"),
    ("ID,TIME,DV,DVID\n1,1,5,7\n", {"dvid_map": {1: "nTA"}}, r"line 2: unknown DVID '7' \(dvid_map maps 1 -> nTA"),
    ("ID,TIME,DV,DVID\n1,1,5,nXX\n", {}, "line 2: unknown DVID 'nXX', not an observable of model liu2022"),
    ("ID,TIME,DV,DVID\n1,1,5,nb\n", {}, "did you mean 'nB'"),
    ("ID,TIME,DV,DVID\n1,1,5,1\n", {"dvid_map": {1: "nXY"}}, "dvid_map: unknown observable 'nXY' for model liu2022"),
    ("ID,TIME,DV,DVID,Reg\n1,1,5,nTA,3\n1,2,5,nTA,4\n", {"covariates": {"Reg": "nB0"}},
     r"d.csv, subject 1: covariate Reg must have one value per subject, got 3 \(line 2\) and 4 \(line 3\)"),
    ("ID,TIME,DV,DVID,Reg\n1,1,5,nTA,.\n", {"covariates": {"Reg": "nB0"}}, "covariate Reg is empty on every row"),
    ("ID,TIME,DV,DVID,Reg\n1,1,5,nTA,-3\n", {"covariates": {"Reg": "nB0"}}, "Reg = -3 is outside the bounds of nB0"),
    ("ID,TIME,DV,DVID,Reg\n1,1,5,nTA,x\n", {"covariates": {"Reg": "nB0"}}, "line 2: Reg = 'x' is not a number"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n", {"covariates": {"Reg": "nB0"}}, "d.csv: missing covariate column 'Reg'"),
    ("ID,TIME,DV,DVID,Reg\n1,1,5,nTA,3\n", {"covariates": {"Reg": "nB00"}},
     "unknown parameter 'nB00' for model liu2022"),
    ("ID,TIME,DV,DVID,MDV\n1,1,5,nTA,0\n2,1,5,nTA,1\n", {}, "d.csv, subject 2: no observations"),
    ("ID,TIME,DV,DVID\n1,0,0,nTA\n", {}, r"subject 1: no observations \(1 baseline rows dropped\)"),
    ("ID,TIME,DV,DVID,EVID,AMT\n1,0,.,nTA,1,-5\n1,1,5,nTA,0,.\n", {},
     r"line 2: negative AMT -5 \(a dose needs AMT >= 0\)"),
    ("ID,TIME,DV,DVID,EVID,AMT\n1,0,.,nTA,1,.\n1,1,5,nTA,0,.\n", {}, "line 2: a dose record .EVID 1. needs AMT >= 0"),
    ("ID,TIME,DV,DVID,EVID\n1,0,5,nTA,4\n", {}, "line 2: EVID = 4 is not one of 0, 1, 2"),
    ("ID,TIME,DV,DVID,CENS\n1,1,5,nTA,-1\n", {}, "line 2: CENS = -1 is not one of 0, 1"),
    ("ID,TIME,DV,DVID,MDV\n1,1,5,nTA,2\n", {}, "MDV = 2 is not one of 0, 1"),
    ("ID,TIME,DV,DVID,LLOQ\n1,1,5,nTA,-2\n", {}, "negative LLOQ -2"),
    ("ID,TIME,DV,DVID\n1,1,5\n", {}, "d.csv line 2: 3 fields, the header has 4"),
    ("ID,TIME,DV,DVID\n,1,5,nTA\n", {}, "line 2: empty ID"),
    ("ID,TIME,DV,DVID\n", {}, "d.csv: no data rows"),
    ("", {}, "empty file"),
    ("ID,TIME,DV\n1,1,5\n", {}, "no DVID column, and model liu2022 has several observables"),
    ("ID,TIME,DV,DVID\n1,1,5,\n", {}, "DVID is empty"),
    ("ID,TIME,DV,DVID,time\n1,1,5,nTA,2\n", {}, "columns 'TIME', 'time' all mean TIME"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n", {"column_map": {"tim": "TIME"}}, "column_map names column 'tim', which is not in"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n", {"dose_unit": "mg"}, "dose_unit must be 'per_kg' or 'cells'"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n", {"lloq": -1}, "lloq must be a finite number >= 0"),
    ("ID,TIME,DV,DVID\n1,1,5,nTA\n", {"censor_floor": {"nXX": 1}}, "censor_floor: unknown observable 'nXX'"),
]


@pytest.mark.parametrize("text, kwargs, message", BAD)
def test_bad_data_gets_a_one_line_error_naming_the_problem(tmp_path, liu, text, kwargs, message):
    path = write(tmp_path, text)
    with pytest.raises(CartkinError, match=message) as info:
        read_data(path, liu, **kwargs)
    assert "\n" not in str(info.value)


def test_file_level_errors(tmp_path, liu):
    with pytest.raises(CartkinError, match="data file not found: .*missing.csv"):
        read_data(tmp_path / "missing.csv", liu)
    with pytest.raises(CartkinError, match="data path is not a file"):
        read_data(tmp_path, liu)
    with pytest.raises(CartkinError, match="no data files given"):
        read_data([], liu)
    a = write(tmp_path, "ID,TIME,DV,DVID\n1,1,5,nTA\n", "a.csv")
    b = write(tmp_path, "ID,TIME,DV,DVID\n1,2,5,nTA\n", "b.csv")
    with pytest.raises(CartkinError, match="subject ID 1 appears in both a.csv and b.csv"):
        read_data([a, b], liu)
    both = read_data([a, b], liu, prefix_ids=True)
    assert both.ids == ("a-1", "b-1") and both.source.count(".csv") == 2
    with pytest.raises(CartkinError, match="unknown model 'liu2021'"):
        read_data(a, "liu2021")


def test_an_error_in_the_second_file_names_that_file(tmp_path, liu):
    a = write(tmp_path, "ID,TIME,DV,DVID\n1,1,5,nTA\n", "a.csv")
    b = write(tmp_path, "ID,TIME,DV,DVID\n2,1,5,nTA\n2,x,5,nTA\n", "b.csv")
    with pytest.raises(CartkinError, match=r"subject 2, b.csv line 3: TIME = 'x' is not a number"):
        read_data([a, b], liu)


def test_errors_are_value_errors(tmp_path, liu):
    with pytest.raises(ValueError):
        read_data(write(tmp_path, "ID,TIME,DV,DVID\n1,1,5,nXX\n"), liu)
    assert math.isnan(Dataset.from_arrays(liu, [1], [1], [2.0], "nTA").subjects[0].limits[0])
