"""Unit tests of the cgroups layer's pure logic: detection from the mount table, device rules and
the eBPF program built from them, v1->v2 conversions, Docker HostConfig mapping, stats parsing."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refengine.libcontainer.cgroups import (
    ALLOW_ALL,
    DENY_ALL,
    DOCKER_DEFAULT_ALLOWED,
    CgroupError,
    DeviceRule,
    Resources,
    V1Driver,
    V2Driver,
    blkio_to_io_weight,
    detect,
    effective_rules,
    resources_from_host_config,
    shares_to_weight,
    swap_to_v2,
    system_cpu_usage,
)
from refengine.libcontainer.cgroups.devices import (
    parse_v1_list,
    reduce_rules,
    v1_list,
    v1_update_writes,
    v1_writes,
)
from refengine.libcontainer.cgroups.ebpf import (
    BPF_JMP_EXIT,
    Insn,
    compile_rules,
    compile_state,
    run_program,
)
from refengine.libcontainer.cgroups.fs import check_name
from refengine.libcontainer.cgroups.mounts import layout_from_mounts, parse_mountinfo
from refengine.libcontainer.cgroups.stats import (
    UINT64_MAX,
    BlkioStats,
    CgroupStats,
    CpuStats,
    MemoryStats,
    PidsStats,
    parse_blkio_v1,
    parse_io_stat,
)

# this host's mount table (hybrid: v1 controllers, cgroup2 at /sys/fs/cgroup/unified)
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# classic v1 (systemd, co-mounted cpu,cpuacct; optional fields before the separator)
V1 = """\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids
"""
V2 = """\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""


def test_detect_hybrid_is_v1_for_controllers(tmp_path):
    layout = layout_from_mounts(parse_mountinfo(HYBRID))
    assert layout.mode == "hybrid" and layout.version == 1 and layout.unified == "/sys/fs/cgroup/unified"
    assert layout.v1["memory"] == "/sys/fs/cgroup/memory" and layout.v1["name=systemd"] == "/sys/fs/cgroup/systemd"
    f = tmp_path / "mountinfo"
    f.write_text(HYBRID)
    d = detect("refengine-test-x", mountinfo=str(f))
    assert isinstance(d, V1Driver) and d.version == 1 and d.parent == "refengine-test-x"
    # the controller-less cgroup2 tree is joined too, under the key "" (its /proc/<pid>/cgroup name)
    assert set(d.mounts) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                             "name=systemd", ""}
    assert d.mounts[""] == "/sys/fs/cgroup/unified"


