"""File operations that tests run as other users (conftest.as_user switches identity).

Each step is a list: the operation's name and its arguments, e.g. ["read", "/mnt/b/obj"].
Each result is "ok", a value (listings, modes, booleans, text), or the errno's name.
"""

import errno
import hashlib
import os
import stat


def run(op: str, *args):
    if op == "list":
        return sorted(os.listdir(args[0]))
    if op == "stat":
        return oct(os.stat(args[0]).st_mode & 0o7777)
    if op == "lstat":
        return oct(os.lstat(args[0]).st_mode & 0o7777)
    if op == "read":
        with open(args[0], "rb") as f:
            return f.read().decode()
    if op == "md5":
        with open(args[0], "rb") as f:
            return hashlib.md5(f.read()).hexdigest()
    if op == "write":
        with open(args[0], "w") as f:
            f.write(args[1])
        return "ok"
    if op == "append":
        with open(args[0], "a") as f:
            f.write(args[1])
        return "ok"
    if op == "truncate":
        os.truncate(args[0], int(args[1]))
    elif op == "unlink":
        os.unlink(args[0])
    elif op == "rename":
        os.rename(args[0], args[1])
    elif op == "mkdir":
        os.mkdir(args[0])
    elif op == "rmdir":
        os.rmdir(args[0])
    elif op == "mknod":  # a character device: major, minor
        os.mknod(args[0], 0o600 | stat.S_IFCHR, os.makedev(int(args[1]), int(args[2])))
    elif op == "symlink":
        os.symlink(args[0], args[1])
    elif op == "chmod":
        os.chmod(args[0], int(args[1], 8))
    elif op == "utime":
        os.utime(args[0], (1_000_000, 1_000_000))
    elif op == "touch":  # times set to now: the owner, or anyone who may write
        os.utime(args[0])
    elif op == "chgrp":
        os.chown(args[0], -1, int(args[1]))
    elif op == "getxattr":
        return os.getxattr(args[0], args[1]).decode()
    elif op == "setxattr":
        os.setxattr(args[0], args[1], args[2].encode())
    elif op == "listxattr":
        return sorted(os.listxattr(args[0]))
    elif op == "access":
        return os.access(args[0], {"r": os.R_OK, "w": os.W_OK, "x": os.X_OK}[args[1]])
    elif op == "chdir":
        os.chdir(args[0])
    else:
        raise ValueError(op)
    return "ok"


def run_steps(steps: list[list]) -> list:
    results = []
    for step in steps:
        try:
            results.append(run(*step))
        except OSError as error:
            results.append(errno.errorcode.get(error.errno, str(error.errno)))
    return results
