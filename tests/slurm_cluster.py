"""A real single-node Slurm cluster for the tests: munge, MariaDB, slurmdbd, slurmctld, slurmd.

Test infrastructure only (users bring their own cluster). Needs root: installs the
Debian packages when missing (``apt-get update`` once, then ``apt-get install``),
writes a private configuration under a temporary folder (``SLURM_CONF`` points
at it, so /etc/slurm is never touched), starts the daemons by hand (no systemd
here), polls ``sinfo`` until the node is idle, and stops what it started by PID.

Facts this relies on are in /work/shared/reference/slurm-notes.md: no cgroups
(proctrack/linuxproc, task/none), ``cred_expire=10`` so a requeued job may run
again after 10 s instead of ~120 s, accounting (slurmdbd) so that cancelled or
killed jobs reach a final state, zombies checked through /proc/PID/stat.
"""
from __future__ import annotations

import os
import stat
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client", "slurmdbd", "mariadb-server")
BINARIES = ("munged", "slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "mariadbd")
PORTS = {"ctld": 16817, "slurmd": 16818, "dbd": 16819}
NODE_CPUS = 4  # more than the 2 real cores (config_overrides): tiny test jobs run side by side
MYSQL_SOCKET = Path("/run/mysqld/mysqld.sock")  # libmariadb's default for StorageHost=localhost
ACCT_DB = "bench_slurm_acct"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


class ClusterUnavailable(RuntimeError):
    """Slurm cannot be brought up here (not root, no apt, a daemon refused to start)."""


def _run(cmd: list[str], timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise ClusterUnavailable(f"{' '.join(cmd)} failed ({out.returncode}): "
                                 f"{(out.stderr or out.stdout).strip()[-500:]}")
    return out


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (kill -0 succeeds on zombies)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, wait (bounded), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return


def ensure_installed() -> None:
    """Install the packages when a binary is missing; ClusterUnavailable if we cannot."""
    if all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("Slurm is not installed and the tests are not root (cannot apt-get)")
    if not shutil.which("apt-get"):
        raise ClusterUnavailable("Slurm is not installed and there is no apt-get on this machine")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], timeout=300, env=env)
    _run(["apt-get", "install", "-y", "-qq", *PACKAGES], timeout=600, env=env)


class SlurmCluster:
    """Configure, start and stop one private single-node cluster."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="bench-slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.started: list[tuple[str, int]] = []  # (name, pid) of the daemons WE started

    # ---------------------------------------------------------------- configuration
    def write_config(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        d = self.dir
        self.conf.write_text(f"""\
ClusterName=benchtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={PORTS['ctld']}
SlurmdPort={PORTS['slurmd']}
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={PORTS['dbd']}
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=30
MaxArraySize=1001
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        # One schedulable fake GPU (slurm-notes.md): a job asking --gpus-per-node=1 runs with
        # CUDA_VISIBLE_DEVICES=0 on a node where torch sees no CUDA -- a node without a working GPU.
        fake = d / "fake-nvidia0"
        if not fake.exists():
            os.mknod(fake, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null-like char device
        (d / "gres.conf").write_text(f"AutoDetect=off\nName=gpu File={fake}\n")
        dbd = self.dir / "slurmdbd.conf"  # slurmdbd reads it next to SLURM_CONF
        dbd.write_text(f"""\
AuthType=auth/munge
DbdHost=localhost
DbdPort={PORTS['dbd']}
SlurmUser=root
PidFile={d}/slurmdbd.pid
LogFile={d}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc={ACCT_DB}
""")
        dbd.chmod(0o600)

    # ---------------------------------------------------------------- daemons
    def _munge_ok(self) -> bool:
        if not MUNGE_SOCKET.exists():
            return False
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return cred.returncode == 0 and subprocess.run(
            ["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0

    def _start_munge(self) -> None:
        if self._munge_ok():
            return
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            _run(["mungekey", "--create"], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        _run(["runuser", "-u", "munge", "--", "munged"], timeout=30)
        self._wait(self._munge_ok, 15, "munged")
        pid = int(Path("/run/munge/munged.pid").read_text())
        self.started.append(("munged", pid))

    def _mysql_ok(self) -> bool:
        return MYSQL_SOCKET.exists() and subprocess.run(
            ["mariadb-admin", "--socket", str(MYSQL_SOCKET), "ping"], capture_output=True,
            timeout=10).returncode == 0

    def _start_mariadb(self) -> None:
        if self._mysql_ok():
            return
        MYSQL_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MYSQL_SOCKET.parent, "mysql", "mysql")
        if not Path("/var/lib/mysql/mysql").is_dir():
            _run(["mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql"], timeout=120)
        log = open(self.dir / "log" / "mariadb.log", "ab")
        proc = subprocess.Popen(
            ["mariadbd", "--user=mysql", "--datadir=/var/lib/mysql", f"--socket={MYSQL_SOCKET}",
             "--skip-networking", f"--pid-file={MYSQL_SOCKET.parent}/bench-test.pid"],
            stdout=log, stderr=log, start_new_session=True)
        self.started.append(("mariadbd", proc.pid))
        self._wait(self._mysql_ok, 30, "mariadbd")

    def _start_daemon(self, name: str, args: list[str], pidfile: str) -> None:
        _run([name, *args], env=self.env, timeout=30)
        pid_path = self.dir / pidfile
        self._wait(pid_path.exists, 10, name)
        self._wait(lambda: pid_path.read_text().strip() != "", 5, name)
        self.started.append((name, int(pid_path.read_text())))

    def _dbd_ok(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", PORTS["dbd"])) == 0

    def node_state(self) -> str:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                             env=self.env, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            time.sleep(0.2)
        raise ClusterUnavailable(f"{what} did not come up within {timeout:.0f} s; logs in {self.dir}/log")

    def start(self) -> "SlurmCluster":
        ensure_installed()
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting munge/slurm daemons needs root")
        self.write_config()
        try:
            self._start_munge()
            self._start_mariadb()
            # job ids restart at 1 with a cleared controller state: old accounting would collide
            _run(["mariadb", "--socket", str(MYSQL_SOCKET), "-e", f"DROP DATABASE IF EXISTS {ACCT_DB}"])
            self._start_daemon("slurmdbd", [], "slurmdbd.pid")
            self._wait(self._dbd_ok, 20, "slurmdbd")
            self._start_daemon("slurmctld", ["-c"], "slurmctld.pid")
            self._start_daemon("slurmd", [], "slurmd.pid")
            self._wait(lambda: self.node_state() == "idle", 60, "node idle")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel our jobs, then stop our daemons by PID, newest first."""
        if any(name == "slurmctld" for name, _ in self.started):
            subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True, timeout=10)
            time.sleep(1)
        for _, pid in reversed(self.started):
            stop_pid(pid)
        self.started.clear()
