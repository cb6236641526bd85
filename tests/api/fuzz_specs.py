"""Schemathesis over every committed spec, against a real `aerekos up`: each server must answer
what its spec says it answers (status codes, content types, schemas, `Allow` on 405, no 5xx,
schema-invalid input refused).

Run by `cargo xtask test` (the "API fuzzing" stage), which installs schemathesis into
target/tools/schemathesis and passes:

    AEREKOS_BIN   the aerekos executable
    ST            schemathesis' `st`

Prints `# pass N` / `# fail N` (one per spec), as the other stages' totals are counted, and exits
non-zero on any failure. What is left out, and why, is listed here and in docs/architecture.md.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Which checks run, and the operations where positive_data_acceptance (ST202, "schema-valid
# request rejected") cannot hold, with the reason each, are in schemathesis.toml beside this
# script: the limits the servers enforce are declared in their specs (aerekos_common::limits).
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")

# Operations left out: they end the fuzzer's own session or take apart the platform it runs
# against (its services, its users, its worker), or they are long polls that hold each request
# for up to wait_secs (the revocation feed, a worker's assignments) or for as long as the client
# stays (logs_manager's live tail), or run a generated program on this machine (submitting a job,
# a schedule that submits one, a sandbox and its commands). The API tests cover each.
EXCLUDED_OPERATIONS = [
    "get_revocations", "get_assignments", "tail_logs",
    "logout", "change_password", "revoke_token", "regenerate_registration_token",
    "create_user", "update_user", "delete_user", "reset_user_password",
    "deploy_service", "remove_service", "disable_service", "move_service", "restore_service",
    "delete_instance", "delete_worker",
    "submit_job", "create_schedule", "replace_schedule", "create_sandbox", "exec_in_sandbox",
]

# Each spec is fuzzed where it is served: the services at their instance's own address (their
# /health, /ready and /metrics are not behind the gateway), the worker's API on its listener.
# FUZZ_SPECS=logs_manager,worker narrows a run by hand to those.
SPECS = [s for s in os.environ.get("FUZZ_SPECS", "").split(",") if s] or [
    "conductor", "key_manager", "storage_manager", "secrets_manager", "logs_manager", "metrics_manager", "worker"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def failures_section(output, most=40):
    """The FAILURES part of schemathesis' output (up to its SUMMARY), at most `most` lines."""
    lines = output.splitlines()
    start = next((i for i, l in enumerate(lines) if "FAILURES" in l), 0)
    end = next((i for i, l in enumerate(lines) if "SUMMARY" in l and i > start), len(lines))
    section = lines[start:end]
    return "\n".join(section[:most] + (["… (%d more lines above)" % (len(section) - most)] if len(section) > most else []))


def wait_for(what, probe, seconds=90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise SystemExit("timed out waiting for " + what)


def main():
    password = secrets.token_urlsafe(16)
    port, worker_port = free_port(), free_port()
    data = tempfile.mkdtemp(prefix="aerekos-fuzz-")
    env = dict(os.environ, CONDUCTOR_HOST="127.0.0.1", CONDUCTOR_PORT=str(port), CONDUCTOR_S3_PORT="off",
               WORKER_API_HOST="127.0.0.1", WORKER_API_PORT=str(worker_port), AEREKOS_ADMIN_PASSWORD=password,
               AEREKOS_INSTANCE_PORTS="28000-28999", RATE_LIMIT_PER_ADDRESS="off",
               RATE_LIMIT_PER_CALLER="off", HEARTBEAT_INTERVAL="1s", RUST_LOG="warn",
               # A loaded machine must not lose the worker mid-run (its services' answers would
               # turn into 503s that are the platform's, not the spec's, to explain).
               WORKER_TTL="60s")
    log = open(os.path.join(data, "up.log"), "w")
    up = subprocess.Popen([os.environ["AEREKOS_BIN"], "up"], cwd=data, env=env, stdout=log, stderr=log)
    base, worker = "http://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % worker_port
    passed = failed = 0
    failure_reports = []
    try:
        wait_for("the conductor", lambda: get(base + "/ready")[0] == 200)
        login = urllib.request.Request(base + "/api/auth/login", data=json.dumps({"username": "admin", "password": password}).encode(),
                                       headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(login) as r:
            token = json.load(r)["token"]
        for service, probe in [("key_manager", "/api/key_manager/keys"), ("storage_manager", "/api/storage_manager/buckets"),
                               ("secrets_manager", "/api/secrets_manager/secrets"),
                               ("logs_manager", "/api/logs_manager/records"),
                               ("metrics_manager", "/api/metrics_manager/names")]:
            wait_for(service, lambda: get(base + probe, token)[0] == 200)
        wait_for("the worker's API", lambda: get(worker + "/health")[0] == 200)
        urls = {"conductor": base, "worker": worker}
        for service in ["key_manager", "storage_manager", "secrets_manager", "logs_manager", "metrics_manager"]:
            code, body = get("%s/api/registry/%s" % (base, service), token)
            urls[service] = json.loads(body)["endpoints"][0]["url"]
        for spec in SPECS:
            url = urls[spec]
            command = [os.environ["ST"], "--config-file", CONFIG, "run", os.path.join(ROOT, "openapi", spec + ".json"), "--url", url,
                       "-H", "Authorization: Bearer " + token,
                       "--exclude-operation-id-regex", "^(%s)$" % "|".join(EXCLUDED_OPERATIONS),
                       "--phases", "examples,coverage,fuzzing", "--max-examples", "20", "--seed", "1",
                       # One worker: with a fixed seed the requests then come in a fixed order,
                       # so a failure found here is found again by the same command.
                       "--workers", "1", "--no-color"]
            print("==> schemathesis: %s spec against %s" % (spec, url), flush=True)
            # In the run's own directory: schemathesis keeps a cache (.schemathesis/) where it runs.
            result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=data)
            print(result.stdout, flush=True)
            if result.returncode == 0:
                passed += 1
            else:
                failed += 1
                print("schemathesis found failures in the %s spec (above)" % spec, flush=True)
                failure_reports.append((spec, failures_section(result.stdout)))
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
        if failed:
            with open(os.path.join(data, "up.log")) as f:
                print("aerekos up's log:\n" + f.read()[-5000:], flush=True)
        # Last, so that a report that keeps only the run's tail still shows what failed.
        for spec, report in failure_reports:
            print("==> what schemathesis found in the %s spec:\n%s" % (spec, report), flush=True)
    print("# pass %d" % passed)
    print("# fail %d" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
