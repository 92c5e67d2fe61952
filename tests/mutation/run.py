"""make mutants: mutation testing of the critical modules with cosmic-ray.

Each module is mutated in a throwaway copy of the working tree (cosmic-ray edits files
in place), and each mutant runs only the tests that cover that module; a mutant the
tests do not fail "survived". Prints the kill rate per module and every survivor.

    python -m tests.mutation.run [--workers=N] [module ...]      # default: all of MODULES
    python -m tests.mutation.run --retest-survivors|--resume [--workers=N] [module ...]

With --workers=N, N copies of the tree each run one mutant at a time (cosmic-ray's http
distributor): about N times faster on N idle cores.

Each run keeps its session in .mutants/<module>.sqlite (ignored by git). With
--retest-survivors only the previous run's survivors run again (after new tests); with
--resume also the mutants it had not reached (a run stopped early). Either needs the
module unchanged since (its sha256 is kept beside the session).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / ".mutants"
# Each mutant's tests run in a process forked from tests/mutation/forkserver.py.
SOCKET = "forkserver.sock"  # in each copy of the tree; the test command runs there
PYTEST = "{python} -m tests.mutation.forkserver --run " + SOCKET + " -x -q -p no:randomly {tests}"
TEST_ENV = {"PYTHONPATH": "model_image", "PYTHONDONTWRITEBYTECODE": "1"}
# module -> the tests that cover it (fast ones: each mutant runs them once).
MODULES = {
    "model_image/sd21/s3.py": "tests/system/model_image/test_s3_helpers.py "
                              "tests/system/model_image/test_defensive_paths.py",
    # In process on artifacts packaged by compile's own code (no tracing): under a second a case.
    "model_image/sd21/stage.py": "tests/system/model_image/test_stage.py tests/system/model_image/test_defensive_paths.py "
                                 "-k 'not queue_size'",
    # Fastest first: with -x a mutant stops at its first failing test.
    "model_image/sd21/service.py": "tests/system/model_image/test_defensive_paths.py::"
                                   "test_exactly_queue_size_requests_wait_and_the_next_gets_429 "
                                   "tests/system/model_image/test_service.py tests/system/model_image/test_device_health.py",
    # Less the one test that starts a real server (13 s; it checks forwarding, which others check too).
    "model_image/sd21/gateway.py": "tests/system/model_image/test_gateway.py "
                                   "tests/integration/workload/test_joins_across_settings.py -k 'not real_server'",
    "model_image/sd21/health.py": "tests/system/model_image/test_device_health.py",
    "model_image/sd21/cloudwatch.py": "tests/system/model_image/test_cloudwatch_publisher.py",
    "model_image/sd21/artifact.py": "tests/system/model_image/test_artifact.py tests/system/model_image/test_neuron_seam.py",
    # The one contract between infra and runtime: its unit tests, then the charts that build env from it.
    "model_image/sd21/contract/environment.py": "tests/unit/sd21 tests/unit/stacks/workload",
    "model_image/sd21/contract/variable.py": "tests/unit/sd21",
    # The settings: unit tests in process; the `python app.py` runs check the CLI's message, not the rules.
    "stacks/settings/groups.py": "tests/unit/stacks/settings tests/integration/stacks/test_settings.py "
                                 "tests/integration/k8s/test_settings.py -k 'not synth_fails and not app_exits'",
    "stacks/settings/parsers.py": "tests/unit/stacks/settings tests/integration/stacks/test_settings.py "
                                  "-k 'not synth_fails and not app_exits'",
    "stacks/settings/__init__.py": "tests/unit/stacks/settings tests/integration/stacks/test_settings.py "
                                   "-k 'not synth_fails and not app_exits'",
    # The charts rendered by cdk8s alone (seconds; no synth per mutant).
    "stacks/workload/serving/spec.py": "tests/unit/stacks/workload tests/integration/workload/test_joins_across_settings.py",
}


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    for linked in (".venv", "node_modules"):
        (dest / linked).symlink_to(ROOT / linked)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _digest(module: str) -> str:
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


SPEC_COLUMNS = "operator_name, occurrence, start_pos_row, start_pos_col, end_pos_row, end_pos_col"


def carry_over(session: Path, module: str, resume: bool) -> tuple[int, list[int]]:
    """Copy the previous run's kills (and mutants that could not import) into this session,
    so that exec runs only its survivors and, with resume, what it had not reached (a run
    stopped early); without resume those are marked not run. Returns how many run now and
    the previous survivors among them."""
    previous = KEPT / f"{Path(module).stem}.sqlite"
    if not previous.exists() or (KEPT / f"{Path(module).stem}.sha256").read_text().strip() != _digest(module):
        raise SystemExit(f"error: no previous run of {module} for its current source; run it whole first")
    with sqlite3.connect(previous) as old:
        # A mutant a stopped run had not reached is kept as SKIPPED: not an outcome.
        outcomes = {tuple(row[:-1]): row[-1] for row in old.execute(
            f"SELECT {SPEC_COLUMNS}, test_outcome FROM mutation_specs JOIN work_results USING (job_id) "
            "WHERE worker_outcome != 'SKIPPED'")}
    run_now, survivors = 0, []
    with sqlite3.connect(session) as new:
        for job_id, *spec in new.execute(f"SELECT job_id, {SPEC_COLUMNS} FROM mutation_specs "
                                         "WHERE job_id NOT IN (SELECT job_id FROM work_results)").fetchall():
            outcome = outcomes.get(tuple(spec))
            if outcome == "SURVIVED" or (outcome is None and resume):
                run_now += 1
                survivors += [job_id] if outcome else []
                continue
            worker, test = ("NORMAL", outcome) if outcome else ("SKIPPED", "INCOMPETENT")
            new.execute("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                        "VALUES (?, 'carried over', ?, '', ?)", (worker, test, job_id))
    return run_now, survivors


def keep_unreached_survivors(session: Path, survivors: list[int]) -> None:
    """A retest stopped early: the survivors it had not reached yet stay survivors."""
    with sqlite3.connect(session) as db:
        for job_id in survivors:
            db.execute("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                       "SELECT 'NORMAL', 'carried over', 'SURVIVED', '', ? "
                       "WHERE NOT EXISTS (SELECT 1 FROM work_results WHERE job_id = ?)", (job_id, job_id))


def annotation_spans(module: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's annotations are, when they are never evaluated
    (`from __future__ import annotations`): a mutant there is equivalent."""
    tree = ast.parse((ROOT / module).read_text())
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return []
    annotations = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            annotations.append(node.returns)
        elif isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            annotations.append(node.annotation)
    return [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations]


