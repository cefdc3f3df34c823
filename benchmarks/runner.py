"""Run one command and print its resource usage as JSON: the harness's measuring stub.

Why a separate, tiny process: Linux keeps a process's peak RSS (``ru_maxrss``) across
``execve``, and a child starts from the RSS of the process that forked it. Forked straight from
the harness (which has matplotlib and boto3 loaded, ~140 MiB), every tool would report at least
the harness's size. Forked from this stub (``python -I -S``, standard library only), the floor is
the stub's own few MiB; the harness measures that floor once and reports it.

    python -I -S benchmarks/runner.py LOG_PATH [--stdin-from FILE] COMMAND [ARG...]

The command's stdout and stderr go to LOG_PATH; its environment is this process's. Its standard
input is /dev/null, or with ``--stdin-from FILE`` a pipe fed by ``cat FILE``: a stream, as in
``cat FILE | COMMAND``. ``cat`` is a second child, so its CPU is reported on its own
(``producer_*``) and is not the command's; the wall time ends when the command exits.
"""

import json
import os
import sys
import time


def _spawn(argv, stdin_fd, stdout_fd, stderr_fd, close_fds=()):
    """Fork and exec ``argv`` with these descriptors as 0, 1 and 2; close ``close_fds``."""
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(stdin_fd, 0)
            os.dup2(stdout_fd, 1)
            os.dup2(stderr_fd, 2)
            for fd in close_fds:
                os.close(fd)
            os.execvp(argv[0], argv)
        except BaseException as exc:
            os.write(2, f"runner: cannot run {argv[0]}: {exc}\n".encode())
        finally:
            os._exit(127)
    return pid


def main() -> int:
    log_path, *argv = sys.argv[1:]
    stdin_from = None
    if argv[:1] == ["--stdin-from"]:
        stdin_from, *argv = argv[1:]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    start = time.perf_counter()
    producer = None
    if stdin_from is None:
        pid = _spawn(argv, null_fd, log_fd, log_fd)
    else:
        read_fd, write_fd = os.pipe()
        producer = _spawn(["cat", stdin_from], null_fd, write_fd, log_fd, [read_fd])
        pid = _spawn(argv, read_fd, log_fd, log_fd, [write_fd])
        os.close(read_fd)
        os.close(write_fd)  # the command sees the end of the stream once cat is done
    _, status, usage = os.wait4(pid, 0)
    wall_s = time.perf_counter() - start
    result = {
        "pid": pid,
        "wall_s": wall_s,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "returncode": os.waitstatus_to_exitcode(status),
    }
    if producer is not None:
        _, producer_status, producer_usage = os.wait4(producer, 0)
        result["producer_cpu_s"] = producer_usage.ru_utime + producer_usage.ru_stime
        result["producer_returncode"] = os.waitstatus_to_exitcode(producer_status)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
