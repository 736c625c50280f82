"""Training campaigns: several ``train.py`` runs at once, stopped on a time budget.

A campaign is a list of runs, most wanted first, each a name and its
``train.py`` arguments (:func:`read_run_list`). :func:`run_campaign` starts
them as parallel processes, each in its own directory under ``runs_dir``: a
run interrupted earlier is resumed (``--resume``), a finished or failed one
is left alone. When the budget is spent (or the campaign itself gets SIGTERM
or SIGINT) every run still training gets SIGTERM, on which ``train.py``
stops at once and keeps its finished epochs in ``backup/``, so the runs can
be resumed later, here or elsewhere. :func:`write_outputs` then summarises
every run (``summary.md``, ``summary.json``) and packs the run directories
into a few tarballs, few and small enough to come back from a device lease.

``experiments/gpu_campaign.sh`` drives it: :func:`pack` (on the machine
with the data) gathers what a GPU machine without data needs, the campaign
runs there, and :func:`unpack` puts the returned run directories back.
"""

import argparse
import dataclasses
import datetime
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from stn_keras.data.mnist import IDX_FILE_NAMES
from stn_keras.files import write_directory_atomically
from stn_keras.files import write_file_atomically
from stn_keras.files import write_text_atomically
from stn_keras.run_dir import BACKUP_STATE_FILE
from stn_keras.run_dir import RunDirectory
from stn_keras.run_dir import best_epoch

logger = logging.getLogger(__name__)