def test_detect_v1_comounted(tmp_path):
    layout = layout_from_mounts(parse_mountinfo(V1))
    assert layout.mode == "v1" and layout.unified is None
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    f = tmp_path / "mountinfo"
    f.write_text(V1)
    d = detect(mountinfo=str(f))
    cg_paths = d._paths("abc")
    assert cg_paths["cpu"] == cg_paths["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/refengine/abc"


def test_detect_v2(tmp_path):
    layout = layout_from_mounts(parse_mountinfo(V2))
    assert layout.mode == "v2" and layout.version == 2 and layout.unified == "/sys/fs/cgroup"
    f = tmp_path / "mountinfo"
    f.write_text(V2)
    d = detect(mountinfo=str(f))
    assert isinstance(d, V2Driver) and d.version == 2 and d.mountpoint == "/sys/fs/cgroup"


def test_detect_nothing_mounted():
    with pytest.raises(CgroupError, match="no cgroup filesystem"):
        layout_from_mounts(parse_mountinfo("22 1 0:21 / /sys rw - sysfs sysfs rw\n"))


def test_mountinfo_unescapes_spaces():
    (e,) = parse_mountinfo(r"40 31 0:37 / /mnt/with\040space rw - cgroup cgroup rw,pids" + "\n")
    assert e.mountpoint == "/mnt/with space" and e.super_options == ("rw", "pids")


def test_names_cannot_escape_the_parent():
    for good in ("abc", "a1_b.c-d", "0123456789abcdef" * 4):
        assert check_name(good) == good
    for bad in ("", ".", "..", "../x", "a/b", "/x", "a b", "-x"):
        with pytest.raises(CgroupError):
            check_name(bad)
    assert check_name("refengine/test", nested=True)
    with pytest.raises(CgroupError):
        check_name("refengine/../etc", nested=True)
    with pytest.raises(CgroupError):
        V1Driver("../escape", mounts={"pids": "/nonexistent"})


def test_device_rule_parse_and_line():
    r = DeviceRule.parse("c 1:3 rwm")
    assert r == DeviceRule(allow=True, type="c", major=1, minor=3, access="rwm") and r.line() == "c 1:3 rwm"
    assert DeviceRule.parse("b *:* m").line() == "b *:* m"
    assert DeviceRule.parse("c 136:* rw", allow=False) == DeviceRule(False, "c", 136, None, "rw")
    assert DeviceRule.parse("a") == ALLOW_ALL and DENY_ALL.line() == "a"
    for bad in ("x 1:3 rwm", "c 1 rwm", "c 1:3 q", "c 1:3", "c -1:3 r"):
        with pytest.raises(ValueError):
            DeviceRule.parse(bad)
    with pytest.raises(ValueError):
        DeviceRule(allow=True, type="c", access="rr")


def test_docker_default_list():
    lines = [r.line() for r in DOCKER_DEFAULT_ALLOWED]
    # runc's AllowedDevices (appended by runc to what dockerd sends), incl. tun/tap (runc <=1.1, >=1.2.4)
    assert lines == ["c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
                     "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"]
    assert all(r.allow for r in DOCKER_DEFAULT_ALLOWED)
    assert "c 5:1 rwm" not in lines     # no /dev/console rule: a container console is a pty


def test_reduce_rules_like_the_v1_kernel():
    state = reduce_rules(effective_rules(None))
    assert not state.default_allow and len(state.exceptions) == 11
    assert v1_writes(state)[0] == ("devices.deny", "a")
    assert v1_list(state)[:3] == ["c *:* m", "b *:* m", "c 1:3 rwm"]
    assert state.permits("c", 1, 3, "rw") and state.permits("b", 8, 0, "m") and not state.permits("b", 8, 0, "r")
    assert not state.permits("c", 10, 229, "r")     # /dev/fuse is not in the default list
    # privileged: allow all, later rules cannot take the defaults away
    priv = reduce_rules(effective_rules([ALLOW_ALL]))
    assert priv.default_allow and priv.exceptions == () and v1_list(priv) == ["a *:* rwm"]
    assert v1_writes(priv) == [("devices.allow", "a")]
    # a deny after an allow on the same device removes just those bits
    s = reduce_rules([DENY_ALL, DeviceRule.parse("c 1:3 rwm"), DeviceRule.parse("c 1:3 w", allow=False)])
    assert s.exceptions == (("c", 1, 3, "rm"),)
    assert s.permits("c", 1, 3, "r") and not s.permits("c", 1, 3, "rw")
    # allow-default with a deny exception (partial match denies)
    s = reduce_rules([ALLOW_ALL, DeviceRule.parse("b 8:* w", allow=False)])
    assert not s.permits("b", 8, 1, "rw") and s.permits("b", 8, 1, "r") and s.permits("c", 8, 1, "w")


def test_v1_update_writes_diff_only():
    default = reduce_rules(effective_rules(None))
    listed = parse_v1_list(v1_list(default))
    assert listed == default
    more = reduce_rules(effective_rules([DeviceRule.parse("b 8:0 rw"), DeviceRule.parse("c 1:3 r")]))
    assert v1_update_writes(listed, more) == [("devices.allow", "b 8:0 rw")]
    assert v1_update_writes(more, default) == [("devices.deny", "b 8:0 rw")]
    # narrowing an exception: a deny of the bits that go
    a = reduce_rules([DENY_ALL, DeviceRule.parse("c 4:* rwm")])
    b = reduce_rules([DENY_ALL, DeviceRule.parse("c 4:* r")])
    assert v1_update_writes(a, b) == [("devices.deny", "c 4:* wm")]
    # to or from allow-all: the full rewrite
    priv = reduce_rules([ALLOW_ALL])
    assert parse_v1_list(["a *:* rwm"]) is None
    assert v1_update_writes(None, default) == v1_writes(default)
    assert v1_update_writes(default, priv) == [("devices.allow", "a")]


def test_insn_encoding():
    assert Insn(BPF_JMP_EXIT).encode() == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    assert Insn(0x61, 2, 1, 4, 0).encode() == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])   # r2 = *(u32 *)(r1 + 4)
    assert Insn(0x55, 4, 0, 3, 136).encode() == bytes([0x55, 4, 3, 0, 136, 0, 0, 0])


