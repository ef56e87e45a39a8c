"""The pure parts of the benchmark harness; the measurements themselves need
Docker and are exercised by `make bench`."""
import contextlib
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import ceilings, measure_container, memory, probes, profiles, report, stats  # noqa: E402
from bench import run as bench_run  # noqa: E402
from mailwright import hostlock  # noqa: E402

SMAPS_ROLLUP = """\
55f1398eb000-7ffe13f57000 ---p 00000000 00:00 0                          [rollup]
Rss:                4500 kB
Pss:                1496 kB
Pss_Dirty:            96 kB
Pss_Anon:             96 kB
Pss_File:           1400 kB
Pss_Shmem:             0 kB
Shared_Clean:       3004 kB
Shared_Dirty:          0 kB
Private_Clean:      1400 kB
Private_Dirty:        96 kB
Swap:                  0 kB
"""


def test_summarize_odd_count_median_and_spread():
    s = stats.summarize([3.0, 1.0, 2.0, 10.0, 4.0])
    assert s["median"] == 3.0
    assert (s["min"], s["max"]) == (1.0, 10.0)
    assert (s["q1"], s["q3"]) == (2.0, 4.0)
    assert s["n"] == 5 and s["failed"] == 0


def test_summarize_counts_failed_runs_without_using_them():
    s = stats.summarize([2.0, None, 4.0])
    assert s["median"] == 3.0
    assert s["n"] == 2 and s["failed"] == 1
    assert s["samples"] == [2.0, None, 4.0]


def test_summarize_single_and_empty():
    one = stats.summarize([1.5])
    assert one["median"] == one["q1"] == one["q3"] == 1.5
    none = stats.summarize([None])
    assert none["median"] is None and none["failed"] == 1


def test_ratio():
    assert stats.ratio(50.0, 200.0) == 0.25
    assert stats.ratio(None, 2.0) is None
    assert stats.ratio(1.0, None) is None
    assert stats.ratio(1.0, 0.0) is None


def test_parse_smaps_rollup():
    f = memory.parse_smaps_rollup(SMAPS_ROLLUP)
    assert f["Rss"] == 4500
    assert f["Pss"] == 1496
    assert f["Private_Dirty"] == 96
    assert "[rollup]" not in "".join(f)


def test_process_memory_reads_proc_layout(tmp_path):
    p = tmp_path / "42"
    p.mkdir()
    (p / "smaps_rollup").write_text(SMAPS_ROLLUP)
    (p / "comm").write_text("smtpd\n")
    (p / "cmdline").write_bytes(b"smtpd\0-n\0smtp\0")
    m = memory.process_memory(42, proc=tmp_path)
    assert m["comm"] == "smtpd"
    assert m["cmdline"] == "smtpd -n smtp"
    assert (m["pss_kb"], m["rss_kb"], m["private_kb"]) == (1496, 4500, 1496)
    assert memory.process_memory(43, proc=tmp_path) is None  # already exited


def test_summarize_processes_totals_top_and_grouping():
    procs = [
        {"pid": 1, "comm": "master", "pss_kb": 1000, "rss_kb": 3000},
        {"pid": 2, "comm": "smtpd", "pss_kb": 700, "rss_kb": 2500},
        {"pid": 3, "comm": "smtpd", "pss_kb": 900, "rss_kb": 2500},
        {"pid": 4, "comm": "dovecot", "pss_kb": 1500, "rss_kb": 4000},
    ]
    s = memory.summarize_processes(procs, top=2)
    assert (s["processes"], s["pss_kb"], s["rss_kb"]) == (4, 4100, 12000)
    assert [p["pid"] for p in s["top"]] == [4, 1]
    smtpd = next(g for g in s["by_program"] if g["comm"] == "smtpd")
    assert (smtpd["count"], smtpd["pss_kb"]) == (2, 1600)
    assert s["by_program"][0]["comm"] == "smtpd"