REPOSITORY = Path(__file__).resolve().parents[1]
# Run names become folder and file names, also of the files that come back
# from a device lease, which takes letters, digits, '.', '_' and '-' only.
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# The campaign sets these itself, per run.
_RESERVED_FLAGS = ("--output-dir", "--resume", "--verbose")
# What a resumed run needs of its directory; logs/ and saved_model/ are
# rebuilt elsewhere (TensorBoard, `python -m stn_keras.export`).
LEFT_OUT_OF_ARCHIVES = ("logs", "saved_model")
TRAIN_LOG = "train.log"
EVALUATE_LOG = "evaluate.log"
SUMMARY_MARKDOWN = "summary.md"
SUMMARY_JSON = "summary.json"
CAMPAIGN_LOG = "campaign.log"
# A device lease returns at most 8 files of 16 MiB: the two summaries and
# the campaign's log take three, the run directories share the rest.
MAX_ARCHIVES = 5
MAX_ARCHIVE_BYTES = 15 * 2**20


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a campaign: its name (its folder) and ``train.py`` arguments."""

    name: str
    arguments: tuple


def read_run_list(path):
    """The runs of a run list file, in its order.

    One run a line: its name, then its ``train.py`` arguments (shell
    quoting). Blank lines and ``#`` comments are skipped.

    Raises:
        ValueError: a name is repeated or not a plain file name, or a line
            sets what the campaign sets itself (``--output-dir``,
            ``--resume``, ``--verbose``).
    """
    runs = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        name, arguments = words[0], tuple(words[1:])
        where = f"{path}, line {number}"
        if not _RUN_NAME.match(name):
            raise ValueError(
                f"{where}: run name {name!r} must be letters, digits, '.', '_' "
                "and '-' (it names the run's folder and archive)."
            )
        if name in {run.name for run in runs}:
            raise ValueError(f"{where}: run name {name!r} is used twice.")
        reserved = [word for word in arguments if word.split("=")[0] in _RESERVED_FLAGS]
        if reserved:
            raise ValueError(
                f"{where}: {reserved} are set by the campaign for each run; "
                "drop them from the run list."
            )
        runs.append(PlannedRun(name, arguments))
    return runs


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _backed_up_epochs(run_dir):
    """Epochs in the newest committed backup (0 without one)."""
    state_path = run_dir.backup_path / BACKUP_STATE_FILE
    if not state_path.is_file():
        return 0
    backups = json.loads(state_path.read_text()).get("backups") or [{}]
    return int(backups[0].get("epoch", 0))


def _plan_action(run_dir):
    """``"start"``, ``"resume"``, or why the run is left alone."""
    if run_dir.failure() is not None:
        return "skip: failed earlier"
    if run_dir.has_backup():
        return "resume"
    if run_dir.is_finished():
        return "skip: finished earlier"
    return "start"


class _Process:
    """A child process in a process group of its own, logging to a file."""

    def __init__(self, command, log_path, environment):
        self.command = [os.fspath(word) for word in command]
        self.started = time.monotonic()
        self.started_at = _now()
        with open(log_path, "a") as log:
            log.write(f"# {self.started_at} {shlex.join(self.command)}\n")
            log.flush()
            # A session of its own: a Ctrl-C in the campaign's terminal
            # reaches the campaign, which stops its runs in order.
            self.popen = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=REPOSITORY,
                start_new_session=True,
            )
        self.stopped_by_campaign = False
        self.ended_at = None
        self.seconds = None

    def poll(self):
        code = self.popen.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = _now()
            self.seconds = time.monotonic() - self.started
        return code

    def signal(self, number):
        try:
            os.killpg(self.popen.pid, number)
        except ProcessLookupError:
            pass


def _stop(processes, grace_seconds):
    """SIGTERM to every process still running, SIGKILL after ``grace_seconds``."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.stopped_by_campaign = True
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while any(process.poll() is None for process in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in running:
        if process.poll() is None:
            logger.warning(
                "%s did not stop within %.0f s of SIGTERM; killed (its last "
                "committed backup stays good).",
                shlex.join(process.command),
                grace_seconds,
            )
            process.signal(signal.SIGKILL)
            process.popen.wait()
            process.poll()


@dataclasses.dataclass
class _StopRequest:
    """Set by SIGTERM/SIGINT to the campaign: stop the runs now."""

    signal_name: str = None

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return {}

        def request(number, frame):
            self.signal_name = signal.Signals(number).name

        return {
            number: signal.signal(number, request) for number in (signal.SIGTERM, signal.SIGINT)
        }


def _child_environment():
    environment = dict(os.environ)
    # Several processes share one GPU: each takes memory as it needs it
    # instead of JAX's default of 75% of the card at start.
    environment.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    environment.setdefault("PYTHONUNBUFFERED", "1")
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return environment


def _train_command(python, run, run_dir, action, extra_arguments):
    output = ["--output-dir", run_dir.path, "--verbose", "2"]
    script = REPOSITORY / "train.py"
    if action == "resume":
        # A resumed run takes its saved settings; other flags would be ignored.
        return [python, script, *output, "--resume"]
    return [python, script, *run.arguments, *extra_arguments, *output]


def run_campaign(runs, runs_dir, train_seconds, parallel=None, extra_arguments=(),
                 python=None, stop_grace_seconds=30.0, minimum_start_seconds=60.0,
                 poll_seconds=1.0):
    """Trains ``runs`` in parallel until they end or ``train_seconds`` pass.

    Runs start in their order, at most ``parallel`` at once (default: all);
    when one ends, the next starts, unless fewer than
    ``minimum_start_seconds`` are left (too few to finish an epoch: it is
    recorded as not started). At the budget, or on SIGTERM/SIGINT to this
    process, the runs still training get SIGTERM, and SIGKILL after
    ``stop_grace_seconds``; each keeps its finished epochs in ``backup/``.

    Args:
        runs: :class:`PlannedRun` objects, most wanted first.
        runs_dir: the folder of the run directories (``runs_dir/NAME``).
        train_seconds: the time budget, from the call.
        parallel: the most runs at once; ``None`` for all.
        extra_arguments: ``train.py`` arguments added to every run started
            afresh (a resumed run keeps its saved settings), e.g.
            ``("--epochs", "1")`` for a smoke test.
        python: the interpreter of the runs (default: this one).

    Returns:
        ``{name: record}`` with each run's ``action``, ``command``, start
        and end times, ``seconds``, ``return_code``, ``stopped_by_campaign``
        and ``epochs_before`` (epochs backed up before it started).
    """
    python = python or sys.executable
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    parallel = len(runs) if parallel is None else parallel
    deadline = time.monotonic() + train_seconds
    environment = _child_environment()
    records = {run.name: {"arguments": list(run.arguments)} for run in runs}
    pending = []
    for run in runs:
        run_dir = RunDirectory(runs_dir / run.name)
        action = _plan_action(run_dir)
        records[run.name]["action"] = action
        if action.startswith("skip"):
            logger.info("%s: %s", run.name, action)
        else:
            pending.append((run, run_dir, action))
    active = {}
    stop_request = _StopRequest()
    previous_handlers = stop_request.install()
    try:
        while pending or active:
            for name, process in list(active.items()):
                if process.poll() is not None:
                    logger.info(
                        "%s ended (exit status %d) after %.0f s",
                        name,
                        process.popen.returncode,
                        process.seconds,
                    )
                    del active[name]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop_request.signal_name:
                reason = stop_request.signal_name or f"the {train_seconds:.0f} s budget is spent"
                logger.info("Stopping %d run(s): %s", len(active), reason)
                _stop(active.values(), stop_grace_seconds)
                break
            while pending and len(active) < parallel:
                run, run_dir, action = pending.pop(0)
                if remaining < minimum_start_seconds:
                    records[run.name]["action"] = (
                        f"not started: {remaining:.0f} s left, under {minimum_start_seconds:.0f} s"
                    )
                    continue
                run_dir.path.mkdir(parents=True, exist_ok=True)
                command = _train_command(python, run, run_dir, action, extra_arguments)
                records[run.name]["epochs_before"] = _backed_up_epochs(run_dir)
                active[run.name] = records[run.name]["process"] = _Process(
                    command, run_dir.path / TRAIN_LOG, environment
                )
                logger.info("%s: %s (%s)", run.name, action, shlex.join(map(str, command)))
            time.sleep(poll_seconds)
        for run, _, _ in pending:
            records[run.name]["action"] = "not started: the budget ended first"
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)
        # Whatever stopped the loop, no run outlives the campaign.
        _stop([record["process"] for record in records.values() if "process" in record],
              stop_grace_seconds)
    for record in records.values():
        process = record.pop("process", None)
        if process is not None:
            record.update(
                command=shlex.join(process.command),
                started_at=process.started_at,
                ended_at=process.ended_at,
                seconds=round(process.seconds, 1),
                return_code=process.popen.returncode,
                stopped_by_campaign=process.stopped_by_campaign,
            )
    return records