def exclude_equivalent(session: Path, module: str, workdir: Path) -> None:
    """Mark as not to run: lines marked `# pragma: no mutate` (each with its reason in the
    source; cosmic-ray's own filter) and mutants inside annotations never evaluated."""
    subprocess.run([str(Path(sys.executable).with_name("cr-filter-pragma")), str(session)], cwd=workdir,
                   check=True)
    spans = annotation_spans(module)
    with sqlite3.connect(session) as db:
        for job_id, start_row, start_col, end_row, end_col in db.execute(
                "SELECT job_id, start_pos_row, start_pos_col, end_pos_row, end_pos_col FROM mutation_specs "
                "WHERE job_id NOT IN (SELECT job_id FROM work_results)").fetchall():
            if any(first <= (start_row, start_col) and (end_row, end_col) <= last for first, last in spans):
                db.execute("INSERT INTO work_results (worker_outcome, output, test_outcome, diff, job_id) "
                           "VALUES ('SKIPPED', 'annotation', NULL, '', ?)", (job_id,))


def start_worker(copy: Path, module: str, test_command: str, port: int | None) -> list[subprocess.Popen]:
    """In one copy of the tree: its fork server, a baseline run, and (with the http
    distributor) a cosmic-ray worker that mutates that copy."""
    with (copy / "forkserver.log").open("w") as log:
        processes = [subprocess.Popen([sys.executable, "-m", "tests.mutation.forkserver", SOCKET], cwd=copy,
                                      env={**os.environ, **TEST_ENV}, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)]
    try:
        while not (copy / SOCKET).exists():
            if processes[0].poll() is not None:
                raise SystemExit(f"error: the fork server exited: {(copy / 'forkserver.log').read_text()}")
            time.sleep(0.2)
        # Unmutated, the selection must pass (and find tests): else every mutant would count as killed.
        baseline = subprocess.run(shlex.split(test_command), cwd=copy)
        if baseline.returncode != 0:
            output = (copy / "forkserver.log").read_text()[-3000:]
            raise SystemExit(f"{output}\nerror: {module}'s tests fail or find nothing without any mutant "
                             f"(exit {baseline.returncode})")
    except BaseException:
        os.killpg(processes[0].pid, signal.SIGKILL)
        raise
    if port is not None:
        processes.append(subprocess.Popen([str(Path(sys.executable).with_name("cosmic-ray")), "http-worker",
                                           "--port", str(port)], cwd=copy, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
        while True:  # listening before the first mutant is sent to it
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if processes[-1].poll() is not None:
                raise SystemExit(f"error: the cosmic-ray worker on port {port} exited")
            time.sleep(0.2)
    return processes


def mutate(module: str, tests: str, workdir: Path, again: str | None = None, workers: int = 1) -> dict:
    """Mutate `module` in `workers` copies of the tree under workdir, one mutant at a time each."""
    copies = [workdir / f"tree-{index}" for index in range(workers)]
    for copy in copies:
        copy_tree(copy)
    ports = [free_port() for _ in copies] if workers > 1 else [None]
    config = workdir / "cosmic-ray.toml"
    session = workdir / f"{Path(module).stem}.sqlite"
    test_command = PYTEST.format(python=sys.executable, tests=tests)
    distributor = ('name = "http"\n[cosmic-ray.distributor.http]\n'
                   f"worker-urls = {[f'http://127.0.0.1:{port}' for port in ports]}\n") if workers > 1 \
        else 'name = "local"\n'
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        "timeout = 120.0\n"
        "excluded-modules = []\n"
        f'test-command = "{test_command}"\n'
        "[cosmic-ray.distributor]\n" + distributor)
    cosmic_ray = Path(sys.executable).with_name("cosmic-ray")
    subprocess.run([str(cosmic_ray), "init", str(config), str(session)], cwd=copies[0], check=True)
    exclude_equivalent(session, module, copies[0])
    survivors: list[int] = []
    if again:
        run_now, survivors = carry_over(session, module, resume=again == "--resume")
        print(f"{module}: {run_now} mutants run now ({again})", flush=True)
    started = time.monotonic()
    processes: list[subprocess.Popen] = []
    try:
        for copy, port in zip(copies, ports):
            processes += start_worker(copy, module, test_command, port)
        subprocess.run([str(cosmic_ray), "exec", str(config), str(session)], cwd=copies[0], check=True)
    finally:  # kept even when stopped early: --resume goes on from there
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)  # with any test run a fork server had started
        keep_unreached_survivors(session, survivors)
        KEPT.mkdir(exist_ok=True)
        shutil.copy2(session, KEPT / session.name)
        (KEPT / f"{session.stem}.sha256").write_text(_digest(module) + "\n")
    dump = subprocess.run([str(cosmic_ray), "dump", str(session)], cwd=copies[0], capture_output=True, text=True,
                          check=True).stdout
    killed, survivors, other, not_run, excluded = 0, [], 0, 0, {"pragma": 0, "annotation": 0}
    for line in filter(None, dump.splitlines()):
        job, result = json.loads(line)
        if result is None or result.get("worker_outcome") in ("skipped", "abnormal"):  # abnormal: never ran
            reason = "pragma" if result and result.get("output") is None else (result or {}).get("output")
            if reason in excluded:
                excluded[reason] += 1
            else:
                not_run += 1
            continue
        outcome = result.get("test_outcome")
        if outcome == "killed":
            killed += 1
        elif outcome == "survived":
            mutation = job["mutations"][0]
            survivors.append(f"{module}:{mutation['start_pos'][0]} {mutation['operator_name']} "
                             f"(in {mutation.get('definition_name')})")
        else:
            other += 1  # incompetent: the mutant did not even import
    total = killed + len(survivors)
    return {"module": module, "killed": killed, "survived": len(survivors), "incompetent": other,
            "not_run": not_run, "excluded": excluded,
            "rate": killed / total if total else 1.0, "survivors": survivors,
            "minutes": (time.monotonic() - started) / 60}


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: keep what ran (mutate's finally)
    again = next((arg for arg in argv if arg in ("--retest-survivors", "--resume")), None)
    workers = [arg.removeprefix("--workers=") for arg in argv if arg.startswith("--workers=")]
    if workers and not (workers[-1].isdigit() and int(workers[-1]) >= 1):
        print("error: --workers= takes a whole number of at least 1", file=sys.stderr)
        return 2
    argv = [arg for arg in argv if arg not in ("--retest-survivors", "--resume") and not arg.startswith("--workers=")]
    modules = argv or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"error: no test selection for {unknown}; known: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    results = []
    for module in modules:
        with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
            results.append(mutate(module, MODULES[module], Path(scratch), again, int(workers[-1]) if workers else 1))
        result = results[-1]
        print(f"{module}: {result['rate']:.0%} killed ({result['killed']} of {result['killed'] + result['survived']}"
              f", {result['incompetent']} incompetent, {result['not_run']} not run; excluded as equivalent: "
              f"{result['excluded']['annotation']} in annotations, {result['excluded']['pragma']} marked no mutate)"
              f" in {result['minutes']:.1f} min",
              flush=True)
        for survivor in result["survivors"]:
            print(f"  survived: {survivor}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