def test_own_pss_divides_a_page_among_the_given_processes_only():
    kb = memory.PAGE_KB
    own = memory.own_pss_kb({1: {10, 11, 12}, 2: {10, 20}, 3: {10, 11}})
    assert own[1] == pytest.approx(kb / 3 + kb / 2 + kb)
    assert own[2] == pytest.approx(kb / 3 + kb)
    assert own[3] == pytest.approx(kb / 3 + kb / 2)


@pytest.mark.skipif(os.geteuid() != 0, reason="frame numbers in pagemap are root's only")
def test_another_process_sharing_the_pages_leaves_the_own_pss_alone():
    """A forked child shares (copy-on-write) nearly every page of this process: the kernel's PSS of
    this process drops by about half, its own PSS (this process alone) stays its resident size."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        os.read(r, 1)           # wait, sharing the parent's pages, until the parent is done
        os._exit(0)
    os.close(r)
    try:
        me = memory.process_memory(os.getpid())
        procs = [dict(me)]
        assert memory.with_own_pss(procs) == "own"
        assert me["pss_kb"] < 0.8 * me["rss_kb"]                    # the kernel splits with the child
        assert procs[0]["pss_kb"] > 0.9 * me["rss_kb"]              # alone, it owns what it maps
        assert procs[0]["kernel_pss_kb"] == me["pss_kb"]
    finally:
        os.close(w)
        os.waitpid(child, 0)


def test_cgroup_dir_v1_and_v2():
    v1 = "12:pids:/docker/abc\n4:memory:/docker/abc\n1:name=systemd:/docker/abc\n"
    assert memory.cgroup_dir_from_text(v1, Path("/cg")) == Path("/cg/memory/docker/abc")
    v2 = "0::/system.slice/docker-abc.scope\n"
    assert memory.cgroup_dir_from_text(v2, Path("/cg")) == Path("/cg/system.slice/docker-abc.scope")


def test_listening_inodes(tmp_path):
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(
        header
        + "   0: 00000000:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n"
        + "   1: 0100007F:0019 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 20 4 30 10 -1\n"
        + "   2: 00000000:008F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0 100 0 0 10 0\n"
    )
    assert memory.listening_inodes(25, tmp_path) == {1111}  # established socket ignored
    assert memory.listening_inodes(143, tmp_path) == {3333}
    assert memory.listening_inodes(587, tmp_path) == set()


@pytest.mark.parametrize("size", [300, 940, 941, 1000])
def test_make_message_exact_size_and_no_dot_stuffing(size):
    m = probes.make_message("sender@example.test", "user1@example.test", 7, size)
    assert len(m) == size
    assert m.endswith(b"\r\n")
    lines = m.split(b"\r\n")
    assert not any(line.startswith(b".") for line in lines)
    assert b"\n" not in m.replace(b"\r\n", b"")


def test_make_message_too_small():
    with pytest.raises(ValueError):
        probes.make_message("sender@example.test", "user1@example.test", 7, 50)


def test_count_maildir_messages(tmp_path):
    u = tmp_path / "example.test" / "user1"
    for d in ("new", "cur", "tmp", ".Junk/new"):
        (u / d).mkdir(parents=True)
    (u / "new" / "a").write_text("x")
    (u / "cur" / "b").write_text("x")
    (u / "tmp" / "c").write_text("x")  # still being written: not delivered
    (u / ".Junk" / "new" / "d").write_text("x")
    (u / "dovecot.index").write_text("x")
    users = [("example.test", "user1"), ("example.test", "user2")]
    assert probes.count_maildir_messages(tmp_path, users) == 3
    assert probes.count_maildir_messages(tmp_path, [("example.test", "nobody")]) is None


def sample_results():
    core = profiles.PROFILES["core"]
    runs = [
        {"start_smtp_s": 1.0, "idle_pss_mb": 30.0, "accepted_per_s": 200.0},
        {"start_smtp_s": 1.2, "idle_pss_mb": 31.0, "accepted_per_s": 220.0},
        {"start_smtp_s": 1.1, "idle_pss_mb": None, "accepted_per_s": 210.0},
    ]
    base = bench_run.summarize_profile(core, runs, None)
    filt = bench_run.summarize_profile(
        profiles.PROFILES["filters"],
        [{"start_smtp_s": 2.2, "idle_pss_mb": 120.0, "accepted_per_s": 70.0}],
        base,
    )
    return {
        "meta": {"runs": 3, "idle_wait_s": 60, "messages": 500, "message_size": 940,
                 "connections": [4, 16, 64], "host_cpus": 2, "git_commit": "0123456789abcdef"},
        "image": {
            "name": "mailwright:latest", "id": "sha256:" + "ab" * 32,
            "summary": {"size_mb": stats.summarize([250.04]),
                        "build_cached_s": stats.summarize([30.0, 32.0, 31.0])},
            "reference": {"size_mb": profiles.IMAGE_REFERENCE},
            "targets": {"size_mb": profiles.IMAGE_TARGET},
        },
        "build": {"note": "not measured"},
        "profiles": {"core": base, "filters": filt},
        "notes": ["filters run 2: something"],
    }


def test_summarize_profile_ratios_against_baseline():
    r = sample_results()
    assert r["profiles"]["core"]["summary"]["start_smtp_s"]["median"] == pytest.approx(1.1)
    assert r["profiles"]["core"]["summary"]["idle_pss_mb"]["failed"] == 1
    assert "configure_noop_s" not in r["profiles"]["core"]["summary"]  # never measured
    assert r["profiles"]["core"]["ratios"] == {}
    assert r["profiles"]["filters"]["ratios"]["start_smtp_s"] == pytest.approx(2.0)


def test_table_rows_and_formatting():
    md = report.table(sample_results())
    assert "| Image size (docker image inspect; MB = 10^6 B) | image | 250.0 MB | 250.0 | 1 |  | 491 MB" in md
    assert "| Build time, cached (`build/image.py`) | image | 31.0 s | 30.0–32.0 | 3 |" in md
    assert "Build time, cold" not in md  # not measured: no row
    assert "| Cold start to SMTP 220 (port 25) | core | 1.10 s | 1.00–1.20 | 3 |  | 3.1–3.3 s | ≤ 1.6 s |" in md
    assert "| Idle memory, sum of PSS | core | 30.5 MB | 30.0–31.0 | 2 (1 failed) |" in md
    assert "| Throughput accepted on port 25 | filters | 70.0 msg/s | 70.0 | 1 | ×0.33 | 266 |" in md
    assert "- filters run 2: something" in md
    assert "at 4/16/64 concurrent connections (the rows below: 4)" in md
    # Every row of a table has its header's column count.
    for table in md.split("\n\n"):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1


def test_parse_args_rejects_unknown_profile_and_skip():
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--profiles", "core,nope"])
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--skip", "cpu"])
    a = bench_run.parse_args(["--runs", "3", "--skip", "memory,throughput"])
    assert a.runs == 3 and a.profiles == ["core", "all-implemented", "filters", "mail-auth", "dms-defaults"]
    assert a.skip == {"memory", "throughput", "ceilings"}  # no ceilings without throughput


def test_memory_line_uses_median_run_and_groups():
    def run(pss, groups):
        return {"memory": {"pss_kb": pss, "by_program": groups}}
    prof = {"runs": [
        run(9000, [{"comm": "big", "count": 1, "pss_kb": 9000}]),
        run(5000, [{"comm": "smtpd", "count": 2, "pss_kb": 3000}, {"comm": "master", "count": 1, "pss_kb": 2000}]),
        run(1000, [{"comm": "small", "count": 1, "pss_kb": 1000}]),
        {"error": "failed run has no memory"},
    ]}
    assert report.memory_line(prof) == "smtpd×2 3.0, master 2.0 MB"
    assert report.memory_line(prof, top=1) == "smtpd×2 3.0, others 2.0 MB"
    assert report.memory_line({"runs": []}) == ""


def _fake_proc(tmp_path, table):
    for pid, (ppid, comm) in table.items():
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 0 0 0 0\n")
        (d / "smaps_rollup").write_text(SMAPS_ROLLUP)
        (d / "comm").write_text(comm + "\n")
        (d / "cmdline").write_bytes(comm.encode() + b"\0")


def test_snapshot_leaves_out_docker_exec_trees(tmp_path):
    # 100 is the container's init, 50 the shim outside the container;
    # 300 is a health check started by `docker exec`, with a child 301.
    _fake_proc(tmp_path, {
        100: (50, "python3"), 110: (100, "master"), 111: (110, "qmgr"),
        120: (100, "dovecot"), 300: (50, "python3"), 301: (300, "sh (x) y"),
    })
    pids = [100, 110, 111, 120, 300, 301]
    assert memory.parent_pid(301, tmp_path) == 300
    assert memory.descendants(100, pids, tmp_path) == {100, 110, 111, 120}
    snap = memory.snapshot(pids, root=100, proc=tmp_path)
    assert snap["processes"] == 4
    assert snap["pss_kb"] == 4 * 1496
    assert sorted(m["pid"] for m in snap["excluded_exec"]) == [300, 301]
    assert memory.snapshot(pids, proc=tmp_path)["processes"] == 6


# --- profiles -------------------------------------------------------------------

def test_profiles_share_the_core_environment():
    core = profiles.PROFILES["core"].env
    for name, prof in profiles.PROFILES.items():
        assert prof.name == name
        assert prof.env["OVERRIDE_HOSTNAME"] == profiles.FQDN
        assert all(isinstance(v, str) for v in prof.env.values()), name
        # A profile switches things on over core; it never drops a core setting.
        assert set(core) <= set(prof.env), name
    assert core["SSL_TYPE"] == "" and core["ENABLE_AMAVIS"] == "0"
    assert profiles.PROFILES["all-implemented"].env["SSL_TYPE"] == "snakeoil"
    assert profiles.PROFILES["filters"].env["ENABLE_SPAMASSASSIN"] == "1"
    assert profiles.DEFAULT_PROFILES[0] == "core"  # the baseline of the ratios
    assert set(profiles.DEFAULT_PROFILES) <= set(profiles.PROFILES)
    assert "filters" in profiles.DEFAULT_PROFILES  # Amavis + SpamAssassin are in the image (issue 9)
    assert profiles.READY_LINE == "mail.example.test is up and running"


# --- throughput curve: source addresses, levels, message counts -------------------

def test_source_addresses_spread_in_blocks_from_127_0_0_2():
    assert probes.source_addresses(4) == ["127.0.0.2"] * 4
    a = probes.source_addresses(64)
    assert len(a) == 64
    assert {x: a.count(x) for x in a} == {f"127.0.0.{i}": 16 for i in (2, 3, 4, 5)}
    assert a[15] == "127.0.0.2" and a[16] == "127.0.0.3"
    # Never more than Postfix's per-client limit (50) on one address.
    assert max(a.count(x) for x in set(probes.source_addresses(200))) <= 50
    assert probes.source_addresses(17, per_source=16) == ["127.0.0.2"] * 16 + ["127.0.0.3"]
    assert "127.0.0.1" not in probes.source_addresses(1000, per_source=4)


def test_source_addresses_refuses_what_does_not_fit():
    with pytest.raises(ValueError):
        probes.source_addresses(0)
    with pytest.raises(ValueError):
        probes.source_addresses(254 * 16)  # would run past 127.0.0.254
    assert probes.source_addresses(253 * 16)[-1] == "127.0.0.254"


def test_smtp_load_needs_one_source_per_connection():
    with pytest.raises(ValueError):
        probes.smtp_load(10, 4, 940, "s@example.test", ["u@example.test"], sources=["127.0.0.2"])


def test_levels_of_run_whole_curve_on_the_last_runs_only():
    levels = [4, 16, 64]
    assert [measure_container.levels_of_run(levels, i, 5, 1) for i in range(5)] == [[4]] * 4 + [levels]
    assert [measure_container.levels_of_run(levels, i, 3, 2) for i in range(3)] == [[4], levels, levels]
    assert measure_container.levels_of_run(levels, 0, 1, 1) == levels
    assert measure_container.levels_of_run(levels, 0, 1, 0) == [4]


def test_messages_at_gives_every_connection_enough_messages():
    assert measure_container.messages_at(4, 500) == 500
    assert measure_container.messages_at(16, 500) == 500
    assert measure_container.messages_at(64, 500) == 1024


def test_connections_option_parses_sorts_and_validates():
    assert bench_run.parse_args([]).levels == [4, 16, 64]
    assert bench_run.parse_args(["--connections", "16,4"]).levels == [4, 16]
    for bad in ("0,4", "four", "", "5000"):
        with pytest.raises(SystemExit):
            bench_run.parse_args(["--connections", bad])
    assert bench_run.parse_args(["--skip", "throughput"]).skip == {"throughput", "ceilings"}


# --- ceilings ---------------------------------------------------------------------

def test_curve_summary_and_fractions_of_the_ceilings():
    def run(points):
        return {"throughput": [{"connections": c, "accepted_per_s": a, "delivered_per_s": d}
                               for c, a, d in points]}
    runs = [run([(4, 300.0, 200.0)]), run([(4, 320.0, 220.0)]),
            run([(4, 310.0, 240.0), (16, 600.0, 500.0), (64, None, None)])]
    prof = bench_run.summarize_profile(profiles.PROFILES["core"], runs, None)
    curve = prof["curve"]
    assert list(curve) == ["4", "16", "64"]
    assert curve["4"]["delivered_per_s"]["median"] == 220.0 and curve["4"]["delivered_per_s"]["n"] == 3
    assert curve["16"]["accepted_per_s"]["n"] == 1
    assert curve["64"]["delivered_per_s"]["failed"] == 1
    results = {"profiles": {"core": prof},
               "ceilings": {"smtp_sink": {"4": {"per_s": 2200.0}, "16": {"per_s": 2500.0}},
                            "disk_fsync": {"4": {"per_s": 4400.0}, "16": {"per_s": 5000.0}, "64": {"per_s": 6000.0}}}}
    bench_run.add_ceiling_fractions(results)
    assert curve["4"]["delivered_of_sink"] == pytest.approx(0.1)
    assert curve["4"]["delivered_of_disk"] == pytest.approx(0.05)
    assert curve["16"]["delivered_of_sink"] == pytest.approx(0.2)
    assert curve["64"]["smtp_sink_per_s"] is None and curve["64"]["delivered_of_sink"] is None
    assert curve["64"]["delivered_of_disk"] is None  # nothing delivered to compare
    # No ceilings measured at all: fractions are None, not an error.
    bench_run.add_ceiling_fractions({"profiles": {"core": prof}, "ceilings": {"note": "not measured"}})
    assert curve["4"]["delivered_of_sink"] is None


def test_table_shows_the_curve_with_ceilings_and_fractions():
    r = sample_results()
    r["profiles"]["core"]["curve"] = {
        "4": {"accepted_per_s": stats.summarize([300.0, 310.0]), "delivered_per_s": stats.summarize([250.0, 270.0])},
        "64": {"accepted_per_s": stats.summarize([900.0]), "delivered_per_s": stats.summarize([None])},
    }
    r["ceilings"] = {"smtp_sink": {"4": {"per_s": 2600.0}, "64": {"per_s": 2900.0}},
                     "disk_fsync": {"4": {"per_s": 3500.0}}, "disk_fsync_dir": "/var/tmp"}
    bench_run.add_ceiling_fractions(r)
    md = report.table(r)
    assert "| Connections | Profile | Accepted | Delivered |" in md
    assert "| 4 | core | 305.0 | 260.0 | 250.0–270.0 | 2 | 2600 | 10% | 3500 | 7.4% |" in md
    assert "| 64 | core | 900.0 | n/a |  | 0 (1 failed) | 2900 | n/a | n/a | n/a |" in md
    assert "in /var/tmp" in md
    assert md.index("| 4 | core |") < md.index("| 64 | core |")
    del r["profiles"]["core"]["curve"]
    assert "| Connections |" not in report.table(r)  # the curve table only when measured


def test_fmt_fraction():
    assert report.fmt_fraction(0.1) == "10%"
    assert report.fmt_fraction(0.0743) == "7.4%"
    assert report.fmt_fraction(1.5) == "150%"
    assert report.fmt_fraction(None) == "n/a"


def test_sink_command_listens_on_loopback_as_postfix():
    cmd = ceilings.sink_command(40123)
    assert cmd[:2] == ["-u", "postfix"]
    assert cmd[-2:] == ["127.0.0.1:40123", "256"]
    port = ceilings.free_port()
    assert port > 1024 and port not in ceilings.FORBIDDEN_PORTS


def test_scratch_dir_on_the_docker_root_filesystem():
    devs = {"/var/lib/docker": 7, "/var/tmp": 3, "/tmp": 7, "/var/lib/docker/tmp": 7}

    def dev_of(p):
        if p not in devs:
            raise FileNotFoundError(p)
        return devs[p]
    assert ceilings.scratch_dir_on("/var/lib/docker", ["/var/tmp", "/tmp"], dev_of) == "/tmp"
    assert ceilings.scratch_dir_on("/var/lib/docker", ["/nope", "/var/lib/docker/tmp"], dev_of) \
        == "/var/lib/docker/tmp"
    assert ceilings.scratch_dir_on("/var/lib/docker", ["/var/tmp"], dev_of) is None
    assert ceilings.scratch_dir_on("/missing", ["/tmp"], dev_of) is None


def test_fsync_write_rate_writes_durably_and_cleans_up(tmp_path):
    r = ceilings.fsync_write_rate(str(tmp_path), writers=3, seconds=0.05, size=1024)
    assert r["writers"] == 3 and r["size"] == 1024
    assert r["writes"] >= 3  # every writer writes at least once
    assert r["per_s"] == pytest.approx(r["writes"] / r["seconds"])
    assert list(tmp_path.iterdir()) == []  # its files and folder are gone


# --- the host lock ------------------------------------------------------------------

def test_host_lock_excludes_a_second_holder(tmp_path):
    path = str(tmp_path / "lock")
    with hostlock.host_lock(5, path=path):
        assert open(path).read() == f"{os.getpid()}\n"
        with pytest.raises(hostlock.HostLockTimeout):
            with hostlock.host_lock(0, path=path):
                pass
        with pytest.raises(bench_run.BenchError):
            with hostlock.host_lock(0, error=bench_run.BenchError, path=path):
                pass
    with hostlock.host_lock(0, path=path):  # released
        pass


def test_tests_and_bench_share_one_lock():
    sys.path.insert(0, str(REPO / "tests"))
    from harness import dockercli
    assert dockercli.LOCK_PATH == hostlock.LOCK_PATH == bench_run.LOCK_PATH
    assert dockercli.LOCK_PATH.endswith("/mailwright-tests.lock")


# --- main() without docker ----------------------------------------------------------

class _FakeImage:
    id = "sha256:" + "cd" * 32
    attrs = {"Size": 180_000_000}


class _FakeClient:
    def version(self):
        return {"Version": "20.10-fake"}


def _fake_run(client, image_id, profile, args, index):
    points = [{"connections": c, "accepted_per_s": 300.0 + c, "delivered_per_s": 200.0 + c}
              for c in measure_container.levels_of_run(args.levels, index, args.runs, args.curve_runs)]
    return {"index": index, "start_smtp_s": 1.0 + index, "accepted_per_s": points[0]["accepted_per_s"],
            "delivered_per_s": points[0]["delivered_per_s"], "throughput": points}


@pytest.fixture
def no_docker(monkeypatch):
    monkeypatch.setattr(bench_run, "docker_client", lambda: _FakeClient())
    monkeypatch.setattr(bench_run, "get_image", lambda client, name: _FakeImage())
    monkeypatch.setattr(bench_run, "remove_stale_containers", lambda client: None)
    monkeypatch.setattr(bench_run, "hold_image", lambda image: contextlib.nullcontext())
    monkeypatch.setattr(bench_run, "host_lock", lambda wait: contextlib.nullcontext())
    monkeypatch.setattr(bench_run, "one_run", _fake_run)
    monkeypatch.setattr(bench_run.signal, "signal", lambda *a: None)
    monkeypatch.setattr(bench_run.ceilings, "measure", lambda client, image_id, levels, *a, **k: {
        "smtp_sink": {str(c): {"per_s": 2000.0} for c in levels},
        "disk_fsync": {str(c): {"per_s": 4000.0} for c in levels}})


def test_main_with_skip_build_reports_without_build(no_docker, monkeypatch, tmp_path):
    monkeypatch.setattr(bench_run, "measure_build", lambda *a: pytest.fail("--skip build ran the build"))
    rc = bench_run.main(["--image", "x", "--runs", "2", "--skip", "build", "--profiles", "core",
                         "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["build"] == {"note": "not measured (--skip build)"}
    assert "build_cached_s" not in res["image"]["summary"]
    assert "build time not measured (--skip build)" in res["notes"]
    core = res["profiles"]["core"]
    assert core["summary"]["start_smtp_s"]["median"] == 1.5
    assert core["curve"]["4"]["delivered_per_s"]["n"] == 2  # every run
    assert core["curve"]["64"]["delivered_per_s"]["n"] == 1  # the last run
    assert core["curve"]["4"]["delivered_of_sink"] == pytest.approx(204.0 / 2000.0)
    assert core["curve"]["64"]["delivered_of_disk"] == pytest.approx(264.0 / 4000.0)
    md = (tmp_path / "bench.md").read_text()
    assert "| 64 | core | 364.0 | 264.0 | 264.0 | 1 | 2000 | 13% | 4000 | 6.6% |" in md


def test_main_with_build_adds_build_times_and_notes(no_docker, monkeypatch, tmp_path):
    build = {"cold": [{"seconds": 90.0, "exit_code": 0, "image_id": "other"}],
             "cached": [{"seconds": 10.0, "exit_code": 0, "image_id": "other"},
                        {"seconds": 40.0, "exit_code": 0, "image_id": "other", "inputs_changed": True}],
             "same_id_as_benchmarked": False}
    monkeypatch.setattr(bench_run, "measure_build", lambda args, image_id: build)
    rc = bench_run.main(["--image", "x", "--runs", "1", "--skip", "ceilings,memory", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["image"]["summary"]["build_cold_s"]["median"] == 90.0
    assert res["image"]["summary"]["build_cached_s"]["samples"] == [10.0]  # the changed one left out
    assert any(n.startswith("1 cached build(s) left out") for n in res["notes"])
    assert any("another image ID than x" in n for n in res["notes"])
    assert res["ceilings"] == {"note": "not measured"}
    assert res["profiles"]["core"]["curve"]["4"]["delivered_of_sink"] is None


def test_ceilings_measure_every_level_on_docker_root_filesystem(monkeypatch, tmp_path):
    calls = []

    @contextlib.contextmanager
    def fake_sink(client, image_id):
        calls.append(("sink", image_id))
        yield 40123

    monkeypatch.setattr(ceilings, "smtp_sink", fake_sink)
    monkeypatch.setattr(ceilings, "sink_rate", lambda port, c, n, *a: calls.append(("rate", port, c, n))
                        or {"per_s": 1000.0 * c})
    monkeypatch.setattr(ceilings, "fsync_write_rate", lambda d, c, seconds: calls.append(("disk", d, c))
                        or {"per_s": 10.0 * c})

    class Client:
        def info(self):
            return {"DockerRootDir": str(tmp_path)}
    monkeypatch.setattr(ceilings.tempfile, "gettempdir", lambda: str(tmp_path))
    out = ceilings.measure(Client(), "sha256:x", [4, 64], lambda c: 500 if c == 4 else 1024,
                           940, "s@example.test", ["u@example.test"])
    assert [c for c in calls if c[0] == "rate"] == [("rate", 40123, 4, 5000), ("rate", 40123, 64, 10240)]
    assert out["smtp_sink"] == {"4": {"per_s": 4000.0}, "64": {"per_s": 64000.0}}
    assert out["disk_fsync"] == {"4": {"per_s": 40.0}, "64": {"per_s": 640.0}}
    disk_dirs = {c[1] for c in calls if c[0] == "disk"}
    assert len(disk_dirs) == 1 and os.stat(disk_dirs.pop()).st_dev == os.stat(tmp_path).st_dev