def evaluate_runs(names, runs_dir, seconds, python=None, stop_grace_seconds=10.0):
    """Runs ``evaluate.py`` on the test split for each run's best model, in parallel.

    Each writes ``evaluation/`` in its run directory (atomically: one
    stopped at the deadline leaves none). Returns ``{name: return code}``
    (``None`` for one stopped at ``seconds``).
    """
    python = python or sys.executable
    processes = {}
    for name in names:
        run_dir = RunDirectory(Path(runs_dir) / name)
        if run_dir.model_path.is_file():
            processes[name] = _Process(
                [python, REPOSITORY / "evaluate.py", "--model", run_dir.model_path],
                run_dir.path / EVALUATE_LOG,
                _child_environment(),
            )
    deadline = time.monotonic() + seconds
    while any(process.poll() is None for process in processes.values()):
        if time.monotonic() > deadline:
            logger.warning("Evaluation stopped at its %.0f s limit.", seconds)
            _stop(processes.values(), stop_grace_seconds)
            break
        time.sleep(0.5)
    return {
        name: None if process.stopped_by_campaign else process.popen.returncode
        for name, process in processes.items()
    }


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def summarise_run(runs_dir, name, record):
    """What ``docs/RESULTS.md`` needs of one run, from its directory and ``record``."""
    run_dir = RunDirectory(Path(runs_dir) / name)
    run_record = _read_json(run_dir.config_path) or {}
    config = run_record.get("config", {})
    rows = run_dir.read_history()
    epochs_done = _backed_up_epochs(run_dir) if run_dir.has_backup() else len(rows)
    rows = rows[:epochs_done]
    monitor = "val_accuracy" if rows and rows[0].get("val_accuracy") is not None else None
    best, best_epoch_number = best_epoch(rows, monitor)
    train_images = run_record.get("data", {}).get("split_sizes", {}).get("train")
    steps_per_epoch = (
        math.ceil(train_images / config["batch_size"]) if train_images and config else None
    )
    new_epochs = epochs_done - record.get("epochs_before", 0)
    seconds = record.get("seconds")
    metrics_path = run_dir.evaluation_path / "metrics.json"
    # An evaluation older than the best model is of an earlier one.
    current = (
        metrics_path.is_file()
        and run_dir.model_path.is_file()
        and metrics_path.stat().st_mtime >= run_dir.model_path.stat().st_mtime
    )
    metrics = (_read_json(metrics_path) or {}) if current else {}
    if run_dir.failure() is not None:
        status = f"failed: {run_dir.failure()}"
    elif run_dir.has_backup():
        status = "interrupted, resumable"
    elif run_dir.is_finished():
        status = "finished"
    elif "return_code" in record:
        status = f"stopped before its first epoch (exit status {record['return_code']})"
    else:
        status = record.get("action", "not started")
    return {
        "name": name,
        "arguments": record.get("arguments", []),
        "action": record.get("action"),
        "status": status,
        "seed": config.get("seed"),
        "epochs_done": epochs_done,
        "epochs_planned": config.get("epochs"),
        "iterations_done": epochs_done * steps_per_epoch if steps_per_epoch else None,
        "epochs_this_campaign": new_epochs,
        "monitor": monitor,
        "best": best,
        "best_epoch": best_epoch_number,
        "test_error_percent": metrics.get("error_percent"),
        "device": run_record.get("device", {}).get("description"),
        "started_at": record.get("started_at"),
        "ended_at": record.get("ended_at"),
        "seconds": seconds,
        "stopped_by_campaign": record.get("stopped_by_campaign"),
        # Over the process' whole life, its start-up and compilation included.
        "images_per_second": (
            round(new_epochs * train_images / seconds)
            if seconds and train_images and new_epochs > 0
            else None
        ),
    }


