"""A throwaway Synapse homeserver for tests (a real Matrix peer on 127.0.0.1).

Synapse lives in its own virtual environment; its interpreter comes from the environment
variable ``PARLONS_SYNAPSE_PYTHON`` (set by ``python3 dev.py test``), else from
``<repo>/.venv-synapse/bin/python``. That environment is installed on first use
(``ensure_synapse``, called by ``SynapseServer.start`` and the fixtures, runs
``dev.sync_synapse`` under a file lock): a run that selects no Matrix test never installs it.

    with SynapseServer() as hs:                 # or: async with SynapseServer() as hs
        alice = hs.register("alice")            # or: await hs.aregister("alice")
        ...

Each server gets a temp dir (config, SQLite database, media, logs) that ``stop()`` removes.
The homeserver runs in its own process group and gets SIGKILL if the process that started it
dies (``PR_SET_PDEATHSIG``), so a crashed or killed test run leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import aiohttp

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "PARLONS_SYNAPSE_PYTHON"
DEFAULT_SERVER_NAME = "parlons.test"

RateLimits = Literal["relaxed", "default"]

_FAST = {"per_second": 1000, "burst_count": 10000}

#: Every rate limit Synapse 1.163 reads from its config (synapse/config/ratelimiting.py),
#: raised far above anything a test does.
RELAXED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _FAST,
    "rc_registration": _FAST,
    "rc_registration_token_validity": _FAST,
    "rc_login": {"address": _FAST, "account": _FAST, "failed_attempts": _FAST},
    "rc_admin_redaction": _FAST,
    "rc_joins": {"local": _FAST, "remote": _FAST},
    "rc_joins_per_room": _FAST,
    "rc_key_requests": _FAST,
    "rc_3pid_validation": _FAST,
    "rc_invites": {"per_room": _FAST, "per_user": _FAST, "per_issuer": _FAST},
    "rc_third_party_invite": _FAST,
    "rc_media_create": _FAST,
    "rc_presence": {"per_user": _FAST},
    "rc_delayed_event_mgmt": _FAST,
    "rc_room_creation": _FAST,
    "rc_reports": _FAST,
    "rc_user_directory": _FAST,
    "rc_profile": _FAST,
    "rc_federation": {
        "window_size": 1000,
        "sleep_limit": 10000,
        "sleep_delay": 0,
        "reject_limit": 10000,
        "concurrent": 1000,
    },
    "federation_rr_transactions_per_room_per_second": 10000,
    "remote_media_download_per_second": "1000M",
    "remote_media_download_burst_count": "10G",
}

_PR_SET_PDEATHSIG = 1


class SynapseError(RuntimeError):
    """The homeserver did not start, or an admin call failed."""


@dataclass(frozen=True)
class MatrixAccount:
    """A registered user and a logged-in device (reusable with ``AsyncClient.restore_login``)."""

    user_id: str
    access_token: str
    device_id: str
    password: str
    homeserver: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def synapse_python() -> Path:
    """The interpreter of Synapse's own environment (it may not exist: check before use)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    return REPO_ROOT / ".venv-synapse" / "bin" / "python"


_INSTALL_HINT = (
    'create it with `python3 -c "import dev; dev.sync_synapse()"` '
    f"(or run the suite with `python3 dev.py test`), or point {ENV_VAR} at it"
)


