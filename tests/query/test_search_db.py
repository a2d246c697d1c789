"""QIDO-RS search against both databases: matching, scope, returned attributes, paging."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dicomvault.dicom.attributes import Level
from dicomvault.errors import BadRequest
from dicomvault.index.scope import Scope
from dicomvault.index.search import StudyOrder, StudySortKey, search_index
from dicomvault.query.qido import index_query, parse_qido_request, search
from tests.query.factory import add_instance, add_series, add_study

pytestmark = pytest.mark.anyio

BASE = "http://archive.test/dicom-web"
T1 = Scope.single("t1")
T2 = Scope.single("t2")


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with async_sessionmaker(engine, expire_on_commit=False)() as s:
        yield s


async def find(
    session: AsyncSession,
    level: Level,
    params: list[tuple[str, str]] | None = None,
    scope: Scope = T1,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[dict[str, Any]]:
    request = parse_qido_request(level, params or [], study_uid=study_uid, series_uid=series_uid)
    return await search(session, scope, request, base_url=BASE)


def value(result: dict[str, Any], tag: str) -> Any:
    element = result.get(tag)
    if element is None or "Value" not in element:
        return None
    first = element["Value"][0]
    return first["Alphabetic"] if isinstance(first, dict) else first


def uids(results: list[dict[str, Any]], tag: str = "0020000D") -> set[str]:
    return {value(r, tag) for r in results}


# --- matching kinds --------------------------------------------------------------------------


async def test_single_value_match_is_exact_and_case_sensitive(session: AsyncSession) -> None:
    a = await add_study(session, PatientID="SYN001", PatientName="Doe^John")
    await add_study(session, PatientID="SYN0011", PatientName="Roe^Jane")
    assert uids(await find(session, Level.STUDY, [("PatientID", "SYN001")])) == {a.study_uid}
    assert await find(session, Level.STUDY, [("PatientName", "doe^john")]) == []
    assert uids(await find(session, Level.STUDY, [("00100010", "Doe^John")])) == {a.study_uid}


async def test_wildcards_treat_sql_metacharacters_literally(session: AsyncSession) -> None:
    percent = await add_study(session, AccessionNumber="A%1")
    underscore = await add_study(session, AccessionNumber="A_1")
    plain = await add_study(session, AccessionNumber="AB1")
    lower = await add_study(session, AccessionNumber="ab1")
    assert uids(await find(session, Level.STUDY, [("AccessionNumber", "A?1")])) == {
        percent.study_uid,
        underscore.study_uid,
        plain.study_uid,
    }
    assert uids(await find(session, Level.STUDY, [("AccessionNumber", "A%*")])) == {
        percent.study_uid
    }
    assert uids(await find(session, Level.STUDY, [("AccessionNumber", "A_1")])) == {
        underscore.study_uid
    }
    assert uids(await find(session, Level.STUDY, [("AccessionNumber", "a*")])) == {lower.study_uid}


async def test_uid_list_by_comma_backslash_and_repetition(session: AsyncSession) -> None:
    a, b, _ = [await add_study(session) for _ in range(3)]
    for params in (
        [("StudyInstanceUID", f"{a.study_uid},{b.study_uid}")],
        [("StudyInstanceUID", f"{a.study_uid}\\{b.study_uid}")],
        [("StudyInstanceUID", a.study_uid), ("StudyInstanceUID", b.study_uid)],
    ):
        assert uids(await find(session, Level.STUDY, params)) == {a.study_uid, b.study_uid}


async def test_date_ranges_closed_and_open(session: AsyncSession) -> None:
    early = await add_study(session, StudyDate="20191231")
    mid = await add_study(session, StudyDate="20200615")
    late = await add_study(session, StudyDate="20210101")
    await add_study(session)  # no StudyDate: never in a range

    async def dates(query: str) -> set[str]:
        return uids(await find(session, Level.STUDY, [("StudyDate", query)]))

    assert await dates("20200101-20201231") == {mid.study_uid}
    assert await dates("-20200615") == {early.study_uid, mid.study_uid}
    assert await dates("20200615-") == {mid.study_uid, late.study_uid}
    assert await dates("20200615") == {mid.study_uid}


async def test_time_range_includes_the_whole_upper_minute(session: AsyncSession) -> None:
    inside = await add_study(session, StudyTime="101030.5")
    await add_study(session, StudyTime="101100")
    await add_study(session, StudyTime="095959")
    results = await find(session, Level.STUDY, [("StudyTime", "1000-1010")])
    assert uids(results) == {inside.study_uid}


async def test_universal_match_returns_everything_and_the_key(session: AsyncSession) -> None:
    with_name = await add_study(session, PatientName="Doe^John")
    without = await add_study(session)
    results = await find(session, Level.STUDY, [("PatientName", "")])
    assert uids(results) == {with_name.study_uid, without.study_uid}
    assert uids(await find(session, Level.STUDY, [("PatientName", "*")])) == uids(results)


async def test_fuzzy_person_name_matches_word_prefixes_ignoring_case(
    session: AsyncSession,
) -> None:
    doe_john = await add_study(session, PatientName="Doe^John")
    smith_doe = await add_study(session, PatientName="Smith^Doe")
    await add_study(session, PatientName="Moe^Joe")
    fuzzy = ("fuzzymatching", "true")

    async def names(query: str) -> set[str]:
        return uids(await find(session, Level.STUDY, [("PatientName", query), fuzzy]))

    assert await names("doe") == {doe_john.study_uid, smith_doe.study_uid}
    assert await names("jo do") == {doe_john.study_uid}
    assert await names("oe") == set()
    assert await names("d*e^j*") == {doe_john.study_uid}


async def test_fuzzy_referring_physician_name(session: AsyncSession) -> None:
    a = await add_study(session, ReferringPhysicianName="House^Gregory")
    await add_study(session, ReferringPhysicianName="Wilson^James")
    results = await find(
        session,
        Level.STUDY,
        [("ReferringPhysicianName", "greg"), ("fuzzymatching", "true")],
    )
    assert uids(results) == {a.study_uid}


async def test_modalities_in_study_matches_any_series(session: AsyncSession) -> None:
    both = await add_study(session)
    await add_series(session, both, Modality="CT")
    await add_series(session, both, Modality="MR")
    ct_only = await add_study(session)
    await add_series(session, ct_only, Modality="CT")
    us_only = await add_study(session)
    await add_series(session, us_only, Modality="US")

    async def studies(query: str) -> set[str]:
        return uids(await find(session, Level.STUDY, [("ModalitiesInStudy", query)]))

    assert await studies("MR") == {both.study_uid}
    assert await studies("CT") == {both.study_uid, ct_only.study_uid}
    assert await studies("MR\\US") == {both.study_uid, us_only.study_uid}
    [result] = await find(session, Level.STUDY, [("ModalitiesInStudy", "MR")])
    assert result["00080061"]["Value"] == ["CT", "MR"]


async def test_modalities_in_study_on_series_query_returns_all_series_of_study(
    session: AsyncSession,
) -> None:
    study = await add_study(session)
    ct = await add_series(session, study, Modality="CT")
    mr = await add_series(session, study, Modality="MR")
    other = await add_study(session)
    await add_series(session, other, Modality="CT")
    results = await find(session, Level.SERIES, [("ModalitiesInStudy", "MR")])
    assert uids(results, "0020000E") == {ct.series_uid, mr.series_uid}


async def test_integer_keys_match_numerically(session: AsyncSession) -> None:
    study = await add_study(session)
    series = await add_series(session, study, SeriesNumber=2)
    await add_series(session, study, SeriesNumber=12)
    first = await add_instance(session, study, series, InstanceNumber=1, Rows=512)
    await add_instance(session, study, series, InstanceNumber=2, Rows=256)
    assert uids(await find(session, Level.SERIES, [("SeriesNumber", "02")]), "0020000E") == {
        series.series_uid
    }
    results = await find(session, Level.INSTANCE, [("InstanceNumber", "1"), ("Rows", "512")])
    assert uids(results, "00080018") == {first.sop_uid}
    assert await find(session, Level.INSTANCE, [("Rows", "99999999999")]) == []


# --- levels and returned attributes ----------------------------------------------------------


async def test_study_result_is_sorted_dicom_json_with_computed_values(
    session: AsyncSession,
) -> None:
    study = await add_study(
        session, PatientID="SYN001", PatientName="Doe^John", StudyDate="20200101", PatientAge="042Y"
    )
    series = await add_series(session, study, Modality="CT")
    for _ in range(3):
        await add_instance(session, study, series)
    [result] = await find(session, Level.STUDY, [("PatientID", "SYN001")])
    assert list(result) == sorted(result)
    assert value(result, "00100020") == "SYN001"
    assert value(result, "00100010") == "Doe^John"
    assert value(result, "00080020") == "20200101"
    assert result["00201206"] == {"vr": "IS", "Value": [1]}
    assert result["00201208"] == {"vr": "IS", "Value": [3]}
    assert result["00080061"] == {"vr": "CS", "Value": ["CT"]}
    assert result["00081190"] == {"vr": "UR", "Value": [f"{BASE}/studies/{study.study_uid}"]}
    assert "00101010" not in result  # PatientAge is no default return attribute


async def test_includefield_by_keyword_tag_and_all(session: AsyncSession) -> None:
    await add_study(session, PatientID="SYN001", PatientAge="042Y")
    for include in ("PatientAge", "00101010", "00101010,PatientSex", "all"):
        [result] = await find(session, Level.STUDY, [("includefield", include)])
        assert value(result, "00101010") == "042Y", include
    [result] = await find(
        session, Level.STUDY, [("includefield", "PatientSex"), ("includefield", "PatientAge")]
    )
    assert value(result, "00101010") == "042Y"


async def test_series_of_all_studies_carry_study_attributes(session: AsyncSession) -> None:
    study = await add_study(session, PatientID="SYN001", AccessionNumber="ACC1")
    series = await add_series(session, study, Modality="MR", SeriesNumber=3)
    await add_instance(session, study, series)
    await add_instance(session, study, series)
    other = await add_study(session, PatientID="SYN002")
    await add_series(session, other, Modality="MR")
    [result] = await find(session, Level.SERIES, [("PatientID", "SYN001"), ("Modality", "MR")])
    assert value(result, "0020000E") == series.series_uid
    assert value(result, "0020000D") == study.study_uid
    assert value(result, "00080050") == "ACC1"  # study default, no study in the path
    assert result["00201209"] == {"vr": "IS", "Value": [2]}
    assert value(result, "00081190") == (
        f"{BASE}/studies/{study.study_uid}/series/{series.series_uid}"
    )
    assert list(result) == sorted(result)


async def test_series_of_one_study(session: AsyncSession) -> None:
    study = await add_study(session, AccessionNumber="ACC1")
    first = await add_series(session, study, SeriesNumber=2)
    second = await add_series(session, study, SeriesNumber=1)
    other = await add_study(session)
    await add_series(session, other)
    results = await find(session, Level.SERIES, study_uid=study.study_uid)
    assert [value(r, "0020000E") for r in results] == [second.series_uid, first.series_uid]
    assert all(value(r, "0020000D") == study.study_uid for r in results)
    assert all("00080050" not in r for r in results)  # the study is named by the path


async def test_instances_at_all_three_resources(session: AsyncSession) -> None:
    study = await add_study(session, PatientID="SYN001")
    series = await add_series(session, study, Modality="CT", SeriesNumber=1)
    other_series = await add_series(session, study, Modality="SR", SeriesNumber=2)
    a = await add_instance(session, study, series, InstanceNumber=2)
    b = await add_instance(session, study, series, InstanceNumber=1)
    c = await add_instance(session, study, other_series, InstanceNumber=1)
    other_study = await add_study(session)
    other = await add_series(session, other_study)
    await add_instance(session, other_study, other)

    in_series = await find(
        session, Level.INSTANCE, study_uid=study.study_uid, series_uid=series.series_uid
    )
    assert [value(r, "00080018") for r in in_series] == [b.sop_uid, a.sop_uid]
    for result in in_series:
        assert value(result, "0020000D") == study.study_uid
        assert value(result, "0020000E") == series.series_uid
        assert value(result, "00080060") == "CT"
        assert value(result, "00080016") == "1.2.840.10008.5.1.4.1.1.2"
        assert "00100020" not in result
    assert value(in_series[0], "00081190") == (
        f"{BASE}/studies/{study.study_uid}/series/{series.series_uid}/instances/{b.sop_uid}"
    )
    in_study = await find(session, Level.INSTANCE, study_uid=study.study_uid)
    assert [value(r, "00080018") for r in in_study] == [b.sop_uid, a.sop_uid, c.sop_uid]
    everywhere = await find(session, Level.INSTANCE, [("PatientID", "SYN001")])
    assert uids(everywhere, "00080018") == {a.sop_uid, b.sop_uid, c.sop_uid}
    assert all(value(r, "00100020") == "SYN001" for r in everywhere)
    assert len(await find(session, Level.INSTANCE)) == 4


async def test_study_uid_in_path_that_does_not_exist_finds_nothing(
    session: AsyncSession,
) -> None:
    study = await add_study(session)
    await add_series(session, study)
    assert await find(session, Level.SERIES, study_uid="1.2.3.4") == []


# --- scope -----------------------------------------------------------------------------------


async def test_other_tenant_is_never_visible(session: AsyncSession) -> None:
    mine = await add_study(session, "t1", PatientID="SYN001", PatientName="Doe^John")
    my_series = await add_series(session, mine, Modality="CT")
    await add_instance(session, mine, my_series)
    theirs = await add_study(session, "t2", PatientID="SYN001", PatientName="Doe^John")
    their_series = await add_series(session, theirs, Modality="CT")
    their_instance = await add_instance(session, theirs, their_series)

    queries: list[tuple[Level, list[tuple[str, str]], dict[str, str]]] = [
        (Level.STUDY, [], {}),
        (Level.STUDY, [("PatientID", "SYN001")], {}),
        (Level.STUDY, [("PatientID", "SYN*")], {}),
        (Level.STUDY, [("PatientName", "doe"), ("fuzzymatching", "true")], {}),
        (Level.STUDY, [("includefield", "all"), ("limit", "1"), ("offset", "0")], {}),
        (Level.STUDY, [("includefield", "all"), ("limit", "1"), ("offset", "1")], {}),
        (Level.STUDY, [("ModalitiesInStudy", "CT")], {}),
        (Level.STUDY, [("StudyInstanceUID", f"{mine.study_uid},{theirs.study_uid}")], {}),
        (Level.SERIES, [("Modality", "C*")], {}),
        (Level.SERIES, [], {"study_uid": theirs.study_uid}),
        (Level.INSTANCE, [("includefield", "all")], {}),
        (Level.INSTANCE, [("PatientID", "SYN001")], {}),
        (Level.SERIES, [("PatientID", "SYN001"), ("Modality", "CT")], {}),
        (Level.INSTANCE, [("SOPInstanceUID", their_instance.sop_uid)], {}),
        (
            Level.INSTANCE,
            [],
            {"study_uid": theirs.study_uid, "series_uid": their_series.series_uid},
        ),
    ]
    for level, params, path in queries:
        results = await find(session, level, params, T1, **path)
        assert theirs.study_uid not in uids(results), (level, params, path)
        assert all(r["0020000D"]["Value"] == [mine.study_uid] for r in results)
    both = Scope(tenants=frozenset({"t1", "t2"}), write_tenant="t1")
    results = await find(session, Level.STUDY, [("PatientID", "SYN001")], both)
    assert uids(results) == {mine.study_uid, theirs.study_uid}
    assert uids(await find(session, Level.STUDY, [], T2)) == {theirs.study_uid}
    nobody = Scope(tenants=frozenset(), write_tenant="t1")
    assert await find(session, Level.INSTANCE, [], nobody) == []


async def test_every_table_is_scoped_even_under_an_in_scope_parent(
    session: AsyncSession,
) -> None:
    """Defence in depth: a (corrupt) child row of another tenant under a visible parent."""
    study = await add_study(session, "t1", PatientID="SYN001")
    series = await add_series(session, study, Modality="CT")
    mine = await add_instance(session, study, series)
    stray_series = await add_series(session, study, Modality="MR")
    stray_series.tenant = "t2"
    stray = await add_instance(session, study, series)
    stray.tenant = "t2"
    await session.flush()
    for params, path in (
        ([("PatientID", "SYN001")], {}),
        ([], {"study_uid": study.study_uid}),
        ([], {"study_uid": study.study_uid, "series_uid": series.series_uid}),
        ([("SOPInstanceUID", stray.sop_uid)], {}),
    ):
        results = await find(session, Level.INSTANCE, params, T1, **path)
        assert stray.sop_uid not in uids(results, "00080018"), (params, path)
    assert uids(await find(session, Level.INSTANCE, [("PatientID", "SYN001")]), "00080018") == {
        mine.sop_uid
    }
    series_found = await find(session, Level.SERIES, [("PatientID", "SYN001")])
    assert uids(series_found, "0020000E") == {series.series_uid}


async def sqlite_plan(
    engine: AsyncEngine, session: AsyncSession, level: Level, params: list[tuple[str, str]]
) -> list[str]:
    """SQLite's plan (EXPLAIN QUERY PLAN details) of the one SELECT a search runs."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await find(session, level, params)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    [(statement, parameters)] = captured
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        cursor = await raw.driver_connection.execute(  # type: ignore[union-attr]
            "EXPLAIN QUERY PLAN " + statement, parameters
        )
        return [row[3] for row in await cursor.fetchall()]


