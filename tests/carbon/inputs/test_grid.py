"""Grid intensity: the shipped traces, gaps, units and time zones, bad files, every source from config."""
import numpy as np
import pandas as pd
import pytest

from bench.carbon.inputs import grid


def test_shipped_traces_have_their_published_means_and_gaps():
    means = {"bpat_2022": 55, "ciso_2022": 256, "nyis_2022": 273, "erco_2022": 347, "pjm_2022": 363, "miso_2022": 441}
    gaps = {"ciso_2022": 3, "miso_2022": 3, "pjm_2022": 23}
    for name, mean in means.items():
        series = grid.trace(name)
        assert len(series.g_per_kwh) == 8760 and not np.isnan(series.g_per_kwh).any()
        assert round(series.g_per_kwh.mean()) == pytest.approx(mean, abs=1)
        assert series.gaps_filled == gaps.get(name, 0)


def test_gaps_are_interpolated_and_counted(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("time,ci\n2022-01-01 00:00,100\n2022-01-01 01:00,\n2022-01-01 02:00,300\n2022-01-01 04:00,500\n")
    series = grid.from_csv(path, "time", "ci")
    assert series.g_per_kwh.tolist() == [100, 200, 300, 400, 500]  # a blank value and a missing hour
    assert series.gaps_filled == 2


def test_a_gap_longer_than_allowed_is_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,100\n2022-01-01 05:00,300\n")
    with pytest.raises(grid.GridError, match="4 hours without values from 2022-01-01 01:00.*max_gap_h=3"):
        grid.from_csv(path, max_gap_h=3)
    assert grid.from_csv(path, max_gap_h=4).gaps_filled == 4


def test_units_and_time_zones(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("t,lb\n2022-06-01 00:00,1000\n2022-06-01 01:00,500\n")
    series = grid.from_csv(path, "t", "lb", units="lb_per_mwh", timezone="America/Los_Angeles")
    assert series.g_per_kwh[0] == pytest.approx(453.59237)
    assert series.start_utc == pd.Timestamp("2022-06-01 07:00", tz="UTC")  # PDT is UTC-7
    with pytest.raises(grid.GridError, match="wrong grid.units"):
        grid.from_csv(path, "t", "lb", units="kg_per_kwh")  # 1,000,000 g/kWh is no grid


def test_a_period_past_the_series_says_where_it_starts_and_ends(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,100\n2022-01-01 01:00,200\n")
    with pytest.raises(grid.GridError, match=r"covers 2022-01-01 00:00:00\+00:00 to 2022-01-01 02:00:00\+00:00; "
                                             r"3 h from 2022-01-01 00:00:00\+00:00 is outside it"):
        grid.from_csv(path).window(None, 3)


def test_local_times_through_a_clock_change_are_told_apart_or_refused(tmp_path):
    # New York: on 2022-11-06 the clock shows 01:00 twice (EDT, then EST); on 2022-03-13 it skips 02:00.
    path = tmp_path / "g.csv"
    path.write_text("t,ci\n2022-11-06 00:00,100\n2022-11-06 01:00,110\n2022-11-06 01:00,120\n2022-11-06 02:00,130\n")
    series = grid.from_csv(path, "t", "ci", timezone="America/New_York")
    assert series.start_utc == pd.Timestamp("2022-11-06 04:00", tz="UTC")
    assert series.g_per_kwh.tolist() == [100, 110, 120, 130] and series.gaps_filled == 0  # four hours, in order
    path.write_text("t,ci\n2022-03-13 01:00,100\n2022-03-13 02:00,110\n2022-03-13 03:00,120\n")
    with pytest.raises(grid.GridError, match="grid.timezone=America/New_York.*2022-03-13 02:00:00 is a nonexistent"):
        grid.from_csv(path, "t", "ci", timezone="America/New_York")
    # Newest first: read backwards, the same four hours; out of order, the repeated hour is refused.
    path.write_text("t,ci\n2022-11-06 02:00,130\n2022-11-06 01:00,120\n2022-11-06 01:00,110\n2022-11-06 00:00,100\n")
    newest_first = grid.from_csv(path, "t", "ci", timezone="America/New_York")
    assert newest_first.g_per_kwh.tolist() == [100, 110, 120, 130]
    path.write_text("t,ci\n2022-11-06 01:00,110\n2022-11-06 00:00,100\n2022-11-06 01:00,120\n2022-11-06 02:00,130\n")
    with pytest.raises(grid.GridError, match="ambiguous or nonexistent.*in time order"):
        grid.from_csv(path, "t", "ci", timezone="America/New_York")
    # Times with an offset beside naive ones: each by its own zone, in the file's order.
    path.write_text("t,ci\n2022-11-06 00:00,100\n2022-11-06 05:00+00:00,110\n2022-11-06 01:00-05:00,120\n")
    mixed = grid.from_csv(path, "t", "ci", timezone="America/New_York")
    assert mixed.start_utc == pd.Timestamp("2022-11-06 04:00", tz="UTC") and mixed.g_per_kwh.tolist() == [100, 110, 120]
    with pytest.raises(grid.GridError, match="grid.timezone='Mars/Olympus' is not a time zone"):
        grid.from_csv(path, "t", "ci", timezone="Mars/Olympus")


def test_epoch_numbers_as_grid_times_are_refused(tmp_path):
    # They were read as nanoseconds: every row in 1970-01-01 00:00, averaged into one hour.
    path = tmp_path / "g.csv"
    path.write_text("timestamp,intensity_g_per_kwh\n1640995200,100\n1640998800,200\n")
    with pytest.raises(grid.GridError, match="column 'timestamp' holds numbers; give datetimes"):
        grid.from_csv(path)


def test_a_time_given_twice_is_kept_once_if_its_rows_agree_and_refused_if_not(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,100\n2022-01-01 01:00,200\n2022-01-01 01:00,200\n")
    assert grid.from_csv(path).g_per_kwh.tolist() == [100, 200]
    # One of the rows empty: the other's value, not a gap.
    path.write_text("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,\n2022-01-01 00:00,100\n2022-01-01 01:00,200\n")
    kept = grid.from_csv(path)
    assert kept.g_per_kwh.tolist() == [100, 200] and kept.gaps_filled == 0
    path.write_text("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,100\n2022-01-01 01:00,200\n"
                    "2022-01-01 00:00+00:00,999\n")
    with pytest.raises(grid.GridError, match=r"1 time\(s\) given twice with different values, e.g. 2022-01-01 "
                                             r"00:00:00\+00:00 \(100, 999\)"):
        grid.from_csv(path)


def test_bad_grid_files_are_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("when,value\n2022-01-01,1\n")
    with pytest.raises(grid.GridError, match=r"lacks column\(s\) \['timestamp'"):
        grid.from_csv(path)
    with pytest.raises(grid.GridError, match="unknown; shipped hourly traces"):
        grid.trace("ciso_2031")
    with pytest.raises(grid.GridError, match="outside it"):
        grid.trace("ciso_2022").window("2022-12-31 12:00+00:00", 24)
    assert grid.constant(17).window(None, 3).g_per_kwh.tolist() == [17, 17, 17]
    assert 0 < grid.country("FRA").g_per_kwh[0] < grid.country("POL").g_per_kwh[0]


def test_grid_from_config_for_every_source(tmp_path):
    from types import SimpleNamespace

    base = dict(intensity_g_per_kwh=261.0, country="SWE", path=None, time_column="timestamp",
                intensity_column="intensity_g_per_kwh", units="g_per_kwh", timezone=None, max_gap_h=24, start=None,
                scope=None)
    cfg = lambda **kw: SimpleNamespace(**{**base, **kw})  # noqa: E731
    assert grid.from_config(cfg(source="constant"), 5).g_per_kwh.tolist() == [261.0] * 5
    assert len(grid.from_config(cfg(source="country"), 3).g_per_kwh) == 3
    day = grid.from_config(cfg(source="ciso_2022", start="2022-07-15T00:00:00+00:00"), 24)
    assert day.start_utc == pd.Timestamp("2022-07-15", tz="UTC") and len(day.g_per_kwh) == 24
    path = tmp_path / "g.csv"
    path.write_text("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,100\n2022-01-01 01:00,200\n")
    assert grid.from_config(cfg(source="csv", path=str(path)), 2).g_per_kwh.tolist() == [100, 200]
    with pytest.raises(grid.GridError, match="grid.path"):
        grid.from_config(cfg(source="csv"), 2)


@pytest.mark.parametrize("column, counts", [
    ("Carbon Intensity gCO2eq/kWh (LCA)", "lifecycle emissions"),  # Electricity Maps' export names
    ("Carbon Intensity gCO2eq/kWh (direct)", "direct emissions"),
    ("lifecycle_g_per_kwh", "lifecycle emissions"),
    ("direct_g_per_kwh", "direct emissions"),
    ("carbon_intensity_direct", "direct emissions"),
    ("lca_g_per_kwh", "lifecycle emissions"),
    ("life-cycle intensity", "lifecycle emissions"),
    ("intensity", "unstated"),
    ("direct and LCA", "unstated"),  # says both: neither is taken
    ("indirect_share", "unstated"),  # a word that only contains "direct"
])
def test_a_csv_series_says_what_it_counts_where_its_column_name_does(tmp_path, column, counts):
    from types import SimpleNamespace

    path = tmp_path / "g.csv"
    pd.DataFrame({"timestamp": ["2022-01-01 00:00", "2022-01-01 01:00"], column: [100, 200]}).to_csv(path, index=False)
    g = SimpleNamespace(source="csv", path=str(path), time_column="timestamp", intensity_column=column,
                        units="g_per_kwh", timezone=None, max_gap_h=24, start=None, scope=None)
    series = grid.from_config(g, 2)
    assert series.scope.startswith(counts) and (counts == "unstated" or "column's name" in series.scope)
    # Stated, it is what grid.scope says, whatever the name.
    stated = grid.from_config(SimpleNamespace(**{**vars(g), "scope": "direct"}), 2)
    assert stated.scope.startswith("direct emissions") and stated.scope.endswith("(as grid.scope states)")


def test_a_scope_is_stated_only_for_a_series_that_does_not_state_its_own():
    from types import SimpleNamespace

    g = SimpleNamespace(source="constant", intensity_g_per_kwh=300.0, start=None, scope="lifecycle")
    assert grid.from_config(g, 3).scope.startswith("lifecycle emissions")
    with pytest.raises(grid.GridError, match="grid.scope='total': choose one of direct, lifecycle"):
        grid.from_config(SimpleNamespace(**{**vars(g), "scope": "total"}), 3)
    shipped = SimpleNamespace(source="ciso_2022", start=None, scope="lifecycle")
    with pytest.raises(grid.GridError, match=r"grid.scope='lifecycle': applies to grid=constant, country, csv \(the shipped "
                                              r"ciso_2022 series counts direct emissions\)"):
        grid.from_config(shipped, 3)
    assert grid.from_config(SimpleNamespace(source="ciso_2022", start=None, scope=None), 3).scope.startswith("direct")


@pytest.mark.parametrize("cell, row", [("n/a", 1), ('"12,3"', 1), ("NaN", 1), ("120 g", 1)])
def test_text_in_the_value_column_is_refused_with_its_row(tmp_path, cell, row):
    # It was coerced to a gap and interpolated over; only an empty cell is a gap.
    path = tmp_path / "g.csv"
    path.write_text(f"timestamp,intensity_g_per_kwh\n2022-01-01 00:00,100\n2022-01-01 01:00,{cell}\n"
                    f"2022-01-01 02:00,\n2022-01-01 03:00, \n2022-01-01 04:00,300\n")
    text = cell.strip('"')
    with pytest.raises(grid.GridError, match=rf"column 'intensity_g_per_kwh' has text '{text}' at row {row}; "
                                             r"values must be numbers \(leave a cell empty for a gap\)$"):
        grid.from_csv(path)
    path.write_text(path.read_text().replace(cell, "200"))
    series = grid.from_csv(path)
    assert series.g_per_kwh.tolist() == [100, 200, 233.33333333333334, 266.6666666666667, 300]
    assert series.gaps_filled == 2  # an empty cell and a blank one


@pytest.mark.parametrize("content, match", [
    ("", r"is empty$"),
    ("timestamp,intensity_g_per_kwh\n", "has a header but no rows"),
    ("timestamp,intensity_g_per_kwh\n2022-01-01 00:00,1\n2022-01-01 01:00,1,2\n",
     "is not readable as CSV: Error tokenizing data"),
])
def test_empty_or_broken_grid_files_are_one_message(tmp_path, content, match):
    path = tmp_path / "g.csv"
    path.write_text(content)
    with pytest.raises(grid.GridError, match=match) as err:
        grid.from_csv(path)
    assert "\n" not in str(err.value)