def _load_dev() -> Any:
    """The repository's dev.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("parlons_dev", REPO_ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_synapse(python: Path | None = None) -> Path:
    """The Synapse interpreter, installing Synapse into its environment (``<venv>/bin/python``)
    the first time a test needs it."""
    python = Path(python) if python else synapse_python()
    if synapse_missing_reason(python) is not None and python.parent.name == "bin":
        _load_dev().sync_synapse(python.parent.parent)
    return python


def synapse_missing_reason(python: Path | None = None) -> str | None:
    """Why Synapse cannot run with ``python`` (None when it can); cheap (~15 ms)."""
    python = python or synapse_python()
    if not python.exists():
        return f"Synapse interpreter {python} does not exist: {_INSTALL_HINT}"
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u, sys; sys.exit(not u.find_spec('synapse'))",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        return f"{python} has no synapse package: {_INSTALL_HINT}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signing_key() -> str:
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"ed25519 a_{secrets.token_hex(2)} {seed}"


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask Linux to SIGKILL the homeserver when its parent goes away."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


def _registration_mac(secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password):
        mac.update(part.encode())
        mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


class SynapseServer:
    """One Synapse process with a fresh SQLite database in a temp dir.

    ``rate_limits="relaxed"`` raises every ``rc_*`` limit (functional tests);
    ``"default"`` keeps Synapse's own (backoff tests). ``extra_config`` is merged last.
    """

    def __init__(
        self,
        *,
        rate_limits: RateLimits = "relaxed",
        server_name: str = DEFAULT_SERVER_NAME,
        python: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        extra_config: Mapping[str, Any] | None = None,
        keep_data_dir: bool = False,
    ) -> None:
        if rate_limits not in ("relaxed", "default"):
            raise ValueError(f"rate_limits must be 'relaxed' or 'default', not {rate_limits!r}")
        self.rate_limits: RateLimits = rate_limits
        self._server_name = server_name
        self.python = Path(python) if python else synapse_python()
        self.startup_timeout = startup_timeout
        self.extra_config = dict(extra_config or {})
        self.keep_data_dir = keep_data_dir
        self.registration_shared_secret = secrets.token_hex(32)
        self.startup_seconds: float | None = None
        self._data_dir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: MatrixAccount | None = None
        self._admin_lock = threading.Lock()
        self._counter = 0

    # ----------------------------------------------------------------- properties

    @property
    def server_name(self) -> str:
        return self._server_name

    @property
    def port(self) -> int:
        if self._port is None:
            raise SynapseError("the homeserver is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise SynapseError("the homeserver is not started")
        return self._data_dir

    @property
    def config_path(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    @property
    def log_path(self) -> Path:
        """Synapse's own log (WARNING and above)."""
        return self.data_dir / "homeserver.log"

    @property
    def console_path(self) -> Path:
        """The process's stdout/stderr (errors from before logging is set up)."""
        return self.data_dir / "console.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    # ----------------------------------------------------------------- config

    def homeserver_config(self) -> dict[str, Any]:
        data = self.data_dir
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": f"{self.url}/",
            "pid_file": str(data / "homeserver.pid"),
            "report_stats": False,
            "database": {
                "name": "sqlite3",
                "args": {"database": str(data / "homeserver.db")},
            },
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "signing_key": _signing_key(),
            "registration_shared_secret": self.registration_shared_secret,
            "macaroon_secret_key": secrets.token_hex(32),
            "form_secret": secrets.token_hex(32),
            "enable_registration": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "media_store_path": str(data / "media_store"),
            "bcrypt_rounds": 4,
            "log_config": str(data / "log.config"),
        }
        if self.rate_limits == "relaxed":
            config.update(json.loads(json.dumps(RELAXED_RATE_LIMITS)))
        config.update(self.extra_config)
        return config

    def _log_config(self) -> dict[str, Any]:
        return {
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(self.log_path),
                    "formatter": "plain",
                    "level": "WARNING",
                    "encoding": "utf-8",
                }
            },
            "root": {"level": "WARNING", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }

    def _write_config(self) -> None:
        # JSON is valid YAML: no PyYAML needed, no quoting surprises.
        (self.data_dir / "log.config").write_text(json.dumps(self._log_config(), indent=2))
        self.config_path.write_text(json.dumps(self.homeserver_config(), indent=2))

    # ----------------------------------------------------------------- lifecycle

    def _spawn(self) -> None:
        if self._proc is not None:
            raise SynapseError("the homeserver is already started")
        if not self.python.exists():
            raise SynapseError(f"Synapse interpreter {self.python} does not exist (see {ENV_VAR})")
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="parlons-synapse-"))
        self._port = _free_port()
        self._write_config()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
        }
        parent = os.getpid()
        with self.console_path.open("ab") as console:
            # Popen runs in the calling thread on purpose: PR_SET_PDEATHSIG fires when the
            # *thread* that forked exits, so never start from a short-lived worker thread.
            self._proc = subprocess.Popen(
                [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=lambda: _die_with_parent(parent),
            )
        self._started_at = time.monotonic()

    def _check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            tail = self.log_tail()
            hint = f"\n({_INSTALL_HINT})" if "No module named" in tail else ""
            raise SynapseError(
                f"Synapse ({self.python}) exited with status {self._proc.returncode} "
                f"during startup{hint}\n{tail}"
            )

    def _startup_failed(self) -> SynapseError:
        return SynapseError(
            f"Synapse did not answer {self.url}/_matrix/client/versions within "
            f"{self.startup_timeout:.0f} s\n" + self.log_tail()
        )

    def _port_clash(self) -> bool:
        return "Address already in use" in self.log_tail()

    def start(self) -> Self:
        """Start the homeserver and wait until it answers (blocking)."""
        ensure_synapse(self.python)
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_ready()
            except SynapseError:
                retry = attempt < 2 and not self.running and self._port_clash()
                self.stop(remove_data=not retry)
                if not retry:
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    async def astart(self) -> Self:
        """Start the homeserver and wait until it answers, without blocking the loop."""
        for attempt in range(3):
            self._spawn()
            try:
                await self._await_ready()
            except SynapseError:
                retry = attempt < 2 and not self.running and self._port_clash()
                await self.astop(remove_data=not retry)
                if not retry:
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        deadline = self._started_at + self.startup_timeout
        versions = f"{self.url}/_matrix/client/versions"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(versions, timeout=2) as resp:
                    if resp.status == 200:
                        self.startup_seconds = time.monotonic() - self._started_at
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        self._check_alive()
        raise self._startup_failed()

    async def _await_ready(self) -> None:
        deadline = self._started_at + self.startup_timeout
        versions = f"{self.url}/_matrix/client/versions"
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    async with session.get(versions) as resp:
                        if resp.status == 200:
                            self.startup_seconds = time.monotonic() - self._started_at
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.05)
        self._check_alive()
        raise self._startup_failed()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self, *, remove_data: bool | None = None) -> None:
        """SIGTERM the process group, SIGKILL it after 10 s, then remove the temp dir."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait(timeout=10)
            self._signal_group(signal.SIGKILL)  # anything left in the group
            self._proc = None
        self._admin = None
        self._cleanup(remove_data)

    async def astop(self, *, remove_data: bool | None = None) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                deadline = time.monotonic() + 10
                while proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if proc.poll() is None:
                    self._signal_group(signal.SIGKILL)
                    while proc.poll() is None:
                        await asyncio.sleep(0.05)
            self._signal_group(signal.SIGKILL)
            self._proc = None
        self._admin = None
        self._cleanup(remove_data)

    def _cleanup(self, remove_data: bool | None) -> None:
        if remove_data is None:
            remove_data = not self.keep_data_dir
        if remove_data and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.console_path, self.log_path) if self._data_dir else ():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts) or "(no Synapse output)"

    # ----------------------------------------------------------------- HTTP helpers

    def _request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                result: dict[str, Any] = json.loads(resp.read() or b"{}")
                return result
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise SynapseError(f"{method} {path} -> {err.code}: {detail}") from None

    async def _arequest(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, f"{self.url}{path}", json=body, headers=headers) as resp,
        ):
            text = await resp.text()
            if resp.status >= 400:
                raise SynapseError(f"{method} {path} -> {resp.status}: {text}")
            result: dict[str, Any] = json.loads(text or "{}")
            return result

    # ----------------------------------------------------------------- users

    def unique_localpart(self, prefix: str = "user") -> str:
        self._counter += 1
        return f"{prefix.lower()}-{self._counter}-{secrets.token_hex(3)}"

    def _register_body(
        self, nonce: str, localpart: str, password: str, admin: bool, displayname: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": _registration_mac(
                self.registration_shared_secret, nonce, localpart, password, admin
            ),
        }
        if displayname is not None:
            body["displayname"] = displayname
        return body

    def _account(self, answer: dict[str, Any], password: str) -> MatrixAccount:
        return MatrixAccount(
            user_id=answer["user_id"],
            access_token=answer["access_token"],
            device_id=answer["device_id"],
            password=password,
            homeserver=self.url,
        )

    def register(
        self,
        localpart: str,
        password: str | None = None,
        admin: bool = False,
        displayname: str | None = None,
    ) -> MatrixAccount:
        """Register a user with the shared-secret admin API (blocking, ~50 ms)."""
        password = password or secrets.token_urlsafe(12)
        nonce = self._request("GET", "/_synapse/admin/v1/register")["nonce"]
        body = self._register_body(nonce, localpart, password, admin, displayname)
        return self._account(self._request("POST", "/_synapse/admin/v1/register", body), password)

    async def aregister(
        self,
        localpart: str,
        password: str | None = None,
        admin: bool = False,
        displayname: str | None = None,
    ) -> MatrixAccount:
        password = password or secrets.token_urlsafe(12)
        nonce = (await self._arequest("GET", "/_synapse/admin/v1/register"))["nonce"]
        body = self._register_body(nonce, localpart, password, admin, displayname)
        answer = await self._arequest("POST", "/_synapse/admin/v1/register", body)
        return self._account(answer, password)

    @property
    def admin(self) -> MatrixAccount:
        """A server admin, registered on first use."""
        with self._admin_lock:
            if self._admin is None:
                self._admin = self.register(self.unique_localpart("admin"), admin=True)
            return self._admin

    async def aadmin(self) -> MatrixAccount:
        if self._admin is None:
            account = await self.aregister(self.unique_localpart("admin"), admin=True)
            self._admin = self._admin or account
        return self._admin

    @staticmethod
    def _override_path(user_id: str) -> str:
        return f"/_synapse/admin/v1/users/{urllib.parse.quote(user_id)}/override_ratelimit"

    def override_ratelimit(
        self, user_id: str, messages_per_second: int = 0, burst_count: int = 0
    ) -> dict[str, Any]:
        """Per-user message rate limit; ``0, 0`` lifts it entirely (what a broadcast bot needs)."""
        body = {"messages_per_second": messages_per_second, "burst_count": burst_count}
        return self._request("POST", self._override_path(user_id), body, self.admin.access_token)

    async def aoverride_ratelimit(
        self, user_id: str, messages_per_second: int = 0, burst_count: int = 0
    ) -> dict[str, Any]:
        body = {"messages_per_second": messages_per_second, "burst_count": burst_count}
        admin = await self.aadmin()
        return await self._arequest("POST", self._override_path(user_id), body, admin.access_token)

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        return f"<SynapseServer {self.server_name} {where} rate_limits={self.rate_limits}>"