async def test_sqlite_plans_start_from_the_constrained_level(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    """Without ANALYZE statistics, /instances?PatientID=X must not walk all instances."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans from its statistics")
    study = await add_study(session, PatientID="SYN001")
    series = await add_series(session, study)
    await add_instance(session, study, series)
    await session.commit()
    plan = await sqlite_plan(engine, session, Level.INSTANCE, [("PatientID", "SYN001")])
    assert "ix_studies_tenant_patient_id" in plan[0], plan
    assert not any("sqlite_autoindex_instances" in step for step in plan), plan


async def test_sqlite_reads_the_study_list_in_index_order(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    """A page of /studies (OHIF's first request, the worklist) must not sort the whole tenant,
    and a patient name prefix must not scan it."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL plans from its statistics")
    await add_study(session, PatientID="SYN001", PatientName="Doe^John")
    await session.commit()
    plan = await sqlite_plan(engine, session, Level.STUDY, [("limit", "25")])
    assert "ix_studies_tenant_pk" in plan[0], plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    plan = await sqlite_plan(engine, session, Level.STUDY, [("PatientName", "Do*")])
    assert "ix_studies_tenant_patient_name" in plan[0] and "patient_name>?" in plan[0], plan


async def test_counts_and_modalities_come_from_the_study_row_not_other_tenants(
    session: AsyncSession,
) -> None:
    """The same Study Instance UID in two tenants is two studies (unique keys include tenant)."""
    uid = "1.2.826.0.1.3680043.2.1125.1"
    mine = await add_study(session, "t1", study_uid=uid)
    await add_series(session, mine, Modality="CT")
    theirs = await add_study(session, "t2", study_uid=uid)
    await add_series(session, theirs, Modality="MR")
    await add_series(session, theirs, Modality="US")
    [result] = await find(session, Level.STUDY, [("StudyInstanceUID", uid)])
    assert result["00080061"]["Value"] == ["CT"]
    assert result["00201206"]["Value"] == [1]
    assert await find(session, Level.STUDY, [("ModalitiesInStudy", "MR")]) == []
    series = await find(session, Level.SERIES, study_uid=uid)
    assert [value(r, "00080060") for r in series] == ["CT"]


# --- paging and efficiency -------------------------------------------------------------------


async def test_limit_and_offset_page_newest_first_without_overlap(session: AsyncSession) -> None:
    stored = [await add_study(session, PatientID=f"SYN{i}") for i in range(5)]
    newest_first = [s.study_uid for s in reversed(stored)]
    pages = []
    for offset in (0, 2, 4, 6):
        page = await find(session, Level.STUDY, [("limit", "2"), ("offset", str(offset))])
        pages.append([value(r, "0020000D") for r in page])
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5], []]


