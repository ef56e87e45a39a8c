"""The pure parts of the benchmark harness; the measurements themselves need
Docker and are exercised by `make bench`."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import memory, probes, report, stats  # noqa: E402
from bench import run as bench_run  # noqa: E402

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
    core = bench_run.PROFILES["core"]
    runs = [
        {"start_smtp_s": 1.0, "idle_pss_mb": 30.0, "accepted_per_s": 200.0},
        {"start_smtp_s": 1.2, "idle_pss_mb": 31.0, "accepted_per_s": 220.0},
        {"start_smtp_s": 1.1, "idle_pss_mb": None, "accepted_per_s": 210.0},
    ]
    base = bench_run.summarize_profile(core, runs, None)
    filt = bench_run.summarize_profile(
        bench_run.PROFILES["filters"],
        [{"start_smtp_s": 2.2, "idle_pss_mb": 120.0, "accepted_per_s": 70.0}],
        base,
    )
    return {
        "meta": {"runs": 3, "idle_wait_s": 60, "messages": 500, "message_size": 940,
                 "connections": 4, "host_cpus": 2, "git_commit": "0123456789abcdef"},
        "image": {
            "name": "mailwright:latest", "id": "sha256:" + "ab" * 32,
            "summary": {"size_mb": stats.summarize([250.04]),
                        "build_cached_s": stats.summarize([30.0, 32.0, 31.0])},
            "reference": {"size_mb": bench_run.IMAGE_REFERENCE},
            "targets": {"size_mb": bench_run.IMAGE_TARGET},
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
    assert "| Throughput accepted on port 25 | filters | 70.0 msg/s | 70.0 | 1 | ×0.33 | 67 |" in md
    assert "- filters run 2: something" in md
    # Every table row has the header's column count.
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len({row.count("|") for row in rows}) == 1


def test_parse_args_rejects_unknown_profile_and_skip():
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--profiles", "core,nope"])
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--skip", "cpu"])
    a = bench_run.parse_args(["--runs", "3", "--skip", "memory,throughput"])
    assert a.runs == 3 and a.skip == {"memory", "throughput"} and a.profiles == ["core", "all-implemented"]


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