def test_default_program_decisions():
    prog = compile_rules(effective_rules(None))
    CHAR, BLOCK, M, R, W = 2, 1, 1, 2, 4
    assert run_program(prog, CHAR, R | W, 1, 3) == 1            # /dev/null
    assert run_program(prog, CHAR, R, 136, 7) == 1              # /dev/pts/7
    assert run_program(prog, BLOCK, M, 8, 0) == 1               # mknod any block device
    assert run_program(prog, BLOCK, R, 8, 0) == 0               # but not read it
    assert run_program(prog, CHAR, R, 10, 229) == 0             # /dev/fuse
    assert run_program(compile_rules([ALLOW_ALL]), BLOCK, R | W, 8, 0) == 1


rule_st = st.builds(
    DeviceRule,
    allow=st.booleans(),
    type=st.sampled_from(["a", "b", "c", "c", "b"]),
    major=st.one_of(st.none(), st.sampled_from([1, 5, 8])),
    minor=st.one_of(st.none(), st.sampled_from([0, 3])),
    access=st.sampled_from(["r", "w", "m", "rw", "rm", "wm", "rwm"]),
)


@settings(max_examples=200, deadline=None)
@given(rules=st.lists(rule_st, max_size=8), t=st.sampled_from(["b", "c"]), major=st.sampled_from([1, 5, 8, 9]),
       minor=st.sampled_from([0, 3, 4]), access=st.sampled_from(["r", "w", "m", "rw", "rwm", "wm"]))
def test_ebpf_program_decides_like_the_v1_model(rules, t, major, minor, access):
    """The compiled program (run by the test interpreter) agrees with the v1 kernel model for any rules."""
    state = reduce_rules(rules)
    mask = sum({"m": 1, "r": 2, "w": 4}[c] for c in access)
    got = run_program(compile_state(state), {"b": 1, "c": 2}[t], mask, major, minor)
    assert got == int(state.permits(t, major, minor, access))