async def sorted_studies(
    session: AsyncSession, order: StudyOrder, limit: int = 100, offset: int = 0
) -> list[str]:
    """Study UIDs of tenant t1's SORT patients in ``order``, one page of them."""
    request = parse_qido_request(
        Level.STUDY, [("PatientID", "SORT*"), ("limit", str(limit)), ("offset", str(offset))]
    )
    query = index_query(request, order)
    hits = await session.run_sync(lambda sync: search_index(sync, T1, query))
    return [hit.study.study_uid for hit in hits]


async def test_a_study_list_sorts_in_sql_case_folded_with_blanks_last(
    session: AsyncSession,
) -> None:
    names = ["delta^d", "Alpha^A", "", "charlie^C", "BRAVO^B", None]
    studies = {}
    for i, name in enumerate(names):
        studies[name] = (await add_study(session, PatientID=f"SORT{i}", PatientName=name)).study_uid
    await add_study(session, tenant="t2", PatientID="SORT9", PatientName="AAA^OTHER")
    by_name = StudySortKey.PATIENT_NAME
    ascending = [studies[n] for n in ("Alpha^A", "BRAVO^B", "charlie^C", "delta^d")]
    # The two blank ones come last either way, newest stored first among them.
    blanks = [studies[None], studies[""]]
    assert await sorted_studies(session, StudyOrder(by_name, descending=False)) == [
        *ascending,
        *blanks,
    ]
    assert await sorted_studies(session, StudyOrder(by_name)) == [*ascending[::-1], *blanks]
    # Pages of the sorted whole, not a sort of each page.
    first = await sorted_studies(session, StudyOrder(by_name, False), limit=2)
    rest = await sorted_studies(session, StudyOrder(by_name, False), limit=10, offset=2)
    assert [*first, *rest] == [*ascending, *blanks]