def _cell(value, digits=None):
    if value is None:
        return "-"
    if digits is not None:
        return f"{value:.{digits}f}"
    return str(value)


def summary_markdown(summaries, header):
    """A Markdown table of run summaries, under ``header`` lines."""
    lines = [*header, "", "| run | status | epochs | iterations | best (epoch) | test error % | "
             "seconds | images/s | device |", "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for run in summaries:
        best = (
            f"{run['monitor'] or 'last epoch, accuracy'} {run['best']:.4f} ({run['best_epoch']})"
            if run["best"] is not None
            else "-"
        )
        planned = f"/{run['epochs_planned']}" if run["epochs_planned"] else ""
        lines.append(
            f"| {run['name']} | {run['status']} | {run['epochs_done']}{planned} | "
            f"{_cell(run['iterations_done'])} | {best} | {_cell(run['test_error_percent'], 2)} | "
            f"{_cell(run['seconds'], 0)} | {_cell(run['images_per_second'])} | "
            f"{_cell(run['device'])} |"
        )
    return "\n".join(lines) + "\n"


def _tree_bytes(path):
    return sum(file.stat().st_size for file in Path(path).rglob("*") if file.is_file())


def _archive_filter(info):
    parts = Path(info.name).parts
    return None if len(parts) > 1 and parts[1] in LEFT_OUT_OF_ARCHIVES else info


def archive_runs(names, runs_dir, out_dir, max_archives=MAX_ARCHIVES,
                 max_bytes=MAX_ARCHIVE_BYTES):
    """Packs run directories into ``runs-N.tar.gz`` files under ``out_dir``.

    Each run lies whole in one archive (as ``NAME/...``, without
    ``logs/`` and ``saved_model/``); runs fill the archives in order, at
    most ``max_bytes`` each before compression, at most ``max_archives``.

    Returns:
        ``(archive names, names of the runs that fitted in none)``.
    """
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    groups, sizes, left_out = [], [], []
    for name in names:
        if not (runs_dir / name).is_dir():
            continue
        size = sum(
            file.stat().st_size
            for file in (runs_dir / name).rglob("*")
            if file.is_file()
            and file.relative_to(runs_dir / name).parts[0] not in LEFT_OUT_OF_ARCHIVES
        )
        for index, used in enumerate(sizes):
            if used + size <= max_bytes:
                groups[index].append(name)
                sizes[index] += size
                break
        else:
            if size <= max_bytes and len(groups) < max_archives:
                groups.append([name])
                sizes.append(size)
            else:
                left_out.append(name)
    archives = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, group in enumerate(groups, start=1):
        archive = out_dir / f"runs-{index}.tar.gz"

        def write(partial, group=group):
            with tarfile.open(partial, "w:gz") as tar:
                for name in group:
                    tar.add(runs_dir / name, arcname=name, filter=_archive_filter)

        write_file_atomically(archive, write)
        archives.append(archive.name)
    for name in left_out:
        logger.error("Run %s fits in no archive (over %d bytes, or too many runs).", name, max_bytes)
    return archives, left_out


def write_outputs(records, runs_dir, out_dir, header=()):
    """Writes ``summary.md``, ``summary.json`` and the runs' archives to ``out_dir``.

    Returns the run summaries (see :func:`summarise_run`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summaries = [summarise_run(runs_dir, name, record) for name, record in records.items()]
    archives, left_out = archive_runs(list(records), runs_dir, out_dir)
    header = [*header, f"Archives: {', '.join(archives) or 'none'}."]
    if left_out:
        header.append(f"Left out of the archives (too large): {', '.join(left_out)}.")
    write_text_atomically(
        out_dir / SUMMARY_JSON,
        json.dumps({"header": header, "runs": summaries, "archives": archives,
                    "left_out": left_out}, indent=2) + "\n",
    )
    write_text_atomically(out_dir / SUMMARY_MARKDOWN, summary_markdown(summaries, header))
    return summaries


def pack(data_dir, destination, local_runs_dir=None):
    """Gathers what a campaign on a machine without the data needs.

    Copies MNIST's four IDX files from ``data_dir/mnist/`` to
    ``destination/mnist/`` (the layout ``STN_DATA_DIR`` has), and the
    resumable runs of ``local_runs_dir`` (those with a backup) to
    ``destination/runs/``, without ``logs/``, ``saved_model/`` and
    ``evaluation/``. GTSRB is not packed: its training archive is larger
    than what a device call carries.

    Returns:
        The bytes under ``destination``.

    Raises:
        FileNotFoundError: an MNIST file is missing, naming it.
    """
    destination = Path(destination)
    (destination / "mnist").mkdir(parents=True, exist_ok=True)
    for file_name in IDX_FILE_NAMES:
        source = Path(data_dir) / "mnist" / file_name
        if not source.is_file():
            raise FileNotFoundError(
                f"MNIST file {source} is missing: point --data-dir (or STN_DATA_DIR) "
                "at the folder holding mnist/."
            )
        target = destination / "mnist" / file_name
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            shutil.copyfile(source, target)
    packed_runs = destination / "runs"
    shutil.rmtree(packed_runs, ignore_errors=True)
    if local_runs_dir is not None and Path(local_runs_dir).is_dir():
        for run_path in sorted(Path(local_runs_dir).iterdir()):
            if RunDirectory(run_path).has_backup():
                shutil.copytree(
                    run_path,
                    packed_runs / run_path.name,
                    ignore=shutil.ignore_patterns(*LEFT_OUT_OF_ARCHIVES, "evaluation"),
                )
                logger.info("Packed %s to be resumed", run_path.name)
    size = _tree_bytes(destination)
    logger.info("Packed %.1f MiB into %s", size / 2**20, destination)
    return size


def unpack(files_dir, runs_dir):
    """Puts the run directories of the ``runs-N.tar.gz`` in ``files_dir`` into ``runs_dir``.

    Each returned run replaces the one of its name (it holds the earlier
    epochs too, and a stale ``backup/`` would make a finished run look
    interrupted). Returns the names of the runs unpacked.
    """
    runs_dir = Path(runs_dir)
    names = []
    for archive in sorted(Path(files_dir).glob("runs-*.tar.gz")):
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for name in sorted({Path(member.name).parts[0] for member in members}):

                def write(staging, name=name):
                    chosen = [
                        member
                        for member in members
                        if Path(member.name).parts[0] == name and member.name != name
                    ]
                    for member in chosen:
                        member.name = Path(*Path(member.name).parts[1:]).as_posix()
                    tar.extractall(staging, members=chosen, filter="data")

                write_directory_atomically(runs_dir / name, write)
                names.append(name)
                logger.info("Unpacked %s into %s", name, runs_dir / name)
    return names


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m stn_keras.campaign",
        description="Several train.py runs at once under a time budget "
        "(see experiments/gpu_campaign.sh).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="gather the data and resumable runs to carry")
    packing.add_argument("--data-dir", required=True, help="the folder holding mnist/")
    packing.add_argument("--destination", required=True, help="the folder to fill")
    packing.add_argument("--runs-dir", help="runs to resume there (those with a backup)")
    running = commands.add_parser("run", help="train the runs of a run list")
    running.add_argument("--runs", required=True, help="the run list file")
    running.add_argument("--runs-dir", required=True, help="the folder of the run directories")
    running.add_argument("--out", required=True, help="where summaries and archives go")
    running.add_argument("--train-seconds", type=float, required=True, help="the time budget")
    running.add_argument("--evaluate-seconds", type=float, default=0.0,
                         help="then evaluate.py on the test split for this long (0: not)")
    running.add_argument("--parallel", type=int, help="the most runs at once (default: all)")
    running.add_argument("--train-arguments", default="",
                         help="train.py arguments added to every fresh run, e.g. '--epochs 1'")
    unpacking = commands.add_parser("unpack", help="put returned run directories back")
    unpacking.add_argument("files_dir", help="the folder holding runs-N.tar.gz")
    unpacking.add_argument("--runs-dir", required=True, help="where the runs go")
    return parser


def _log_to(path):
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)


def _run(arguments):
    runs = read_run_list(arguments.runs)
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    _log_to(out / CAMPAIGN_LOG)
    started = _now()
    records = run_campaign(
        runs,
        arguments.runs_dir,
        arguments.train_seconds,
        parallel=arguments.parallel,
        extra_arguments=shlex.split(arguments.train_arguments),
        stop_grace_seconds=20.0,
        minimum_start_seconds=min(60.0, arguments.train_seconds / 2),
    )
    header = [
        f"# Campaign of {arguments.runs}, {started} to {_now()}",
        "",
        f"Budget {arguments.train_seconds:.0f} s, at most {arguments.parallel or len(runs)} "
        f"runs at once; KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'unset')}.",
    ]
    # The archives first, so a lease that ends during the evaluation still
    # returns the runs.
    summaries = write_outputs(records, arguments.runs_dir, out, header)
    if arguments.evaluate_seconds > 0:
        trained = [name for name, record in records.items() if "return_code" in record]
        evaluate_runs(trained, arguments.runs_dir, arguments.evaluate_seconds)
        summaries = write_outputs(records, arguments.runs_dir, out, header)
    print(summary_markdown(summaries, header), flush=True)
    return 0


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    arguments = build_parser().parse_args(argv)
    try:
        if arguments.command == "pack":
            pack(arguments.data_dir, arguments.destination, arguments.runs_dir)
            return 0
        if arguments.command == "unpack":
            names = unpack(arguments.files_dir, arguments.runs_dir)
            print(f"Unpacked {len(names)} run(s) into {arguments.runs_dir}: {', '.join(names)}")
            return 0
        return _run(arguments)
    except (ValueError, FileNotFoundError) as error:
        print(f"python -m stn_keras.campaign: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