def test_conversions():
    assert [shares_to_weight(s) for s in (0, 2, 512, 1024, 262144, 1, 10**6)] == [0, 1, 20, 39, 10000, 1, 10000]
    assert [blkio_to_io_weight(w) for w in (0, 10, 500, 1000)] == [0, 1, 1 + 490 * 9999 // 990, 10000]
    assert swap_to_v2(None, 64) is None and swap_to_v2(0, 64) is None
    assert swap_to_v2(96, 64) == 32 and swap_to_v2(64, 64) == 0 and swap_to_v2(-1, 64) == -1
    assert swap_to_v2(None, -1) == -1                # unlimited memory, swap unset: unlimited swap
    with pytest.raises(ValueError, match="without memory limit"):
        swap_to_v2(96, None)
    with pytest.raises(ValueError, match=">= memory"):
        swap_to_v2(32, 64)


def test_resources_from_host_config(tmp_path):
    r = resources_from_host_config({"Memory": 64 << 20, "MemorySwap": 0, "NanoCpus": 1_500_000_000,
                                    "PidsLimit": 100, "CpuShares": 512, "CpusetCpus": "0", "BlkioWeight": 300,
                                    "OomKillDisable": False, "Devices": [{"PathOnHost": "/dev/null",
                                                                          "PathInContainer": "/dev/xnull",
                                                                          "CgroupPermissions": "rw"}],
                                    "DeviceCgroupRules": ["c 42:* rmw"]})
    assert r.memory == 64 << 20 and r.memory_swap == 128 << 20          # dockerd: swap defaults to 2x memory
    assert (r.cpu_period, r.cpu_quota) == (100000, 150000)
    assert (r.pids_limit, r.cpu_shares, r.cpuset_cpus, r.blkio_weight, r.oom_kill_disable) == \
        (100, 512, "0", 300, False)
    assert r.devices == [DeviceRule(True, "c", 1, 3, "rw"), DeviceRule(True, "c", 42, None, "rmw")]
    assert resources_from_host_config({"Privileged": True}).devices == [ALLOW_ALL]
    empty = resources_from_host_config({"Memory": 0, "PidsLimit": None})
    assert empty.memory is None and empty.pids_limit is None and empty.devices == []
    assert resources_from_host_config({"Memory": 1 << 20, "MemorySwap": -1}).memory_swap == -1
    with pytest.raises(ValueError, match='error gathering device information while adding custom device "/nope"'):
        resources_from_host_config({"Devices": [{"PathOnHost": "/nope"}]})
    regular = tmp_path / "f"
    regular.write_text("")
    with pytest.raises(ValueError, match="not a device"):
        resources_from_host_config({"Devices": [{"PathOnHost": str(regular)}]})
    assert Resources().is_empty() and not r.is_empty()


def test_host_config_device_directory():
    if not os.path.isdir("/dev/net") or not stat.S_ISCHR(os.stat("/dev/net/tun").st_mode):
        pytest.skip("needs /dev/net/tun")
    r = resources_from_host_config({"Devices": [{"PathOnHost": "/dev/net", "CgroupPermissions": "rwm"}]})
    assert DeviceRule(True, "c", 10, 200, "rwm") in r.devices


def test_parse_blkio_v1_and_io_stat():
    text = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n"
    entries = parse_blkio_v1(text)
    assert [(e.major, e.minor, e.op, e.value) for e in entries][:2] == [(8, 0, "Read", 4096), (8, 0, "Write", 8192)]
    assert len(entries) == 6         # the trailing grand total is not a device entry
    io = parse_io_stat("254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n7:0 rbytes=5\n")
    assert [(e.major, e.op, e.value) for e in io.io_service_bytes] == \
        [(254, "read", 1), (254, "write", 2), (7, "read", 5), (7, "write", 0)]
    assert [(e.op, e.value) for e in io.io_serviced][:2] == [("read", 3), ("write", 4)]


def test_to_docker_v1_shape():
    s = CgroupStats(version=1, memory=MemoryStats(usage=100, max_usage=200, limit=None, failcnt=0,
                                                  stats={"cache": 1}),
                    cpu=CpuStats(total=5, percpu=[2, 3], user=4, system=1), pids=PidsStats(current=2, limit=None),
                    blkio=BlkioStats())
    doc = s.to_docker(machine_memory=1 << 30, system_cpu_usage=99, online_cpus=2)
    # failcnt 0 is left out (omitempty), an unlimited limit reads as machine memory
    assert doc["memory_stats"] == {"usage": 100, "max_usage": 200, "stats": {"cache": 1}, "limit": 1 << 30}
    assert doc["cpu_stats"] == {"cpu_usage": {"total_usage": 5, "percpu_usage": [2, 3], "usage_in_kernelmode": 1,
                                              "usage_in_usermode": 4},
                                "system_cpu_usage": 99, "online_cpus": 2,
                                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    assert doc["pids_stats"] == {"current": 2, "limit": UINT64_MAX}
    assert doc["blkio_stats"]["io_service_bytes_recursive"] is None     # Go's nil slice
    assert s.as_dict()["memory"]["usage"] == 100


def test_system_cpu_usage(tmp_path):
    f = tmp_path / "stat"
    f.write_text("cpu  100 0 50 1000 10 0 0 7 0 0\ncpu0 50 0 25 500 5 0 0 0 0 0\n")
    hz = os.sysconf("SC_CLK_TCK")
    assert system_cpu_usage(str(f)) == 1160 * 10**9 // hz          # user..softirq, not steal
    assert system_cpu_usage() > 0
