/*
 * fsync_eio.c: an LD_PRELOAD shim that makes fdatasync fail with EIO.
 *
 * RINGRAFT_FSYNC_EIO_AFTER=<n>: the first n calls to fdatasync succeed
 * (they really sync); every later call returns -1 with errno EIO without
 * syncing. The first failing call announces itself on stdout, through the
 * same pipe as the program's own output, as the line
 *     fsync-eio: fdatasync call <k> fails with EIO
 * so a test can check that nothing was acknowledged after it.
 *
 * RINGRAFT_FSYNC_EIO_FLAG=<path>: while a file exists at <path>, every
 * call returns -1 with errno EIO without syncing (the nemesis switches a
 * running server's disk to failing by creating the file).
 *
 * RINGRAFT_FSYNC_EIO_PATH=<text>: the first call on a file whose path
 * contains <text> returns -1 with errno EIO without syncing, announced as
 *     fsync-eio: fdatasync of <path> fails with EIO
 * and every later call works: a transient error, the case where a retry
 * would wrongly trust pages the kernel may have dropped.
 *
 * RINGRAFT_FSYNC_LIE=<text>: every call on a file whose path contains
 * <text> returns 0 without syncing (a disk that lies about those files;
 * the nemesis's self-test shows its power-loss check catches it).
 *
 * All unset, the shim does nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long fail_after = -1;
static const char *fail_flag;
static const char *lie;
static const char *fail_path;
static atomic_int fail_path_done;
static atomic_long calls;

__attribute__((constructor)) static void fsync_eio_init(void) {
    const char *n = getenv("RINGRAFT_FSYNC_EIO_AFTER");
    if (n) {
        fail_after = atol(n);
    }
    fail_flag = getenv("RINGRAFT_FSYNC_EIO_FLAG");
    lie = getenv("RINGRAFT_FSYNC_LIE");
    fail_path = getenv("RINGRAFT_FSYNC_EIO_PATH");
}

int fdatasync(int fd) {
    static __typeof__(fdatasync) *real_fdatasync;
    if (!real_fdatasync) {
        real_fdatasync = (__typeof__(fdatasync) *)dlsym(RTLD_NEXT, "fdatasync");
    }
    long k = atomic_fetch_add(&calls, 1) + 1;
    if (fail_path && fail_path[0] && !atomic_load(&fail_path_done)) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        if (n > 0) {
            path[n] = 0;
            if (strstr(path, fail_path) && !atomic_exchange(&fail_path_done, 1)) {
                char line[4200];
                int len = snprintf(line, sizeof line, "fsync-eio: fdatasync of %s fails with EIO\n", path);
                syscall(SYS_write, 1, line, (size_t)len);
                errno = EIO;
                return -1;
            }
        }
    }
    if (lie && lie[0]) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        if (n > 0) {
            path[n] = 0;
            if (strstr(path, lie)) {
                return 0;
            }
        }
    }
    if (fail_flag && access(fail_flag, F_OK) == 0) {
        static const char line[] = "fsync-eio: the flag file exists, fdatasync fails with EIO\n";
        syscall(SYS_write, 1, line, sizeof line - 1);
        errno = EIO;
        return -1;
    }
    if (fail_after >= 0 && k > fail_after) {
        if (k == fail_after + 1) {
            char line[96];
            int len = snprintf(line, sizeof line, "fsync-eio: fdatasync call %ld fails with EIO\n", k);
            syscall(SYS_write, 1, line, (size_t)len);
        }
        errno = EIO;
        return -1;
    }
    return real_fdatasync(fd);
}
