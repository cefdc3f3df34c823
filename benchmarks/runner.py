"""Run one command and print its resource usage as JSON: the harness's measuring stub.

Why a separate, tiny process: Linux keeps a process's peak RSS (``ru_maxrss``) across
``execve``, and a child starts from the RSS of the process that forked it. Forked straight from
the harness (which has matplotlib and boto3 loaded, ~140 MiB), every tool would report at least
the harness's size. Forked from this stub (``python -I -S``, standard library only), the floor is
the stub's own few MiB; the harness measures that floor once and reports it.

    python -I -S benchmarks/runner.py LOG_PATH COMMAND [ARG...]

The command's stdout and stderr go to LOG_PATH; its environment is this process's.
"""

import json
import os
import sys
import time


def main() -> int:
    log_path, *argv = sys.argv[1:]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(null_fd, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.execvp(argv[0], argv)
        except BaseException as exc:
            os.write(2, f"runner: cannot run {argv[0]}: {exc}\n".encode())
        finally:
            os._exit(127)
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
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