async def test_names_sort_character_by_character_whatever_the_collation(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    """Family names stay together: ``DOE JANE``, ``DOE^JOHN``, ``DOE^ZED``, then ``DOEB``."""
    if engine.dialect.name == "postgresql":
        # The test server's databases use the C locale; a hospital's may not.
        found = await session.execute(
            text("SELECT collname FROM pg_collation WHERE collname IN ('en_US.utf8', 'en_US')")
        )
        names = [row[0] for row in found]
        if not names:
            pytest.skip("no en_US collation on this PostgreSQL server")
        column = "ALTER TABLE studies ALTER COLUMN patient_name_fuzzy"
        await session.execute(text(f'{column} TYPE text COLLATE "{names[0]}"'))
    stored = {}
    for i, name in enumerate(["DOEX", "DOE^ZED", "DOEB", "DOE^JOHN", "DOE JANE"]):
        stored[name] = (await add_study(session, PatientID=f"SORT{i}", PatientName=name)).study_uid
    expected = [stored[n] for n in ("DOE JANE", "DOE^JOHN", "DOE^ZED", "DOEB", "DOEX")]
    order = StudyOrder(StudySortKey.PATIENT_NAME, descending=False)
    assert await sorted_studies(session, order) == expected


async def test_a_study_list_sorts_by_date_then_time_and_by_arrival(session: AsyncSession) -> None:
    late = await add_study(session, PatientID="SORT1", StudyDate="20240102", StudyTime="0900")
    undated = await add_study(session, PatientID="SORT2")
    early = await add_study(session, PatientID="SORT3", StudyDate="20240102", StudyTime="0800")
    oldest = await add_study(session, PatientID="SORT4", StudyDate="20231231", StudyTime="2300")
    order = [s.study_uid for s in (late, undated, early, oldest)]
    by_date = StudyOrder(StudySortKey.DATE, descending=True)
    assert await sorted_studies(session, by_date) == [order[0], order[2], order[3], order[1]]
    by_arrival = StudyOrder(StudySortKey.RECEIVED, descending=False)
    assert await sorted_studies(session, by_arrival) == order
    accession = StudyOrder(StudySortKey.ACCESSION, descending=False)
    assert set(await sorted_studies(session, accession)) == set(order)


async def test_only_a_study_list_takes_an_order(session: AsyncSession) -> None:
    request = parse_qido_request(Level.SERIES, [])
    query = index_query(request, StudyOrder(StudySortKey.DATE))
    with pytest.raises(BadRequest):
        await session.run_sync(lambda sync: search_index(sync, T1, query))


async def test_max_limit_caps_the_page(session: AsyncSession) -> None:
    for _ in range(4):
        await add_study(session)
    request = parse_qido_request(Level.STUDY, [("limit", "100")], max_limit=3)
    assert len(await search(session, T1, request, base_url=BASE)) == 3
    request = parse_qido_request(Level.STUDY, [], default_limit=2)
    assert len(await search(session, T1, request, base_url=BASE)) == 2


@pytest.mark.parametrize(
    ("level", "params"),
    [
        (Level.STUDY, [("PatientID", "SYN001"), ("ModalitiesInStudy", "CT")]),
        (Level.SERIES, [("PatientID", "SYN001"), ("includefield", "all")]),
        (Level.INSTANCE, [("PatientName", "doe"), ("fuzzymatching", "true")]),
    ],
)
async def test_one_sql_statement_per_search(
    engine: AsyncEngine, session: AsyncSession, level: Level, params: list[tuple[str, str]]
) -> None:
    for s in range(3):
        study = await add_study(session, PatientID="SYN001", PatientName="Doe^John")
        for _ in range(3):
            series = await add_series(session, study, Modality="CT")
            for _ in range(3):
                await add_instance(session, study, series)
    await session.commit()
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Transaction control (the SQLite engine issues its own BEGIN) is not a query.
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with async_sessionmaker(engine)() as fresh:
            results = await find(fresh, level, params)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(results) == {Level.STUDY: 3, Level.SERIES: 9, Level.INSTANCE: 27}[level]
    assert len(statements) == 1, statements
